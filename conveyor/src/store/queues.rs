//! Queue settings: the `queues` table, the truth about whether a queue is
//! paused, its limits and its retention. A queue without a row has the
//! defaults: running, unlimited, the global retention.

use chrono::{DateTime, Utc};
use sea_orm::{DbBackend, FromQueryResult, Statement, Value};

use super::{Store, StoreError};

/// One queue's settings, as stored.
#[derive(Debug, Clone, PartialEq, FromQueryResult)]
pub struct QueueSettings {
    pub name: String,
    /// No worker starts a job of a paused queue; it still accepts jobs.
    pub paused: bool,
    /// Most jobs of this queue running at once, across every worker.
    pub concurrency_limit: Option<i32>,
    /// Most jobs of this queue started per second, across every worker.
    pub rate_limit: Option<f64>,
    /// How many starts the rate limit lets through at once after a quiet
    /// spell (defaults to the rate, rounded up).
    pub rate_burst: Option<i32>,
    /// How long finished jobs are kept, by status, in seconds; `None` is
    /// the global setting, 0 keeps them forever.
    pub retain_completed_secs: Option<i64>,
    pub retain_failed_secs: Option<i64>,
    pub retain_canceled_secs: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl QueueSettings {
    /// The burst the rate limit allows: the setting, or the rate rounded up.
    pub fn burst(&self) -> Option<u32> {
        let rate = self.rate_limit?;
        Some(match self.rate_burst {
            Some(burst) => burst.max(1) as u32,
            None => (rate.ceil() as u32).max(1),
        })
    }
}

/// How one optional setting changes.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Change<T> {
    /// Left as it is.
    #[default]
    Keep,
    Set(T),
    /// Back to the default.
    Clear,
}

impl<T: Copy> Change<T> {
    fn parts(self) -> (bool, Option<T>) {
        match self {
            Change::Keep => (false, None),
            Change::Set(value) => (true, Some(value)),
            Change::Clear => (true, None),
        }
    }
}

/// A change to a queue's settings; what it leaves `Keep` stays.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct QueueChange {
    pub paused: Option<bool>,
    pub concurrency_limit: Change<i32>,
    pub rate_limit: Change<f64>,
    pub rate_burst: Change<i32>,
    pub retain_completed_secs: Change<i64>,
    pub retain_failed_secs: Change<i64>,
    pub retain_canceled_secs: Change<i64>,
}

/// Largest value of each limit, as the table's checks allow.
pub const MAX_LIMIT: i32 = 1_000_000;
/// Smallest rate limit: one job a day. Slower rates would make the token
/// bucket's arithmetic meaningless (and its expiry overflow).
pub const MIN_RATE: f64 = 1.0 / 86_400.0;
/// Longest retention, in seconds (100 years).
pub const MAX_RETENTION_SECS: i64 = 3_153_600_000;

/// Creates the queue's row if needed and applies `change`, in one
/// statement; each setting `change` keeps is left as it is.
const CONFIGURE: &str = "INSERT INTO queues AS q (name, paused, concurrency_limit, rate_limit, \
     rate_burst, retain_completed_secs, retain_failed_secs, retain_canceled_secs) \
     VALUES ($1, COALESCE($2, false), $4, $6, $8, $10, $12, $14) \
     ON CONFLICT (name) DO UPDATE SET \
     paused = COALESCE($2, q.paused), \
     concurrency_limit = CASE WHEN $3 THEN $4 ELSE q.concurrency_limit END, \
     rate_limit = CASE WHEN $5 THEN $6 ELSE q.rate_limit END, \
     rate_burst = CASE WHEN $7 THEN $8 ELSE q.rate_burst END, \
     retain_completed_secs = CASE WHEN $9 THEN $10 ELSE q.retain_completed_secs END, \
     retain_failed_secs = CASE WHEN $11 THEN $12 ELSE q.retain_failed_secs END, \
     retain_canceled_secs = CASE WHEN $13 THEN $14 ELSE q.retain_canceled_secs END, \
     updated_at = now() \
     RETURNING q.*";

impl Store {
    /// Every queue that has settings, by name.
    pub async fn queue_settings(&self) -> Result<Vec<QueueSettings>, StoreError> {
        Ok(QueueSettings::find_by_statement(Statement::from_string(
            DbBackend::Postgres,
            "SELECT * FROM queues ORDER BY name",
        ))
        .all(&self.db)
        .await?)
    }

    /// The settings of those of `names` that have any.
    pub async fn queue_settings_of(
        &self,
        names: &[String],
    ) -> Result<Vec<QueueSettings>, StoreError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        Ok(
            QueueSettings::find_by_statement(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT * FROM queues WHERE name = ANY($1) ORDER BY name",
                [Value::from(names.to_vec())],
            ))
            .all(&self.db)
            .await?,
        )
    }

    /// Applies `change` to `queue`'s settings (creating its row) and
    /// returns them. The name must already be valid
    /// ([`crate::job::check_queue_name`]); values outside the table's
    /// checks are refused ([`StoreError::is_refused_row`]).
    pub async fn configure_queue(
        &self,
        queue: &str,
        change: &QueueChange,
    ) -> Result<QueueSettings, StoreError> {
        let (set_concurrency, concurrency) = change.concurrency_limit.parts();
        let (set_rate, rate) = change.rate_limit.parts();
        let (set_burst, burst) = change.rate_burst.parts();
        let (set_completed, completed) = change.retain_completed_secs.parts();
        let (set_failed, failed) = change.retain_failed_secs.parts();
        let (set_canceled, canceled) = change.retain_canceled_secs.parts();
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            CONFIGURE,
            [
                queue.into(),
                change.paused.into(),
                set_concurrency.into(),
                concurrency.into(),
                set_rate.into(),
                rate.into(),
                set_burst.into(),
                burst.into(),
                set_completed.into(),
                completed.into(),
                set_failed.into(),
                failed.into(),
                set_canceled.into(),
                canceled.into(),
            ],
        );
        QueueSettings::find_by_statement(statement)
            .one(&self.db)
            .await?
            .ok_or(StoreError::Interrupted("configure_queue"))
    }
}
