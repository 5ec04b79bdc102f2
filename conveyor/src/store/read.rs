use sea_orm::{
    ColumnTrait, Condition, DbBackend, EntityTrait, FromQueryResult, JoinType, QueryFilter,
    QueryOrder, QuerySelect, Statement,
    sea_query::{Alias, Expr, ExprTrait},
};

/// The narrow columns of waiting jobs untouched for at least $1 ms.
const WAITING_COLUMNS: &str = "SELECT id, queue, priority, run_at, updated_at FROM jobs \
     WHERE status IN ('queued', 'retrying') \
     AND updated_at <= now() - $1 * interval '1 millisecond'";

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, QueryTrait, Select, TransactionTrait};

use super::{Store, StoreError};
use crate::job::{Job, JobId, WaitingJob};
use entity::JobStatus;
use entity::job::{Column, Entity};
use entity::job_listing as listing;

/// Which jobs `Store::list` returns: newest first, a page at a time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListFilter {
    pub status: Option<JobStatus>,
    pub queue: Option<String>,
    pub task_type: Option<String>,
    /// Only jobs created before this instant.
    pub created_before: Option<DateTime<Utc>>,
    /// Only jobs created at or after this instant.
    pub created_after: Option<DateTime<Utc>>,
    /// Only jobs made by this periodic schedule.
    pub schedule: Option<String>,
    pub limit: u64,
    pub offset: u64,
    /// Only jobs after this one in the list's order (keyset paging: a deep
    /// page costs what the first one does, unlike `offset`).
    pub after: Option<ListCursor>,
}

/// A place in the list's order (`created_at` descending, then `id`
/// descending): the last job of a page. Written as text for clients, who
/// should treat it as opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListCursor {
    pub created_at: DateTime<Utc>,
    pub id: uuid::Uuid,
}

impl ListCursor {
    /// The place just after `job`.
    pub fn after(job: &Job) -> Self {
        ListCursor {
            created_at: job.created_at,
            id: job.id,
        }
    }
}

impl std::fmt::Display for ListCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // PostgreSQL keeps microseconds, so this is exact.
        write!(
            f,
            "{}_{}",
            self.created_at.timestamp_micros(),
            self.id.simple()
        )
    }
}

/// Text that is not a cursor [`ListCursor`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a list cursor")]
pub struct InvalidCursor;

impl std::str::FromStr for ListCursor {
    type Err = InvalidCursor;

    /// Exactly the form `Display` writes: `^[0-9]{1,18}_[0-9a-f]{32}$`.
    fn from_str(text: &str) -> Result<Self, InvalidCursor> {
        let (micros, id) = text.split_once('_').ok_or(InvalidCursor)?;
        let digits = |part: &str, max: usize, ok: fn(&u8) -> bool| {
            (1..=max).contains(&part.len()) && part.as_bytes().iter().all(ok)
        };
        if !digits(micros, 18, u8::is_ascii_digit)
            || id.len() != 32
            || !digits(id, 32, |b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        {
            return Err(InvalidCursor);
        }
        Ok(ListCursor {
            created_at: DateTime::from_timestamp_micros(micros.parse().map_err(|_| InvalidCursor)?)
                .ok_or(InvalidCursor)?,
            id: id.parse().map_err(|_| InvalidCursor)?,
        })
    }
}

/// How many rows `Store::count_matching` counts exactly before it
/// estimates instead.
pub const COUNT_EXACT_UP_TO: u64 = 10_000;
/// How long the exact count may run before the estimate is used instead:
/// a filter that few rows match can still make PostgreSQL walk many.
pub const COUNT_BUDGET: std::time::Duration = std::time::Duration::from_millis(250);

/// How many jobs match a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchCount {
    pub count: u64,
    /// False when `count` is the planner's estimate: more rows matched
    /// than were counted, or counting ran out of time.
    pub exact: bool,
}

/// Above this many rows (planner estimate), finished jobs are estimated.
pub const EXACT_COUNT_LIMIT: u64 = 2_000_000;
/// Rows sampled to estimate finished jobs in a larger table.
pub const SAMPLE_ROWS: u64 = 200_000;

/// Job counts, and whether every one is exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCounts {
    pub counts: Vec<StatusCount>,
    /// False when completed, failed and canceled are sampled estimates.
    pub exact: bool,
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

    /// The job submitted with this idempotency key, if any (and not yet
    /// deleted by retention).
    pub async fn find_by_key(&self, key: &str) -> Result<Option<Job>, StoreError> {
        Ok(Entity::find()
            .filter(Column::IdempotencyKey.eq(key))
            .one(&self.db)
            .await?)
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

    /// Jobs matching `filter`, newest first. Each filter has an index in
    /// this order: `job_listing_created_idx` (none),
    /// `jobs_status_created_idx`, `job_listing_queue_created_idx`,
    /// `job_listing_type_created_idx`, `job_listing_schedule_created_idx`
    /// (EXPLAIN in docs/architecture.md).
    pub async fn list(&self, filter: &ListFilter) -> Result<Vec<Job>, StoreError> {
        let (mut query, table) = matching(filter);
        let column = |name: &'static str| Expr::col((Alias::new(table), Alias::new(name)));
        if let Some(after) = filter.after {
            query = query.filter(Expr::tuple([column("created_at"), column("id")]).lt(
                Expr::tuple([Expr::val(after.created_at), Expr::val(after.id)]),
            ));
        }
        Ok(query
            .order_by_desc(column("created_at"))
            .order_by_desc(column("id"))
            .limit(filter.limit)
            .offset(filter.offset)
            .all(&self.db)
            .await?)
    }

    /// How many jobs match `filter`'s status, queue and type (its paging
    /// is ignored): exact up to `exact_up_to` rows when counting them
    /// takes less than [`COUNT_BUDGET`], else PostgreSQL's estimate, no
    /// smaller than what was seen to match. Either way the work is bounded,
    /// whatever the table's size.
    pub async fn count_matching(
        &self,
        filter: &ListFilter,
        exact_up_to: u64,
    ) -> Result<MatchCount, StoreError> {
        #[derive(FromQueryResult)]
        struct Counted {
            count: i64,
        }
        let bounded = one_per_match(filter, Some(exact_up_to.saturating_add(1)));
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "SELECT count(*) AS count FROM ({}) AS matching",
                bounded.sql
            ),
            bounded.values.map(|values| values.0).unwrap_or_default(),
        );
        let counted = {
            let txn = self.db.begin().await?;
            txn.execute_unprepared(&format!(
                "SET LOCAL statement_timeout = {}",
                COUNT_BUDGET.as_millis()
            ))
            .await?;
            let counted = Counted::find_by_statement(statement).one(&txn).await;
            // A canceled statement aborts the transaction; dropping it
            // rolls back either way.
            let _ = txn.rollback().await;
            counted
        };
        let seen = match counted.map_err(StoreError::from) {
            Ok(counted) => {
                let seen = counted.map_or(0, |counted| u64::try_from(counted.count).unwrap_or(0));
                if seen <= exact_up_to {
                    return Ok(MatchCount {
                        count: seen,
                        exact: true,
                    });
                }
                seen
            }
            Err(err) if err.is_timed_out() => 0,
            Err(err) => return Err(err),
        };
        let estimate = self.estimate_matching(filter).await?;
        Ok(MatchCount {
            count: std::cmp::max(estimate, seen),
            exact: false,
        })
    }

    /// The planner's estimate of the rows matching `filter`.
    async fn estimate_matching(&self, filter: &ListFilter) -> Result<u64, StoreError> {
        let query = one_per_match(filter, None);
        let explained = Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!("EXPLAIN (FORMAT JSON) {}", query.sql),
            query.values.map(|values| values.0).unwrap_or_default(),
        );
        let plan: Option<serde_json::Value> = match self.db.query_one_raw(explained).await? {
            Some(row) => Some(row.try_get_by_index(0)?),
            None => None,
        };
        let rows = plan
            .as_ref()
            .and_then(|plan| plan.pointer("/0/Plan/Plan Rows"))
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0);
        Ok(rows.max(0.0) as u64)
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
    /// in (`run_at`, `id`) order after `after`, at most `limit`, read
    /// narrow (no payload): what the reconciler checks against Redis, a
    /// page at a time. Served by `jobs_waiting_due_idx` without a sort.
    pub async fn waiting_page(
        &self,
        quiet: std::time::Duration,
        after: Option<(chrono::DateTime<chrono::Utc>, uuid::Uuid)>,
        limit: u64,
    ) -> Result<Vec<WaitingJob>, StoreError> {
        let quiet_ms = i64::try_from(quiet.as_millis()).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let statement = match after {
            Some((run_at, id)) => Statement::from_sql_and_values(
                DbBackend::Postgres,
                format!(
                    "{WAITING_COLUMNS} AND (run_at, id) > ($3, $4) ORDER BY run_at, id LIMIT $2"
                ),
                [quiet_ms.into(), limit.into(), run_at.into(), id.into()],
            ),
            None => Statement::from_sql_and_values(
                DbBackend::Postgres,
                format!("{WAITING_COLUMNS} ORDER BY run_at, id LIMIT $2"),
                [quiet_ms.into(), limit.into()],
            ),
        };
        Ok(WaitingJob::find_by_statement(statement)
            .all(&self.db)
            .await?)
    }

    /// Of `ids`, the jobs still waiting and untouched for at least `quiet`,
    /// read narrow: checked again just before the maintenance services
    /// publish, so a job that moved on since it was read is not published.
    pub async fn still_waiting(
        &self,
        ids: &[uuid::Uuid],
        quiet: std::time::Duration,
    ) -> Result<Vec<WaitingJob>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let quiet_ms = i64::try_from(quiet.as_millis()).unwrap_or(i64::MAX);
        let ids = serde_json::Value::Array(ids.iter().map(|id| serde_json::json!(id)).collect());
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "{WAITING_COLUMNS} AND id IN (SELECT value::text::uuid FROM jsonb_array_elements_text($2::jsonb))"
            ),
            [quiet_ms.into(), ids.into()],
        );
        Ok(WaitingJob::find_by_statement(statement)
            .all(&self.db)
            .await?)
    }

    /// Job counts per queue and status, exact while the table is small
    /// enough to count quickly (a parallel scan: 243 ms at a million
    /// rows); above [`EXACT_COUNT_LIMIT`] rows (by the
    /// planner's estimate), waiting and running jobs are still counted
    /// exactly (they are few, and partial indexes find them) while finished
    /// ones are estimated from a sample of about [`SAMPLE_ROWS`] rows.
    pub async fn job_counts(&self) -> Result<JobCounts, StoreError> {
        self.job_counts_above(EXACT_COUNT_LIMIT).await
    }

    /// [`Store::job_counts`] with another threshold (tests, tuning).
    pub async fn job_counts_above(&self, exact_limit: u64) -> Result<JobCounts, StoreError> {
        let estimated_rows = self.estimated_rows().await?;
        if estimated_rows <= exact_limit as f64 {
            return Ok(JobCounts {
                counts: self.count_by_queue_and_status().await?,
                exact: true,
            });
        }
        let active = Entity::find()
            .select_only()
            .column(Column::Queue)
            .column(Column::Status)
            .column_as(Expr::cust("count(*)"), "count")
            .filter(Column::Status.is_in([
                JobStatus::Queued,
                JobStatus::Retrying,
                JobStatus::Running,
            ]))
            .group_by(Column::Queue)
            .group_by(Column::Status)
            .into_model::<StatusCount>()
            .all(&self.db)
            .await?;
        let percent = (SAMPLE_ROWS as f64 / estimated_rows * 100.0).clamp(0.01, 100.0);
        let sampled = StatusCount::find_by_statement(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!(
                "SELECT queue, status, (count(*) * 100.0 / {percent})::bigint AS count \
                 FROM jobs TABLESAMPLE SYSTEM ({percent}) \
                 WHERE status IN ('completed', 'failed', 'canceled') GROUP BY queue, status"
            ),
        ))
        .all(&self.db)
        .await?;
        let mut counts = active;
        counts.extend(sampled);
        counts.sort_by(|a, b| (&a.queue, &a.status).cmp(&(&b.queue, &b.status)));
        Ok(JobCounts {
            counts,
            exact: false,
        })
    }

    async fn estimated_rows(&self) -> Result<f64, StoreError> {
        #[derive(FromQueryResult)]
        struct Estimate {
            rows: f64,
        }
        let estimate = Estimate::find_by_statement(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT greatest(reltuples, 0)::float8 AS rows FROM pg_class WHERE oid = 'jobs'::regclass",
        ))
        .one(&self.db)
        .await?;
        Ok(estimate.map_or(0.0, |estimate| estimate.rows))
    }

    /// Running jobs per queue, read through the partial index of running
    /// jobs (they are few, however large the table).
    pub async fn running_by_queue(
        &self,
    ) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
        let counts = Entity::find()
            .select_only()
            .column(Column::Queue)
            .column(Column::Status)
            .column_as(Expr::cust("count(*)"), "count")
            .filter(Column::Status.eq(JobStatus::Running))
            .group_by(Column::Queue)
            .group_by(Column::Status)
            .into_model::<StatusCount>()
            .all(&self.db)
            .await?;
        Ok(counts
            .into_iter()
            .map(|count| (count.queue, count.count))
            .collect())
    }

    /// Of the jobs `ids` that are still waiting and due, per queue, how
    /// long the one due longest has been due (by PostgreSQL's clock). Ids
    /// that are not job ids are ignored. A primary-key probe per id.
    pub async fn longest_due(
        &self,
        ids: &[String],
    ) -> Result<std::collections::BTreeMap<String, std::time::Duration>, StoreError> {
        let ids: Vec<uuid::Uuid> = ids.iter().filter_map(|id| id.parse().ok()).collect();
        if ids.is_empty() {
            return Ok(Default::default());
        }
        #[derive(FromQueryResult)]
        struct Due {
            queue: String,
            due_secs: f64,
        }
        let rows = Due::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "SELECT queue, extract(epoch FROM now() - min(run_at))::float8 AS due_secs \
                 FROM jobs WHERE id = ANY($1) AND {} AND run_at <= now() GROUP BY queue",
                super::WAITING.as_str()
            ),
            [ids.into()],
        ))
        .all(&self.db)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let secs = if row.due_secs.is_finite() {
                    row.due_secs.max(0.0)
                } else {
                    0.0
                };
                (row.queue, std::time::Duration::from_secs_f64(secs))
            })
            .collect())
    }

    /// Exact job counts per queue and status.
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

/// The jobs `filter` selects, unordered and unpaged, and the table whose
/// columns order them.
///
/// With a status filter, `jobs` alone: `jobs_status_created_idx` orders
/// them and the other filters are checked on each row. Without one, the
/// jobs are found and ordered through `job_listing`, whose indexes (by
/// creation time; by queue, type or schedule, then creation time) are
/// written once per job rather than on every claim and outcome
/// (docs/architecture.md), joined to `jobs` by its primary key.
pub(super) fn matching(filter: &ListFilter) -> (Select<Entity>, &'static str) {
    match filter.status {
        Some(status) => (
            Entity::find()
                .filter(Column::Status.eq(status))
                .filter(fixed_columns(filter, JOBS)),
            JOBS,
        ),
        None => (
            Entity::find()
                .join(
                    JoinType::InnerJoin,
                    Entity::belongs_to(listing::Entity)
                        .from(Column::Id)
                        .to(listing::Column::Id)
                        .into(),
                )
                .filter(fixed_columns(filter, LISTING)),
            LISTING,
        ),
    }
}

/// [`matching`] for a bulk action, whose own status guard always leads:
/// `jobs` alone, `filter`'s status (if any) and the others as conditions.
pub(super) fn matching_jobs(filter: &ListFilter) -> Select<Entity> {
    let mut query = Entity::find();
    if let Some(status) = filter.status {
        query = query.filter(Column::Status.eq(status));
    }
    query.filter(fixed_columns(filter, JOBS))
}

/// `SELECT 1` for each job `filter`'s status, queue and type select (its
/// paging ignored), at most `limit`, from one table: without a status
/// filter `job_listing` alone, which has a row exactly while its job
/// exists, so joining `jobs` would only add a probe per row.
fn one_per_match(filter: &ListFilter, limit: Option<u64>) -> sea_orm::Statement {
    match filter.status {
        Some(_) => matching_jobs(filter)
            .select_only()
            .column_as(Expr::val(1), "one")
            .limit(limit)
            .build(DbBackend::Postgres),
        None => listing::Entity::find()
            .filter(fixed_columns(filter, LISTING))
            .select_only()
            .column_as(Expr::val(1), "one")
            .limit(limit)
            .build(DbBackend::Postgres),
    }
}

const JOBS: &str = "jobs";
const LISTING: &str = "job_listing";

/// `filter`'s conditions on the columns a job never changes (queue, type,
/// schedule, creation time), on `table`'s copy of them: `jobs` and
/// `job_listing` name them alike.
fn fixed_columns(filter: &ListFilter, table: &'static str) -> Condition {
    let column = |name: &'static str| Expr::col((Alias::new(table), Alias::new(name)));
    let mut condition = Condition::all();
    if let Some(queue) = &filter.queue {
        condition = condition.add(column("queue").eq(queue.as_str()));
    }
    if let Some(task_type) = &filter.task_type {
        condition = condition.add(column("type").eq(task_type.as_str()));
    }
    if let Some(before) = filter.created_before {
        condition = condition.add(column("created_at").lt(before));
    }
    if let Some(after) = filter.created_after {
        condition = condition.add(column("created_at").gte(after));
    }
    if let Some(schedule) = &filter.schedule {
        condition = condition.add(column("schedule_name").eq(schedule.as_str()));
    }
    condition
}
