//! Periodic schedules: the `schedules` table. The tick arithmetic is
//! [`crate::periodic`]; firing is the leader's (`maintenance::scheduler`).

use chrono::{DateTime, NaiveDateTime, Utc};
use sea_orm::{DbBackend, FromQueryResult, Statement, Value};

use super::{Store, StoreError};
use crate::periodic::Tick;

/// A schedule as stored.
#[derive(Debug, Clone, PartialEq, FromQueryResult)]
pub struct ScheduleRow {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub job_type: String,
    pub job_queue: String,
    pub job_payload: serde_json::Value,
    pub job_priority: i16,
    pub job_max_attempts: i32,
    pub job_timeout_seconds: i32,
    pub enabled: bool,
    /// `skip`, `once` or `all` ([`crate::periodic::Missed`]).
    pub missed: String,
    pub max_catch_up: i32,
    /// Wall time (in `timezone`) of the last tick passed (fired or skipped).
    pub last_tick: Option<NaiveDateTime>,
    pub last_fired_at: Option<DateTime<Utc>>,
    pub next_tick: Option<NaiveDateTime>,
    pub next_fire_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a schedule is: every column a person sets.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSpec {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub job_type: String,
    pub job_queue: String,
    pub job_payload: serde_json::Value,
    pub job_priority: i16,
    pub job_max_attempts: i32,
    pub job_timeout_seconds: i32,
    pub enabled: bool,
    pub missed: crate::periodic::Missed,
    pub max_catch_up: i32,
}

/// Where a schedule's clock stands: the last tick passed and the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub last_tick: NaiveDateTime,
    pub next: Option<Tick>,
}

const COLUMNS: &str = "name, cron, timezone, job_type, job_queue, job_payload, job_priority, \
     job_max_attempts, job_timeout_seconds, enabled, missed, max_catch_up, last_tick, \
     next_tick, next_fire_at";

fn values(spec: &ScheduleSpec, position: &Position) -> Vec<Value> {
    vec![
        spec.name.clone().into(),
        spec.cron.clone().into(),
        spec.timezone.clone().into(),
        spec.job_type.clone().into(),
        spec.job_queue.clone().into(),
        spec.job_payload.clone().into(),
        spec.job_priority.into(),
        spec.job_max_attempts.into(),
        spec.job_timeout_seconds.into(),
        spec.enabled.into(),
        spec.missed.as_str().into(),
        spec.max_catch_up.into(),
        position.last_tick.into(),
        position.next.map(|tick| tick.wall).into(),
        position.next.map(|tick| tick.at).into(),
    ]
}

impl Store {
    /// The schedule row `sql` (with `values`) returns, if any.
    async fn one_schedule(
        &self,
        sql: impl Into<String>,
        values: impl IntoIterator<Item = Value>,
    ) -> Result<Option<ScheduleRow>, StoreError> {
        Ok(
            ScheduleRow::find_by_statement(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                values,
            ))
            .one(&self.db)
            .await?,
        )
    }

    /// PostgreSQL's clock: the one schedules are fired by.
    pub async fn db_now(&self) -> Result<DateTime<Utc>, StoreError> {
        #[derive(FromQueryResult)]
        struct Now {
            now: DateTime<Utc>,
        }
        let now = Now::find_by_statement(Statement::from_string(
            DbBackend::Postgres,
            "SELECT now() AS now",
        ))
        .one(&self.db)
        .await?
        .ok_or(StoreError::Interrupted("db_now"))?;
        Ok(now.now)
    }

    /// Every schedule, by name.
    pub async fn schedules(&self) -> Result<Vec<ScheduleRow>, StoreError> {
        Ok(ScheduleRow::find_by_statement(Statement::from_string(
            DbBackend::Postgres,
            "SELECT * FROM schedules ORDER BY name",
        ))
        .all(&self.db)
        .await?)
    }

    pub async fn schedule(&self, name: &str) -> Result<Option<ScheduleRow>, StoreError> {
        self.one_schedule("SELECT * FROM schedules WHERE name = $1", [name.into()])
            .await
    }

    /// Creates the schedule, or returns `None` if its name is taken.
    pub async fn create_schedule(
        &self,
        spec: &ScheduleSpec,
        position: &Position,
    ) -> Result<Option<ScheduleRow>, StoreError> {
        let sql = format!(
            "INSERT INTO schedules ({COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
             ON CONFLICT (name) DO NOTHING RETURNING *"
        );
        self.one_schedule(sql, values(spec, position)).await
    }

    /// Writes `spec` and `position` over the schedule if it was last
    /// written at `seen` (so a change made meanwhile is not overwritten);
    /// `None` if it was not.
    pub async fn replace_schedule(
        &self,
        spec: &ScheduleSpec,
        position: &Position,
        seen: DateTime<Utc>,
    ) -> Result<Option<ScheduleRow>, StoreError> {
        let mut values = values(spec, position);
        values.push(seen.into());
        self.one_schedule(
            "UPDATE schedules SET cron = $2, timezone = $3, job_type = $4, job_queue = $5, \
             job_payload = $6, job_priority = $7, job_max_attempts = $8, \
             job_timeout_seconds = $9, enabled = $10, missed = $11, max_catch_up = $12, \
             last_tick = $13, next_tick = $14, next_fire_at = $15, updated_at = now() \
             WHERE name = $1 AND updated_at = $16 RETURNING *",
            values,
        )
        .await
    }

    /// Creates the schedule or, if its name is taken, replaces its
    /// definition, keeping its position unless its timing changed and
    /// keeping whether it is paused (an operator's pause outlives a
    /// restart): how an application declares its schedules at start-up.
    pub async fn upsert_schedule(
        &self,
        spec: &ScheduleSpec,
        position: &Position,
    ) -> Result<ScheduleRow, StoreError> {
        let sql = format!(
            "INSERT INTO schedules ({COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
             ON CONFLICT (name) DO UPDATE SET \
             job_type = $4, job_queue = $5, job_payload = $6, job_priority = $7, \
             job_max_attempts = $8, job_timeout_seconds = $9, missed = $11, \
             max_catch_up = $12, \
             last_tick = CASE WHEN schedules.cron = $2 AND schedules.timezone = $3 \
                 THEN schedules.last_tick ELSE $13 END, \
             next_tick = CASE WHEN schedules.cron = $2 AND schedules.timezone = $3 \
                 THEN schedules.next_tick ELSE $14 END, \
             next_fire_at = CASE WHEN schedules.cron = $2 AND schedules.timezone = $3 \
                 THEN schedules.next_fire_at ELSE $15 END, \
             cron = $2, timezone = $3, updated_at = now() \
             RETURNING *"
        );
        self.one_schedule(sql, values(spec, position))
            .await?
            .ok_or(StoreError::Interrupted("upsert_schedule"))
    }

    /// Deletes the schedule; false if there was none. Its jobs stay.
    pub async fn delete_schedule(&self, name: &str) -> Result<bool, StoreError> {
        use sea_orm::ConnectionTrait;
        let result = self
            .db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "DELETE FROM schedules WHERE name = $1",
                [name.into()],
            ))
            .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Enabled schedules due by PostgreSQL's clock, soonest first, at most
    /// `limit`; and that clock's reading.
    pub async fn due_schedules(
        &self,
        limit: u64,
    ) -> Result<(Vec<ScheduleRow>, DateTime<Utc>), StoreError> {
        let now = self.db_now().await?;
        let rows = ScheduleRow::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT * FROM schedules WHERE enabled AND next_fire_at <= $1 \
             ORDER BY next_fire_at LIMIT $2",
            [now.into(), i64::try_from(limit).unwrap_or(i64::MAX).into()],
        ))
        .all(&self.db)
        .await?;
        Ok((rows, now))
    }

    /// Moves a fired schedule's clock on, if nobody wrote the schedule
    /// since it was read (`seen`); false otherwise (another leader did, or
    /// a person changed it: the next pass reads it again).
    pub async fn advance_schedule(
        &self,
        name: &str,
        seen: DateTime<Utc>,
        position: &Position,
        fired: bool,
    ) -> Result<bool, StoreError> {
        use sea_orm::ConnectionTrait;
        let result = self
            .db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE schedules SET last_tick = $3, next_tick = $4, next_fire_at = $5, \
                 last_fired_at = CASE WHEN $6 THEN now() ELSE last_fired_at END, \
                 updated_at = now() WHERE name = $1 AND updated_at = $2",
                [
                    name.into(),
                    seen.into(),
                    position.last_tick.into(),
                    position.next.map(|tick| tick.wall).into(),
                    position.next.map(|tick| tick.at).into(),
                    fired.into(),
                ],
            ))
            .await?;
        Ok(result.rows_affected() > 0)
    }
}
