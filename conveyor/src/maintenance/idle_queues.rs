//! Idle queues leave the set of known queues: queue names come from
//! clients, and every pass of the promoter, dead-worker recovery and every
//! metrics scrape walks the set, so a set that only grew would make each of
//! them cost more with every name ever used. A queue that holds nothing is
//! dropped; its next publish adds it back.
//!
//! If a queue is dropped while an id moves into a worker that registered a
//! moment ago (so its processing list was not looked at), that id is still
//! safe: its job is in PostgreSQL, and the lease rescuer (if it was
//! claimed) or the reconciler (if not) brings it back.

use std::time::Duration;

use super::{Context, MaintenanceError, Pass, Scope, Service, Settings};

#[derive(Debug)]
pub struct IdleQueues;

impl Service for IdleQueues {
    fn name(&self) -> &'static str {
        "idle_queues"
    }

    fn scope(&self) -> Scope {
        Scope::Leader
    }

    fn period(&self, settings: &Settings) -> Duration {
        settings.reconcile_interval
    }

    fn pass<'a>(&'a self, ctx: &'a Context) -> Pass<'a> {
        Box::pin(forget_idle_queues(ctx))
    }
}

/// One pass: drops every idle queue from the set.
pub async fn forget_idle_queues(ctx: &Context) -> Result<(), MaintenanceError> {
    ctx.still_leader()?;
    let forgotten = ctx.broker.forget_idle_queues().await?;
    if forgotten > 0 {
        tracing::debug!(forgotten, "idle queues left the set of known queues");
    }
    Ok(())
}
