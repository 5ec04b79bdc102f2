//! Idempotent inserts.
//!
//! A job with an idempotency key is inserted with `ON CONFLICT
//! (idempotency_key) DO NOTHING`. PostgreSQL makes a concurrent insert of the
//! same key wait for the first one's transaction, so exactly one caller
//! creates the row; every other caller then reads it back and compares the
//! stored request fingerprint with its own to tell a replay from a conflict.

use chrono::Utc;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::NotSet, ColumnTrait, EntityTrait, QueryFilter, QueryTrait, Set};

use super::{Store, StoreError};
use crate::job::{Job, JobId, NewJob};
use entity::job::{ActiveModel, Column, Entity};

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
        let row = active_model(new, &fingerprint);

        let Some(key) = &new.idempotency_key else {
            let job = Entity::insert(row).exec_with_returning(&self.db).await?;
            return Ok(Inserted::Created(job));
        };

        // Built by hand rather than with sea-orm's TryInsert, which reports
        // an `ON CONFLICT DO NOTHING` that returned no row as an error
        // (`RecordNotFound`) instead of as a conflict.
        let mut insert = Entity::insert(row)
            .on_conflict(
                OnConflict::column(Column::IdempotencyKey)
                    .do_nothing()
                    .to_owned(),
            )
            .into_query();
        insert.returning_all();
        let statement = self.db.get_database_backend().build(&insert);
        if let Some(job) = Entity::find().from_raw_sql(statement).one(&self.db).await? {
            return Ok(Inserted::Created(job));
        }

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

fn active_model(new: &NewJob, fingerprint: &str) -> ActiveModel {
    ActiveModel {
        id: Set(JobId::new().as_uuid()),
        queue: Set(new.queue.clone()),
        task_type: Set(new.task_type.clone()),
        payload: Set(new.payload.clone()),
        priority: Set(new.priority),
        max_attempts: Set(new.max_attempts),
        timeout_seconds: Set(new.timeout_seconds),
        // "Now" is left to the database's clock, the one claims compare with.
        run_at: new.run_at(Utc::now()).map_or(NotSet, Set),
        idempotency_key: Set(new.idempotency_key.clone()),
        request_hash: Set(Some(fingerprint.to_owned())),
        ..Default::default()
    }
}
