//! The JSON shapes the API answers with. Field names are part of the
//! contract: renaming one is a breaking change.

use chrono::{DateTime, Utc};
use conveyor::Job;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// A job as clients see it: its columns, less the request fingerprint.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobView {
    pub id: Uuid,
    pub queue: String,
    #[serde(rename = "type")]
    pub task_type: String,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub priority: i16,
    /// queued, running, retrying, completed, failed or canceled.
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub timeout_seconds: i32,
    pub run_at: DateTime<Utc>,
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    pub error_message: Option<String>,
    pub idempotency_key: Option<String>,
    pub worker_id: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub cancel_requested: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    pub canceled_at: Option<DateTime<Utc>>,
    /// What the running attempt's handler last reported (any JSON), as of
    /// the worker's latest heartbeat; kept after the attempt ends, cleared
    /// by the next claim.
    #[schema(value_type = Option<Object>)]
    pub progress: Option<serde_json::Value>,
    /// The periodic schedule that made this job, and the tick (when it was
    /// due) it was made for.
    pub schedule: Option<String>,
    pub schedule_tick: Option<DateTime<Utc>>,
    /// The W3C trace context the job runs under: the `traceparent` it was
    /// created with, or, when none was given, one named by the job's id.
    /// The first attempt's span is its child.
    #[schema(example = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]
    pub traceparent: String,
}

impl From<Job> for JobView {
    fn from(job: Job) -> Self {
        let traceparent = conveyor::trace::TraceParent::of_job(&job).to_string();
        JobView {
            id: job.id,
            queue: job.queue,
            task_type: job.task_type,
            payload: job.payload,
            priority: job.priority,
            status: job.status.as_str().to_owned(),
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            timeout_seconds: job.timeout_seconds,
            run_at: job.run_at,
            result: job.result,
            error_message: job.error_message,
            idempotency_key: job.idempotency_key,
            worker_id: job.worker_id,
            lease_expires_at: job.lease_expires_at,
            cancel_requested: job.cancel_requested,
            created_at: job.created_at,
            updated_at: job.updated_at,
            started_at: job.started_at,
            completed_at: job.completed_at,
            failed_at: job.failed_at,
            canceled_at: job.canceled_at,
            progress: job.progress,
            schedule: job.schedule_name,
            schedule_tick: job.schedule_tick,
            traceparent,
        }
    }
}

/// One attempt of a job.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AttemptView {
    /// 1 for the first attempt; a manual retry starts again from 1.
    pub attempt: i32,
    pub worker_id: Option<String>,
    pub started_at: DateTime<Utc>,
    /// Absent while the attempt runs.
    pub ended_at: Option<DateTime<Utc>>,
    /// `running`, `completed`, `failed` (the handler's error; retried or
    /// not), `lost` (its lease expired, or `recover-stuck`), `interrupted`
    /// (a shutdown put it back; it does not count), `canceled`.
    pub outcome: String,
    pub error: Option<String>,
    /// Absent while the attempt runs.
    pub duration_ms: Option<i64>,
}

impl From<conveyor::store::AttemptRecord> for AttemptView {
    fn from(record: conveyor::store::AttemptRecord) -> Self {
        AttemptView {
            attempt: record.attempt,
            duration_ms: Some(record.duration_ms()),
            worker_id: record.worker_id,
            started_at: record.started_at,
            ended_at: Some(record.ended_at),
            outcome: record.outcome,
            error: record.error,
        }
    }
}

/// `GET /jobs/{id}/attempts`: every attempt, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AttemptList {
    pub job_id: Uuid,
    /// Ended attempts (at most the newest 1,000), then the running one if
    /// any.
    pub items: Vec<AttemptView>,
}

/// Whether a count is exact or an estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Accuracy {
    Exact,
    Estimated,
}

/// A page of jobs, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobList {
    pub items: Vec<JobView>,
    pub limit: u64,
    pub offset: u64,
    /// How many jobs match the filters, on every page (not the size of this
    /// page). Exact up to 10,000; above that an estimate (see
    /// `count_accuracy`).
    pub count: u64,
    /// `exact`, or `estimated` when more than 10,000 jobs match (or
    /// counting them took too long) and `count` is PostgreSQL's estimate.
    pub count_accuracy: Accuracy,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The outcome of a job, from `GET /jobs/{id}/result`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobResult {
    pub id: Uuid,
    pub status: String,
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
}

/// Job counts by status, overall and per queue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Summary {
    /// Every status, with 0 where there are none.
    #[schema(value_type = Object)]
    pub by_status: std::collections::BTreeMap<String, i64>,
    #[schema(value_type = Object)]
    pub by_queue: std::collections::BTreeMap<String, std::collections::BTreeMap<String, i64>>,
    pub total: i64,
    /// `exact`: counted from the table (at most two seconds ago).
    /// `estimated`: the table is large (over 2 million rows), so the
    /// statuses in `estimated_statuses` come from a sample; waiting and
    /// running jobs are always counted exactly.
    pub accuracy: Accuracy,
    pub estimated_statuses: Vec<String>,
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// `GET /ready`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Readiness {
    pub status: String,
    pub postgres: String,
    pub redis: String,
}
