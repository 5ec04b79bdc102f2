//! Idempotent inserts.
//!
//! A job with an idempotency key is inserted with `ON CONFLICT
//! (idempotency_key) DO NOTHING`. PostgreSQL makes a concurrent insert of the
//! same key wait for the first one's transaction, so exactly one caller
//! creates the row; every other caller then reads it back and compares the
//! stored request fingerprint with its own to tell a replay from a conflict.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, DbBackend, EntityTrait, QueryFilter, Statement};
use serde::Serialize;

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
        let statement = insert_statement(&[(JobId::new(), new, fingerprint.as_str())])?;
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
        let statement = insert_statement(&rows)?;
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

/// `INSERT INTO jobs (...) SELECT ... FROM jsonb_to_recordset($1) ON
/// CONFLICT (idempotency_key) DO NOTHING RETURNING *` for `rows`.
///
/// Every batch size is the same statement with one JSON parameter, so each
/// connection prepares and caches it once; a `VALUES` list would be a new
/// statement (and a new cached plan, on both sides) for every batch size,
/// which group commit makes many. Hand-written rather than sea-orm's insert
/// helpers because "run now" is the database's `now()` (the clock claims
/// compare with), not a value; and because sea-orm's `TryInsert` reports a
/// DO NOTHING that returned no row as an error, not as a conflict.
fn insert_statement(rows: &[(JobId, &NewJob, &str)]) -> Result<Statement, StoreError> {
    #[derive(Serialize)]
    struct Row<'a> {
        id: uuid::Uuid,
        queue: &'a str,
        task_type: &'a str,
        payload: &'a serde_json::Value,
        priority: i16,
        max_attempts: i32,
        timeout_seconds: i32,
        /// `None`: now, by the database's clock.
        run_at: Option<DateTime<Utc>>,
        idempotency_key: Option<&'a str>,
        request_hash: &'a str,
    }
    let now = Utc::now();
    let rows: Vec<Row<'_>> = rows
        .iter()
        .map(|(id, job, fingerprint)| Row {
            id: id.as_uuid(),
            queue: &job.queue,
            task_type: &job.task_type,
            payload: &job.payload,
            priority: job.priority,
            max_attempts: job.max_attempts,
            timeout_seconds: job.timeout_seconds,
            run_at: job.run_at(now),
            idempotency_key: job.idempotency_key.as_deref(),
            request_hash: fingerprint,
        })
        .collect();
    let json = serde_json::to_string(&rows)
        .map_err(|err| sea_orm::DbErr::Custom(format!("encoding jobs: {err}")))?;
    Ok(Statement::from_sql_and_values(
        DbBackend::Postgres,
        INSERT_JOBS,
        [json.into()],
    ))
}

const INSERT_JOBS: &str = "INSERT INTO jobs (id, queue, type, payload, priority, \
     max_attempts, timeout_seconds, run_at, idempotency_key, request_hash) \
     SELECT id, queue, task_type, payload, priority, max_attempts, timeout_seconds, \
     COALESCE(run_at, now()), idempotency_key, request_hash \
     FROM jsonb_to_recordset($1::text::jsonb) AS r(id uuid, queue text, task_type text, \
     payload jsonb, priority smallint, max_attempts integer, timeout_seconds integer, \
     run_at timestamptz, idempotency_key text, request_hash text) \
     ON CONFLICT (idempotency_key) DO NOTHING RETURNING *";
