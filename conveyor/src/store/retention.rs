//! Retention: finished jobs deleted once older than their queue's (or the
//! global) retention for their status, with their attempt history, a
//! bounded batch per statement.

use sea_orm::{DbBackend, FromQueryResult, Statement, Value};

use super::{Store, StoreError};
use entity::JobStatus;

/// Which queues one pruning statement covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueScope {
    /// Exactly this queue (it has a retention of its own).
    Only(String),
    /// Every queue but these (they have their own).
    AllBut(Vec<String>),
}

impl Store {
    /// Deletes up to `batch` jobs of `status` (completed, failed or
    /// canceled) in `scope` that finished more than `keep_secs` ago, and
    /// their attempt history, in one statement; returns how many. Rows are
    /// taken `FOR UPDATE SKIP LOCKED`, so a manual retry racing the delete
    /// wins, or waits for the delete to commit and finds the job gone. A deleted job's idempotency key is free
    /// again. `keep_secs` of 0 deletes nothing (kept forever).
    pub async fn prune_finished(
        &self,
        status: JobStatus,
        scope: &QueueScope,
        keep_secs: i64,
        batch: u64,
    ) -> Result<u64, StoreError> {
        #[derive(FromQueryResult)]
        struct Pruned {
            count: i64,
        }
        let finished_at = match status {
            JobStatus::Completed => "completed_at",
            JobStatus::Failed => "failed_at",
            JobStatus::Canceled => "canceled_at",
            _ => return Ok(0),
        };
        if keep_secs <= 0 || batch == 0 {
            return Ok(0);
        }
        // `created_at` bounds the index range (a job finishes after it is
        // created), `finished_at` decides. One queue's jobs are found
        // through `job_listing_queue_created_idx`; the rest through
        // `jobs_status_created_idx`.
        let (doomed, queues) = match scope {
            QueueScope::Only(queue) => (
                format!(
                    "SELECT jobs.id FROM job_listing JOIN jobs ON jobs.id = job_listing.id \
                     WHERE job_listing.queue = $2 \
                     AND job_listing.created_at < now() - $3 * interval '1 second' \
                     AND jobs.status = $1 AND jobs.{finished_at} < now() - $3 * interval '1 second' \
                     LIMIT $4 FOR UPDATE OF jobs SKIP LOCKED"
                ),
                Value::from(queue.clone()),
            ),
            QueueScope::AllBut(queues) => (
                format!(
                    "SELECT id FROM jobs WHERE status = $1 AND queue <> ALL($2) \
                     AND created_at < now() - $3 * interval '1 second' \
                     AND {finished_at} < now() - $3 * interval '1 second' \
                     LIMIT $4 FOR UPDATE SKIP LOCKED"
                ),
                Value::from(queues.clone()),
            ),
        };
        let sql = format!(
            "WITH doomed AS ({doomed}), \
             gone AS (DELETE FROM jobs USING doomed WHERE jobs.id = doomed.id RETURNING jobs.id), \
             history AS (DELETE FROM job_attempts WHERE job_id IN (SELECT id FROM gone)) \
             SELECT count(*) AS count FROM gone"
        );
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            [
                status.as_str().into(),
                queues,
                keep_secs.into(),
                i64::try_from(batch).unwrap_or(i64::MAX).into(),
            ],
        );
        let pruned = Pruned::find_by_statement(statement).one(&self.db).await?;
        Ok(pruned.map_or(0, |pruned| u64::try_from(pruned.count).unwrap_or(0)))
    }
}
