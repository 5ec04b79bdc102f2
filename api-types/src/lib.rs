//! The bodies of Conveyor's HTTP API, as the server writes and reads them
//! and as the typed client (`conveyor-client`) sends and receives them:
//! one definition each, so the two cannot drift apart. Plain data with
//! serde and OpenAPI derives; no server code.
//!
//! # Layout
//! - [`jobs`]: creating a job, reading it, its result and attempts.
//! - [`batch`]: many jobs in one request.
//! - [`list`]: listing jobs, and its query.
//! - [`bulk`]: retry or cancel every job matching a filter.
//! - [`queues`]: queues, their settings, and the live workers.
//! - [`schedules`]: periodic schedules.
//! - [`remote`]: the worker protocol: claim, heartbeat, complete, fail.
//! - [`health`]: liveness, readiness, the job summary.
//! - [`problem`]: the problem document of every error answer.

pub mod batch;
pub mod bulk;
pub mod health;
pub mod jobs;
pub mod list;
pub mod problem;
pub mod queues;
pub mod remote;
pub mod schedules;

pub use batch::{BatchItem, BatchResult, CreateBatch};
pub use bulk::{BulkRequest, BulkResult};
pub use health::{Health, Readiness, Summary};
pub use jobs::{AttemptList, AttemptView, CreateJob, JobResult, JobView};
pub use list::{Accuracy, JobList, JobStatusName, ListParams};
pub use problem::Problem;
pub use queues::{QueuePatch, QueueSettingsView, QueueView, Queues, WorkerView};
pub use remote::{
    AttemptState, ClaimJobs, Claimed, ClaimedJob, CompleteJob, FailJob, Heartbeat, HeartbeatResult,
    HeldJob, HeldJobState, ReleaseJob, Reported,
};
pub use schedules::{
    CreateSchedule, JobTemplate, MissedPolicy, ScheduleList, ScheduleView, UpdateSchedule,
};
