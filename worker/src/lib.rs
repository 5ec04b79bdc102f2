//! Conveyor's worker runtime, as a library so that applications register
//! their own task handlers; `conveyor-worker` is this plus the built-ins.
//!
//! ```no_run
//! use serde::Deserialize;
//! use worker::{Context, JobError, Registry};
//!
//! #[derive(Deserialize)]
//! struct Email { to: String }
//!
//! async fn send_email(email: Email, ctx: Context) -> Result<serde_json::Value, JobError> {
//!     if email.to.is_empty() {
//!         return Err(JobError::permanent("no recipient"));
//!     }
//!     Ok(serde_json::json!({ "sent_to": email.to, "attempt": ctx.attempt }))
//! }
//!
//! let mut registry = Registry::new();
//! registry.register("send_email", send_email);
//! ```
//!
//! A worker takes ids from Redis (a sweep of the lanes, highest priority
//! first, then `BRPOPLPUSH`), claims each job in PostgreSQL with a guarded
//! update, runs its handler with a timeout, writes the outcome fenced by its
//! worker id and attempt, and only then acknowledges the id.
//!
//! # Layout
//! - [`handler`]: the handler API and the [`Registry`].
//! - [`builtin`]: `demo`, `char_count`, `sleep`, `noop`.
//! - [`settings`]: what a worker is configured with, as [`Settings`].
//! - [`worker`]: [`Worker::run`], start-up and graceful shutdown.
//! - [`observe`]: the `/metrics` and `/health` listener.
//! - [`recover`]: `recover-stuck`, the manual recovery command.
//! - `fetch`: taking ids from Redis.
//! - `gates`: the worker's view of its queues' pauses and limits.
//! - `execute`: one id from claim to acknowledgement.
//! - `outcomes`: group commit of completed attempts.
//! - `background`: heartbeat and cancellation listener (the maintenance
//!   services, lease rescue, dead-worker recovery and reconciliation, are
//!   `conveyor::maintenance`, run by [`Worker::run`]).
//! - `runtime`: state shared by the loops and job tasks.
//! - `retrying`: riding out PostgreSQL and Redis outages.

mod background;
pub mod builtin;
mod execute;
mod fetch;
mod gates;
pub mod handler;
pub mod observe;
mod outcomes;
pub mod recover;
mod retrying;
mod runtime;
pub mod settings;
pub mod worker;

pub use handler::{Context, HandlerResult, JobError, Progress, ProgressError, Registry};
pub use settings::Settings;
pub use worker::Worker;

/// A registry with the built-in task types.
pub fn builtin_registry() -> Registry {
    let mut registry = Registry::new();
    builtin::register(&mut registry);
    registry
}
