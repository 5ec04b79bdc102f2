//! The promoter: due ids move from this process's queues' delayed sets to
//! their ready lanes, by Redis's clock, a bounded batch per script call.
//! Runs in every process, for the queues it serves: the script is atomic,
//! so promoters racing on one queue move each id once.

use std::time::Duration;

use super::{Context, MaintenanceError, Pass, Scope, Service, Settings};

/// Most ids moved per script call.
pub const BATCH: usize = 1_000;

#[derive(Debug)]
pub struct Promoter;

impl Service for Promoter {
    fn name(&self) -> &'static str {
        "promoter"
    }

    fn scope(&self) -> Scope {
        Scope::Everywhere
    }

    fn period(&self, settings: &Settings) -> Duration {
        settings.promote_interval
    }

    fn pass<'a>(&'a self, ctx: &'a Context) -> Pass<'a> {
        Box::pin(async move {
            for queue in &ctx.settings.queues {
                while ctx.broker.promote_due(queue, BATCH).await? == BATCH {}
            }
            Ok::<(), MaintenanceError>(())
        })
    }
}
