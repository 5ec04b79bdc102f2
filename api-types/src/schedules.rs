//! Periodic schedules: `/schedules`.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The job a schedule makes at each tick.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobTemplate {
    #[serde(rename = "type")]
    #[schema(pattern = "^[a-z0-9_.:-]{1,64}$")]
    pub task_type: String,
    /// Default `default`.
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// A JSON object; default `{}`.
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// 0..=9, default 0.
    #[schema(minimum = 0, maximum = 9)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i16>,
    /// 1..=100, default 4.
    #[schema(minimum = 1, maximum = 100)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<i32>,
    /// 1..=86400, default 300.
    #[schema(minimum = 1, maximum = 86400)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i32>,
}

/// A ticks-missed policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MissedPolicy {
    /// Fire none of the ticks missed while nothing ran (the default).
    Skip,
    /// Fire the latest missed tick once.
    Once,
    /// Fire each missed tick, up to `max_catch_up`.
    All,
}

/// `POST /schedules`. Unknown fields are refused (a misspelt `timezone`
/// must not leave a schedule in UTC).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSchedule {
    /// 1..=64 of a-z, 0-9, `_`, `.`, `:`, `-`.
    #[schema(pattern = "^[a-z0-9_.:-]{1,64}$")]
    pub name: String,
    /// Five fields (minute hour day-of-month month day-of-week), or six
    /// with seconds first.
    pub cron: String,
    /// An IANA zone name; default `UTC`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    pub job: JobTemplate,
    /// Default true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missed: Option<MissedPolicy>,
    /// Most missed ticks fired with `missed: all`, 1..=1000; default 10.
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_catch_up: Option<i32>,
}

/// `PATCH /schedules/{name}`: the fields given are changed. A new `cron`
/// or `timezone` starts the schedule's clock from now.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSchedule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Replaces the whole template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<JobTemplate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missed: Option<MissedPolicy>,
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_catch_up: Option<i32>,
}

/// A schedule, with where its clock stands.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScheduleView {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub job: JobTemplate,
    pub enabled: bool,
    pub missed: MissedPolicy,
    pub max_catch_up: i32,
    /// Wall-clock time (in `timezone`) of the last tick passed.
    #[schema(value_type = Option<String>, example = "2026-11-29T02:30:00")]
    pub last_tick: Option<NaiveDateTime>,
    pub last_fired_at: Option<DateTime<Utc>>,
    /// Wall-clock time (in `timezone`) of the next tick.
    #[schema(value_type = Option<String>, example = "2026-11-30T02:30:00")]
    pub next_tick: Option<NaiveDateTime>,
    /// When the next tick fires.
    pub next_fire_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Every schedule.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScheduleList {
    pub items: Vec<ScheduleView>,
}
