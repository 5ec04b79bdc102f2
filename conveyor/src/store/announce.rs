//! Announcing committed jobs: `NOTIFY` on one channel, which PostgreSQL
//! delivers to listeners when (and only if) the transaction that sent it
//! commits. A job enqueued inside an application's own transaction is
//! announced this way, and the maintenance leader's commit listener
//! publishes it (`maintenance::commit_listener`).

use sea_orm::sqlx::postgres::PgConnectOptions;
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};

use super::{Store, StoreError};
use crate::job::{JobId, WaitingJob};

/// The channel committed jobs are announced on. Channels are per database,
/// so every Conveyor database has its own.
pub const COMMITTED_CHANNEL: &str = "conveyor_jobs_committed";

/// Ids in one notification: a payload holds less than 8,000 bytes, and an
/// id with its separator takes 37.
pub const IDS_PER_NOTIFICATION: usize = 200;

/// Sends one notification per [`IDS_PER_NOTIFICATION`] of `ids`, in one
/// statement on `db`. Inside a transaction they are delivered at its
/// commit, and dropped by its rollback.
pub(crate) async fn announce<C: ConnectionTrait>(db: &C, ids: &[JobId]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let payloads: Vec<String> = ids
        .chunks(IDS_PER_NOTIFICATION)
        .map(|chunk| {
            chunk
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    let payloads = serde_json::to_string(&payloads)
        .map_err(|err| sea_orm::DbErr::Custom(format!("encoding notifications: {err}")))?;
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_notify($1, value) FROM jsonb_array_elements_text($2::text::jsonb)",
        [COMMITTED_CHANNEL.into(), payloads.into()],
    ))
    .await?;
    Ok(())
}

/// The job ids in one notification's payload. A part that is not an id
/// (someone else's `NOTIFY` on the channel) is skipped.
pub fn announced_ids(payload: &str) -> Vec<uuid::Uuid> {
    payload
        .split(',')
        .filter_map(|part| part.trim().parse().ok())
        .collect()
}

/// A waiting job that was announced, with what its publication is counted
/// by.
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

impl Store {
    /// Of the announced `ids`, those still waiting: a job claimed or
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

    /// Sends an empty notification on the channel, through the pool: the
    /// listener hears its own pings, and a session that stops hearing them
    /// has lost its connection without being told.
    pub async fn ping_listener(&self) -> Result<(), StoreError> {
        self.db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_notify($1, '')",
                [COMMITTED_CHANNEL.into()],
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_reads_back_as_its_ids_and_skips_what_is_not_one() {
        let a = uuid::Uuid::now_v7();
        let b = uuid::Uuid::now_v7();
        assert_eq!(announced_ids(&format!("{a},{b}")), vec![a, b]);
        assert_eq!(announced_ids(&format!("hello,{a}, ,")), vec![a]);
        assert!(announced_ids("").is_empty());
    }

    #[test]
    fn the_fullest_payload_fits_a_notification() {
        let ids: Vec<String> = (0..IDS_PER_NOTIFICATION)
            .map(|_| uuid::Uuid::now_v7().to_string())
            .collect();
        assert!(ids.join(",").len() < 8_000);
    }
}
