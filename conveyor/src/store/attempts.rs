//! Attempt history: one `job_attempts` row per ended attempt, written by a
//! trigger in the statement that ended it (see the migration), read here.

use chrono::{DateTime, Utc};
use sea_orm::{DbBackend, FromQueryResult, Statement};

use super::{Store, StoreError};
use crate::job::JobId;

/// One ended attempt of a job.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct AttemptRecord {
    /// 1 for the first attempt; a manual retry starts again from 1.
    pub attempt: i32,
    pub worker_id: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    /// `completed`, `failed` (the handler's error, retried or not), `lost`
    /// (its lease expired, or `recover-stuck`), `interrupted` (a shutdown
    /// put it back; it does not count), `canceled`.
    pub outcome: String,
    pub error: Option<String>,
}

impl AttemptRecord {
    pub fn duration_ms(&self) -> i64 {
        (self.ended_at - self.started_at).num_milliseconds().max(0)
    }
}

/// The attempt a job is running now: what its history adds after the
/// ended ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningAttempt {
    pub attempt: i32,
    pub worker_id: Option<String>,
    pub started_at: DateTime<Utc>,
}

impl RunningAttempt {
    /// `job`'s running attempt, if it is running.
    pub fn of(job: &crate::Job) -> Option<Self> {
        match (job.status, job.started_at) {
            (entity::JobStatus::Running, Some(started_at)) => Some(RunningAttempt {
                attempt: job.attempts,
                worker_id: job.worker_id.clone(),
                started_at,
            }),
            _ => None,
        }
    }
}

/// Most attempts one job's history returns (a job has at most 100 attempts
/// per run; manual retries add runs).
pub const MAX_ATTEMPTS_LISTED: u64 = 1_000;

impl Store {
    /// Job `id`'s ended attempts, oldest first, at most
    /// [`MAX_ATTEMPTS_LISTED`] (the newest ones when there are more).
    pub async fn attempts(&self, id: JobId) -> Result<Vec<AttemptRecord>, StoreError> {
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT * FROM (SELECT seq, attempt, worker_id, started_at, ended_at, outcome, error \
             FROM job_attempts WHERE job_id = $1 ORDER BY seq DESC LIMIT $2) AS newest \
             ORDER BY seq",
            [id.as_uuid().into(), (MAX_ATTEMPTS_LISTED as i64).into()],
        );
        Ok(AttemptRecord::find_by_statement(statement)
            .all(&self.db)
            .await?)
    }
}
