use sea_orm::{
    ColumnTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait},
};

use super::{Store, StoreError};
use crate::job::{Job, JobId};
use entity::JobStatus;
use entity::job::{Column, Entity};

/// Which jobs `Store::list` returns: newest first, a page at a time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListFilter {
    pub status: Option<JobStatus>,
    pub queue: Option<String>,
    pub task_type: Option<String>,
    pub limit: u64,
    pub offset: u64,
}

/// How many jobs of one queue are in one status.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct StatusCount {
    pub queue: String,
    pub status: String,
    pub count: i64,
}

impl Store {
    /// The job with this id, if any.
    pub async fn find(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        Ok(Entity::find_by_id(id.as_uuid()).one(&self.db).await?)
    }

    /// The jobs among `ids` that exist, in no particular order.
    pub async fn find_many(&self, ids: &[JobId]) -> Result<Vec<Job>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(Entity::find()
            .filter(Column::Id.is_in(ids.iter().map(|id| id.as_uuid())))
            .all(&self.db)
            .await?)
    }

    /// Jobs matching `filter`, newest first. Served by `jobs_created_idx`, or
    /// `jobs_status_created_idx` when filtering by status.
    pub async fn list(&self, filter: &ListFilter) -> Result<Vec<Job>, StoreError> {
        let mut query = Entity::find();
        if let Some(status) = filter.status {
            query = query.filter(Column::Status.eq(status));
        }
        if let Some(queue) = &filter.queue {
            query = query.filter(Column::Queue.eq(queue.as_str()));
        }
        if let Some(task_type) = &filter.task_type {
            query = query.filter(Column::TaskType.eq(task_type.as_str()));
        }
        Ok(query
            .order_by_desc(Column::CreatedAt)
            .order_by_desc(Column::Id)
            .limit(filter.limit)
            .offset(filter.offset)
            .all(&self.db)
            .await?)
    }

    /// Running jobs that started more than `age` ago, oldest first.
    pub async fn running_longer_than(
        &self,
        age: std::time::Duration,
    ) -> Result<Vec<Job>, StoreError> {
        Ok(Entity::find()
            .filter(Column::Status.eq(JobStatus::Running))
            .filter(Expr::col(Column::StartedAt).lt(Expr::cust(format!(
                "now() - interval '{} seconds'",
                age.as_secs()
            ))))
            .order_by_asc(Column::StartedAt)
            .all(&self.db)
            .await?)
    }

    /// Waiting (`queued`/`retrying`) jobs untouched for at least `quiet`,
    /// in (`run_at`, `id`) order after `after`, at most `limit`: what the
    /// reconciler checks against Redis, a page at a time. Served by
    /// `jobs_waiting_run_at_idx`.
    pub async fn waiting_jobs(
        &self,
        quiet: std::time::Duration,
        after: Option<(chrono::DateTime<chrono::Utc>, uuid::Uuid)>,
        limit: u64,
    ) -> Result<Vec<Job>, StoreError> {
        let mut query = Entity::find()
            .filter(Column::Status.is_in([JobStatus::Queued, JobStatus::Retrying]))
            .filter(Expr::col(Column::UpdatedAt).lte(Expr::cust(format!(
                "now() - interval '{} milliseconds'",
                quiet.as_millis()
            ))));
        if let Some((run_at, id)) = after {
            query = query.filter(
                Expr::tuple([Expr::col(Column::RunAt), Expr::col(Column::Id)])
                    .gt(Expr::tuple([Expr::value(run_at), Expr::value(id)])),
            );
        }
        Ok(query
            .order_by_asc(Column::RunAt)
            .order_by_asc(Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// Job counts per queue and status.
    pub async fn count_by_queue_and_status(&self) -> Result<Vec<StatusCount>, StoreError> {
        Ok(Entity::find()
            .select_only()
            .column(Column::Queue)
            .column(Column::Status)
            .column_as(Expr::cust("count(*)"), "count")
            .group_by(Column::Queue)
            .group_by(Column::Status)
            .order_by_asc(Column::Queue)
            .order_by_asc(Column::Status)
            .into_model::<StatusCount>()
            .all(&self.db)
            .await?)
    }
}
