//! Creating a job and reading one back: `POST /jobs`, `GET /jobs/{id}`,
//! `GET /jobs/{id}/result` and `GET /jobs/{id}/attempts`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// The body of `POST /jobs`. Fields not listed here are ignored. Two rules
/// span fields and so are not in the schema: `run_at` and `delay_seconds`
/// are not given together, and an `idempotency_key` given both here and in
/// the header is the same in both (422 otherwise).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateJob {
    /// The task's input: a JSON object. Strings in it may not hold U+0000.
    #[schema(value_type = Object, required = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// Task name. Default `demo`.
    #[serde(rename = "type")]
    #[schema(pattern = "^[a-z0-9_.:-]{1,64}$")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_type: Option<String>,
    /// Queue. Default `default`.
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Higher runs first within a queue. Default 0.
    #[schema(minimum = 0, maximum = 9)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// Attempts in all. Default 4.
    #[schema(minimum = 1, maximum = 100)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<i64>,
    /// Per-attempt limit in seconds. Default 300.
    #[schema(minimum = 1, maximum = 86400)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// Not before this instant (RFC 3339), which must fall in years 1 to
    /// 9999 in UTC. Not with `delay_seconds`.
    #[schema(format = DateTime)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_at: Option<String>,
    /// Not before this many seconds from now (at most a year). Not with
    /// `run_at`.
    #[schema(minimum = 0, maximum = 31536000)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_seconds: Option<i64>,
    /// 1 to 255 characters, none of them control characters; the
    /// `Idempotency-Key` header is an alternative.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// A job as clients see it: its columns, less the request fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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
    /// (Empty from a server older than this field.)
    #[schema(example = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]
    #[serde(default)]
    pub traceparent: String,
}

/// The outcome of a job, from `GET /jobs/{id}/result`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobResult {
    pub id: Uuid,
    pub status: String,
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
}

/// One attempt of a job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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

/// `GET /jobs/{id}/attempts`: every attempt, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AttemptList {
    pub job_id: Uuid,
    /// Ended attempts (at most the newest 1,000), then the running one if
    /// any.
    pub items: Vec<AttemptView>,
}

impl CreateJob {
    /// A job of `task_type` with `payload` (a JSON object) and every other
    /// field left to the server's default.
    pub fn new(task_type: impl Into<String>, payload: serde_json::Value) -> Self {
        CreateJob {
            payload: Some(payload),
            task_type: Some(task_type.into()),
            ..CreateJob::default()
        }
    }

    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    pub fn priority(mut self, priority: i64) -> Self {
        self.priority = Some(priority);
        self
    }

    pub fn max_attempts(mut self, max_attempts: i64) -> Self {
        self.max_attempts = Some(max_attempts);
        self
    }

    pub fn timeout_seconds(mut self, timeout_seconds: i64) -> Self {
        self.timeout_seconds = Some(timeout_seconds);
        self
    }

    /// Not before `at`.
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at.to_rfc3339());
        self.delay_seconds = None;
        self
    }

    /// Not before `seconds` from now.
    pub fn delay_seconds(mut self, seconds: i64) -> Self {
        self.delay_seconds = Some(seconds);
        self.run_at = None;
        self
    }

    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}
