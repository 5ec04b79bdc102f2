//! Announcing jobs enqueued inside an application's transaction: a row
//! per job in the outbox `job_announcements`, written in that transaction,
//! and a `NOTIFY` that PostgreSQL delivers when (and only if) it commits.
//! The maintenance leader's commit listener wakes on the notification,
//! publishes what the outbox holds, and deletes it
//! (`maintenance::commit_listener`). The outbox, not the notification, is
//! what makes an announcement last: a notification sent while nobody
//! listened is gone, its row is not.

use sea_orm::sqlx::postgres::PgConnectOptions;
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};

use super::{Store, StoreError};
use crate::job::{JobId, WaitingJob};

/// The channel the leader is woken on. Channels are per database, so every
/// Conveyor database has its own.
pub const COMMITTED_CHANNEL: &str = "conveyor_jobs_committed";

/// Writes `ids` into the outbox and notifies the channel, in one statement
/// on `db`. Inside a transaction both take effect at its commit, and
/// neither if it rolls back.
pub(crate) async fn announce<C: ConnectionTrait>(db: &C, ids: &[JobId]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let ids = serde_json::to_string(ids)
        .map_err(|err| sea_orm::DbErr::Custom(format!("encoding ids: {err}")))?;
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "WITH written AS (INSERT INTO job_announcements (job_id) \
         SELECT value::text::uuid FROM jsonb_array_elements_text($2::text::jsonb) \
         ON CONFLICT DO NOTHING RETURNING 1) \
         SELECT pg_notify($1, '') FROM (SELECT count(*) FROM written) AS counted",
        [COMMITTED_CHANNEL.into(), ids.into()],
    ))
    .await?;
    Ok(())
}

/// An announced job that still waits, with what its publication is
/// counted by.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct AnnouncedJob {
    pub id: uuid::Uuid,
    pub queue: String,
    pub task_type: String,
    pub priority: i16,
    pub run_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<&AnnouncedJob> for WaitingJob {
    fn from(job: &AnnouncedJob) -> Self {
        WaitingJob {
            id: job.id,
            queue: job.queue.clone(),
            priority: job.priority,
            run_at: job.run_at,
            updated_at: job.updated_at,
        }
    }
}

#[derive(Debug, FromQueryResult)]
struct Announcement {
    job_id: uuid::Uuid,
}

impl Store {
    /// Up to `limit` announcements, oldest first.
    pub async fn announcements(&self, limit: u64) -> Result<Vec<uuid::Uuid>, StoreError> {
        let rows = Announcement::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT job_id FROM job_announcements ORDER BY created_at, job_id LIMIT $1",
            [(limit.min(i64::MAX as u64) as i64).into()],
        ))
        .all(&self.db)
        .await?;
        Ok(rows.into_iter().map(|row| row.job_id).collect())
    }

    /// Of the announced `ids`, the jobs still waiting: one claimed or
    /// canceled since (the reconciler may have published it first) is not
    /// published again.
    pub async fn announced(&self, ids: &[uuid::Uuid]) -> Result<Vec<AnnouncedJob>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = serde_json::to_string(ids)
            .map_err(|err| sea_orm::DbErr::Custom(format!("encoding ids: {err}")))?;
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT id, queue, type AS task_type, priority, run_at, updated_at FROM jobs \
             WHERE status IN ('queued', 'retrying') \
             AND id IN (SELECT value::text::uuid FROM jsonb_array_elements_text($1::text::jsonb))",
            [ids.into()],
        );
        Ok(AnnouncedJob::find_by_statement(statement)
            .all(&self.db)
            .await?)
    }

    /// Deletes the announcements of `ids`, once their jobs are published
    /// (or gone).
    pub async fn forget_announcements(&self, ids: &[uuid::Uuid]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids = serde_json::to_string(ids)
            .map_err(|err| sea_orm::DbErr::Custom(format!("encoding ids: {err}")))?;
        self.db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "DELETE FROM job_announcements WHERE job_id IN \
                 (SELECT value::text::uuid FROM jsonb_array_elements_text($1::text::jsonb))",
                [ids.into()],
            ))
            .await?;
        Ok(())
    }

    /// How to open a connection of its own to this store's database, for a
    /// session that must not share the pool (a `LISTEN`).
    pub fn session_options(&self) -> Result<PgConnectOptions, StoreError> {
        if self.db.get_database_backend() != DbBackend::Postgres {
            return Err(sea_orm::DbErr::Custom("the store is not on PostgreSQL".to_owned()).into());
        }
        Ok((*self.db.get_postgres_connection_pool().connect_options()).clone())
    }
}
