//! Bulk transitions: the manual retry and the cancel of every job matching
//! a filter, a bounded number per statement. Each is the single-job edge's
//! guard and columns applied to the rows the filter selects, taken `FOR
//! UPDATE SKIP LOCKED` so a bulk action never waits on a worker's row.

use sea_orm::{
    ColumnTrait, DbBackend, FromQueryResult, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    Statement,
};

use super::read::{ListFilter, matching_jobs};
use super::{Store, StoreError};
use crate::job::Job;
use entity::JobStatus;
use entity::job::Column;

/// Most jobs one bulk action changes.
pub const MAX_BULK: u64 = 10_000;

impl Store {
    /// The ids of up to `limit` jobs matching `filter` whose status is one
    /// of `statuses`, oldest first, as SQL with its values.
    fn bulk_selection(
        filter: &ListFilter,
        statuses: &[JobStatus],
        limit: u64,
    ) -> (String, Vec<sea_orm::Value>) {
        let mut query =
            matching_jobs(filter).filter(Column::Status.is_in(statuses.iter().copied()));
        if statuses == [JobStatus::Running] {
            query = query.filter(Column::CancelRequested.eq(false));
        }
        let query = query
            .order_by_asc(Column::CreatedAt)
            .select_only()
            .column(Column::Id)
            .limit(limit.min(MAX_BULK))
            .build(DbBackend::Postgres);
        (
            query.sql,
            query.values.map(|values| values.0).unwrap_or_default(),
        )
    }

    /// [`Store::requeue`] for up to `limit` failed or canceled jobs
    /// matching `filter` (its status, if any, must be one of those two).
    pub async fn requeue_matching(
        &self,
        filter: &ListFilter,
        limit: u64,
    ) -> Result<Vec<Job>, StoreError> {
        let statuses = statuses_of(filter, &[JobStatus::Failed, JobStatus::Canceled]);
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        let (selection, values) = Self::bulk_selection(filter, &statuses, limit);
        let sql = format!(
            "UPDATE jobs SET status = 'queued', attempts = 0, run_at = now(), result = NULL, \
             error_message = NULL, worker_id = NULL, lease_expires_at = NULL, \
             cancel_requested = false, started_at = NULL, completed_at = NULL, \
             failed_at = NULL, canceled_at = NULL, updated_at = now() \
             WHERE id IN ({selection} FOR UPDATE SKIP LOCKED) \
             AND status IN ('failed', 'canceled') RETURNING *"
        );
        self.bulk_update(sql, values).await
    }

    /// [`Store::cancel`] for up to `limit` waiting jobs matching `filter`.
    pub async fn cancel_waiting_matching(
        &self,
        filter: &ListFilter,
        limit: u64,
    ) -> Result<Vec<Job>, StoreError> {
        let statuses = statuses_of(filter, &[JobStatus::Queued, JobStatus::Retrying]);
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        let (selection, values) = Self::bulk_selection(filter, &statuses, limit);
        let sql = format!(
            "UPDATE jobs SET status = 'canceled', canceled_at = now(), updated_at = now() \
             WHERE id IN ({selection} FOR UPDATE SKIP LOCKED) \
             AND status IN ('queued', 'retrying') RETURNING *"
        );
        self.bulk_update(sql, values).await
    }

    /// [`Store::request_cancel`] for up to `limit` running jobs matching
    /// `filter` not yet asked to stop.
    pub async fn request_cancel_matching(
        &self,
        filter: &ListFilter,
        limit: u64,
    ) -> Result<Vec<Job>, StoreError> {
        let statuses = statuses_of(filter, &[JobStatus::Running]);
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        let (selection, values) = Self::bulk_selection(filter, &statuses, limit);
        let sql = format!(
            "UPDATE jobs SET cancel_requested = true, updated_at = now() \
             WHERE id IN ({selection} FOR UPDATE SKIP LOCKED) \
             AND status = 'running' AND NOT cancel_requested RETURNING *"
        );
        self.bulk_update(sql, values).await
    }

    async fn bulk_update(
        &self,
        sql: String,
        values: Vec<sea_orm::Value>,
    ) -> Result<Vec<Job>, StoreError> {
        let statement = Statement::from_sql_and_values(DbBackend::Postgres, sql, values);
        Ok(Job::find_by_statement(statement).all(&self.db).await?)
    }
}

/// The statuses among `allowed` that `filter` selects.
fn statuses_of(filter: &ListFilter, allowed: &[JobStatus]) -> Vec<JobStatus> {
    match filter.status {
        Some(status) if allowed.contains(&status) => vec![status],
        Some(_) => Vec::new(),
        None => allowed.to_vec(),
    }
}
