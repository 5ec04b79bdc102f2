//! Conveyor's shared library: what the API, the workers and a Rust
//! application that enqueues jobs itself all agree on.
//!
//! PostgreSQL holds every job and is the truth; Redis holds only job ids, so
//! that workers can wait for work without polling the database. Every write
//! to a job row goes through [`store::Store`], as one guarded `UPDATE`.
//!
//! # Layout
//! - [`client`]: [`Client`], the one way to enqueue, cancel and retry jobs;
//!   it owns the order of PostgreSQL and Redis writes on those paths.
//! - [`job`]: job identifiers, a new job's fields and their validation, the
//!   request fingerprint behind idempotency keys.
//! - [`store`]: the job store, the only code that writes job rows; every
//!   state-machine transition as one conditional statement.
//! - [`broker`]: every Redis key and the commands that write them.
//! - [`maintenance`]: the background services (lease rescuer, promoter,
//!   dead-worker recovery, reconciler) and the leader election they share.
//! - [`outage`]: a dependency's outage, logged once.
//! - [`config`]: every setting, read once from the environment or flags.
//! - [`group_commit`]: many callers' writes made as one statement.
//! - [`remote`]: workers in any language, which claim, heartbeat and
//!   report attempts through the API's worker protocol.
//! - [`periodic`]: cron expressions, time zones and the tick rule of
//!   periodic jobs.
//! - [`retry`]: exponential backoff with jitter for failed attempts and
//!   for reconnecting after an outage.
//! - [`signals`]: SIGINT/SIGTERM as a future.
//! - [`metrics`]: Prometheus metric names and the recorder.
//! - [`logging`]: the `tracing` subscriber, pretty or JSON.
//! - [`trace`]: W3C trace context from enqueue to each attempt, and the
//!   optional OTLP export of their spans.

pub mod broker;
pub mod client;
pub mod config;
pub mod group_commit;
pub mod job;
pub mod logging;
pub mod maintenance;
pub mod metrics;
pub mod outage;
pub mod periodic;
pub mod remote;
pub mod retry;
pub mod signals;
pub mod store;
pub mod trace;

pub use broker::{Broker, BrokerError, Keys};
pub use client::{Canceled, Client, enqueue_in, enqueue_many_in};
pub use entity::JobStatus;
pub use job::{ClaimToken, Job, JobId, NewJob, Schedule, WaitingJob, WorkerId};
pub use store::{Fence, Inserted, Store, StoreError, Transition};
