//! An outage of one dependency, logged once when it starts and once when it
//! ends, however many tasks of a process run into it.

use std::sync::atomic::{AtomicBool, Ordering};

/// The state of one dependency (PostgreSQL or Redis) as this process saw it
/// last.
#[derive(Debug, Default)]
pub struct Outage {
    down: AtomicBool,
}

impl Outage {
    /// A call to `what` failed: logged at debug, and as
    /// `dependency_unavailable` the first time in a row.
    pub fn failed(&self, what: &str, error: &dyn std::fmt::Display) {
        tracing::debug!(dependency = what, error = %error, "{what} call failed");
        if !self.down.swap(true, Ordering::SeqCst) {
            tracing::warn!(event = "dependency_unavailable", dependency = what, error = %error,
                "{what} is unavailable; backing off and retrying");
        }
    }

    /// A call to `what` succeeded: `dependency_recovered` if it was down.
    pub fn succeeded(&self, what: &str) {
        if self.down.swap(false, Ordering::SeqCst) {
            tracing::info!(
                event = "dependency_recovered",
                dependency = what,
                "{what} is back"
            );
        }
    }
}

/// A process's view of both dependencies, shared by its loops.
#[derive(Debug, Default)]
pub struct Outages {
    pub postgres: Outage,
    pub redis: Outage,
}
