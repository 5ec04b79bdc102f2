//! Idempotent inserts.
//!
//! A job with an idempotency key is inserted with `ON CONFLICT
//! (idempotency_key) DO NOTHING`. PostgreSQL makes a concurrent insert of the
//! same key wait for the first one's transaction, so exactly one caller
//! creates the row; every other caller then reads it back and compares the
//! stored request fingerprint with its own to tell a replay from a conflict.

use chrono::Utc;
use sea_orm::sea_query::{Expr, InsertStatement, OnConflict, Query, SimpleExpr};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::{Store, StoreError};
use crate::job::{Job, JobId, NewJob};
use entity::job::{Column, Entity};

/// What an insert did.
#[derive(Debug, Clone, PartialEq)]
pub enum Inserted {
    /// A new row.
    Created(Job),
    /// The key was already used by the same request: the existing row.
    Replayed(Job),
    /// The key was already used by a different request: the existing row,
    /// unchanged.
    Conflict(Job),
}

impl Inserted {
    pub fn job(&self) -> &Job {
        match self {
            Inserted::Created(job) | Inserted::Replayed(job) | Inserted::Conflict(job) => job,
        }
    }
}

impl Store {
    /// Validates and inserts `new`, honouring its idempotency key.
    pub async fn insert(&self, new: &NewJob) -> Result<Inserted, StoreError> {
        new.validate()?;
        let fingerprint = new.fingerprint();
        let insert = insert_statement(&[(JobId::new(), new, fingerprint.as_str())]);
        let statement = self.db.get_database_backend().build(&insert);
        if let Some(job) = Entity::find().from_raw_sql(statement).one(&self.db).await? {
            return Ok(Inserted::Created(job));
        }
        let Some(key) = &new.idempotency_key else {
            return Err(sea_orm::DbErr::RecordNotInserted.into());
        };

        // The conflicting row is committed (ON CONFLICT waited for it), so
        // this read, a new statement, sees it. Rows are never deleted.
        let existing = Entity::find()
            .filter(Column::IdempotencyKey.eq(key.as_str()))
            .one(&self.db)
            .await?
            .ok_or_else(|| {
                sea_orm::DbErr::RecordNotFound(format!(
                    "job with idempotency key {key:?} vanished after a conflict"
                ))
            })?;
        if existing.request_hash.as_deref() == Some(fingerprint.as_str()) {
            Ok(Inserted::Replayed(existing))
        } else {
            Ok(Inserted::Conflict(existing))
        }
    }
}

impl Store {
    /// Inserts many jobs in one statement (so one transaction), honouring
    /// each idempotency key; returns one outcome per input, in order. Every
    /// job must be valid (check with [`NewJob::validate`] first): an invalid
    /// one fails the whole call and nothing is written.
    pub async fn insert_many(&self, jobs: &[NewJob]) -> Result<Vec<Inserted>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        for job in jobs {
            job.validate()?;
        }
        let fingerprints: Vec<String> = jobs.iter().map(NewJob::fingerprint).collect();
        let ids: Vec<JobId> = jobs.iter().map(|_| JobId::new()).collect();
        let rows: Vec<(JobId, &NewJob, &str)> = ids
            .iter()
            .zip(jobs)
            .zip(&fingerprints)
            .map(|((id, job), fingerprint)| (*id, job, fingerprint.as_str()))
            .collect();

        // One statement is one transaction: every row or none. No explicit
        // BEGIN/COMMIT, which would add two round trips to every batch and
        // to the latency of every single submission (they come here too).
        let insert = insert_statement(&rows);
        let statement = self.db.get_database_backend().build(&insert);
        let created: Vec<Job> = Entity::find().from_raw_sql(statement).all(&self.db).await?;
        let keys: Vec<&str> = jobs
            .iter()
            .filter_map(|job| job.idempotency_key.as_deref())
            .collect();
        // As in `insert`: a key the insert skipped belongs to a committed row
        // (ON CONFLICT waited for its transaction), so this read sees it.
        let existing: Vec<Job> = if created.len() < jobs.len() && !keys.is_empty() {
            Entity::find()
                .filter(Column::IdempotencyKey.is_in(keys))
                .all(&self.db)
                .await?
        } else {
            Vec::new()
        };

        let mut created_by_id: std::collections::HashMap<uuid::Uuid, Job> =
            created.into_iter().map(|job| (job.id, job)).collect();
        let by_key: std::collections::HashMap<String, Job> = existing
            .into_iter()
            .filter_map(|job| job.idempotency_key.clone().map(|key| (key, job)))
            .collect();
        let mut outcomes = Vec::with_capacity(jobs.len());
        for ((job, fingerprint), id) in jobs.iter().zip(&fingerprints).zip(ids) {
            let id = id.as_uuid();
            if let Some(row) = created_by_id.remove(&id) {
                outcomes.push(Inserted::Created(row));
                continue;
            }
            // Not created: its key was taken, before this batch or earlier in it.
            let found = job
                .idempotency_key
                .as_ref()
                .and_then(|key| by_key.get(key))
                .cloned()
                .ok_or_else(|| {
                    sea_orm::DbErr::RecordNotFound(format!(
                        "job {id} was neither inserted nor found"
                    ))
                })?;
            if found.request_hash.as_deref() == Some(fingerprint.as_str()) {
                outcomes.push(Inserted::Replayed(found));
            } else {
                outcomes.push(Inserted::Conflict(found));
            }
        }
        Ok(outcomes)
    }
}

/// `INSERT INTO jobs (...) VALUES ... ON CONFLICT (idempotency_key) DO
/// NOTHING RETURNING *` for `rows`. Built with sea-query rather than
/// sea-orm's insert helpers, because every row must list the same columns
/// while "run now" is the database's `now()` (the clock claims compare
/// with), not a value; and because sea-orm's `TryInsert` reports a DO
/// NOTHING that returned no row as an error, not as a conflict.
fn insert_statement(rows: &[(JobId, &NewJob, &str)]) -> InsertStatement {
    let mut insert = Query::insert();
    insert.into_table(Entity).columns([
        Column::Id,
        Column::Queue,
        Column::TaskType,
        Column::Payload,
        Column::Priority,
        Column::MaxAttempts,
        Column::TimeoutSeconds,
        Column::RunAt,
        Column::IdempotencyKey,
        Column::RequestHash,
    ]);
    let now = Utc::now();
    for (id, job, fingerprint) in rows {
        let run_at: SimpleExpr = match job.run_at(now) {
            Some(at) => Expr::value(at),
            None => Expr::cust("now()"),
        };
        insert.values_panic([
            Expr::value(id.as_uuid()),
            Expr::value(job.queue.clone()),
            Expr::value(job.task_type.clone()),
            Expr::value(job.payload.clone()),
            Expr::value(job.priority),
            Expr::value(job.max_attempts),
            Expr::value(job.timeout_seconds),
            run_at,
            Expr::value(job.idempotency_key.clone()),
            Expr::value(fingerprint.to_string()),
        ]);
    }
    insert
        .on_conflict(
            OnConflict::column(Column::IdempotencyKey)
                .do_nothing()
                .to_owned(),
        )
        .returning_all();
    insert
}
