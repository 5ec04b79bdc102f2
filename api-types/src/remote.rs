//! The worker protocol, for workers in any language: `POST /jobs/claim`,
//! `POST /jobs/heartbeat`, `POST /jobs/{id}/complete`, `/fail` and
//! `/release` (`docs/worker-protocol.md`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// The body of `POST /jobs/claim`. Fields not listed here are ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ClaimJobs {
    /// The worker's name, the same in all its calls: it names the worker
    /// in the registry and on the jobs it runs, so give each worker
    /// process its own (host and pid, say). 1 to 128 of `A-Za-z0-9._:@-`.
    #[schema(pattern = "^[A-Za-z0-9._:@-]{1,128}$")]
    pub worker: String,
    /// Queues to take jobs from, in strict order: a job in an earlier queue
    /// always goes first. 1 to 16 distinct names. Default `["default"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_items = 1, max_items = 16)]
    pub queues: Option<Vec<String>>,
    /// Most jobs to take. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100)]
    pub max: Option<i64>,
    /// How long to wait for a job when none is ready, in milliseconds
    /// (a long-poll). Default 0: answer at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 30000)]
    pub wait_ms: Option<i64>,
}

/// A job claimed for a worker: what to run, and the token to send back
/// with every heartbeat and report of this attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClaimedJob {
    pub id: Uuid,
    pub queue: String,
    #[serde(rename = "type")]
    pub task_type: String,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub priority: i16,
    /// Which attempt this is (1 for the first).
    pub attempt: i32,
    pub max_attempts: i32,
    /// This attempt's fencing token. A report or heartbeat with any other
    /// token changes nothing.
    pub token: Uuid,
    /// The lease holds until then unless a heartbeat extends it; after
    /// it, the job may be given to another worker.
    pub lease_expires_at: DateTime<Utc>,
    pub timeout_seconds: i32,
    /// Stop by then and report a failure: a heartbeat after it ends the
    /// attempt as timed out.
    pub deadline: DateTime<Utc>,
    /// W3C trace context of the job, for the worker's own spans.
    pub traceparent: String,
}

/// The answer of `POST /jobs/claim` when jobs were claimed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Claimed {
    /// The jobs, in the order they were taken (queue order, then priority).
    pub jobs: Vec<ClaimedJob>,
    /// How long a lease lasts unrenewed, in milliseconds: heartbeat well
    /// within it (every third of it, say).
    pub lease_ms: u64,
}

/// The body of `POST /jobs/heartbeat`. Fields not listed here are ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Heartbeat {
    /// The worker's name, as in its claims.
    #[schema(pattern = "^[A-Za-z0-9._:@-]{1,128}$")]
    pub worker: String,
    /// The attempts the worker is running, each once (at most 1,000). An
    /// empty list only keeps the worker registered.
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub jobs: Vec<HeldJob>,
}

/// An attempt a worker is running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HeldJob {
    pub id: Uuid,
    /// The token its claim gave.
    pub token: Uuid,
    /// Progress to record on the job (any JSON but `null`). Absent: the
    /// last report stands. One that cannot be stored (a string holding
    /// U+0000) is not recorded, and the answer says so; the lease is
    /// renewed all the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub progress: Option<serde_json::Value>,
}

/// What became of an attempt a heartbeat named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptState {
    /// Still the worker's; its lease is extended. Go on.
    Running,
    /// A client canceled the job; the attempt ended `canceled`. Stop, and
    /// report nothing.
    Canceled,
    /// It ran past the job's timeout and ended as a failed attempt (retried
    /// while attempts remain). Stop, and report nothing.
    TimedOut,
    /// Its outcome was already recorded by the worker's own report.
    Finished,
    /// No longer the worker's: its lease expired and the job moved on, or
    /// there is no such job. Stop; nothing reported for it is written.
    Lost,
}

/// One attempt's state after a heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HeldJobState {
    pub id: Uuid,
    pub token: Uuid,
    pub state: AttemptState,
    /// Until when the lease now holds, when `running`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Why the progress sent for this attempt was not recorded (it cannot
    /// be stored: a string holding U+0000). The lease was renewed all the
    /// same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_refused: Option<String>,
}

/// The answer of `POST /jobs/heartbeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatResult {
    /// One entry per attempt named, in the order given.
    pub jobs: Vec<HeldJobState>,
    /// How long a lease lasts unrenewed, in milliseconds.
    pub lease_ms: u64,
}

/// The body of `POST /jobs/{id}/complete`. Fields not listed here are
/// ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct CompleteJob {
    /// The worker's name, as in its claim.
    #[schema(pattern = "^[A-Za-z0-9._:@-]{1,128}$")]
    pub worker: String,
    /// The token the claim gave.
    pub token: Uuid,
    /// What the job produced (any JSON; strings may not hold U+0000).
    /// Default `null`.
    #[serde(default)]
    #[schema(value_type = Option<serde_json::Value>)]
    pub result: serde_json::Value,
}

/// The body of `POST /jobs/{id}/fail`. Fields not listed here are ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct FailJob {
    /// The worker's name, as in its claim.
    #[schema(pattern = "^[A-Za-z0-9._:@-]{1,128}$")]
    pub worker: String,
    /// The token the claim gave.
    pub token: Uuid,
    /// What went wrong, recorded on the job: 1 to 10,000 characters.
    #[schema(min_length = 1, max_length = 10000)]
    pub error: String,
    /// Whether another attempt may succeed: `true` (the default) retries
    /// after the backoff while attempts remain; `false` fails the job now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<bool>,
}

/// The body of `POST /jobs/{id}/release`. Fields not listed here are
/// ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ReleaseJob {
    /// The worker's name, as in its claim.
    #[schema(pattern = "^[A-Za-z0-9._:@-]{1,128}$")]
    pub worker: String,
    /// The token the claim gave.
    pub token: Uuid,
}

/// The answer to a report (`complete`, `fail` or `release`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Reported {
    pub id: Uuid,
    /// The job's status now: completed, retrying, failed or canceled.
    pub status: String,
    /// The attempt reported.
    pub attempt: i32,
    /// When the next attempt is due, when `retrying`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
    /// The same report had already been recorded (its answer was lost and
    /// it was sent again): nothing was written this time.
    pub repeated: bool,
}
