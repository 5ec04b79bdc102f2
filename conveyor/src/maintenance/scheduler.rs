//! The scheduler: the leader fires the ticks of periodic schedules that are
//! due, every `schedule_interval` (a quarter second), so a job is enqueued
//! within a second of its tick. Each tick's job carries a key made from the
//! schedule and the tick, so a tick fired twice — a leader that lost its
//! lease mid-pass and its successor, a pass retried after an error — makes
//! one job (see [`crate::periodic`] for the tick rule).

use std::time::Duration;

use super::{Context, MaintenanceError, Pass, Scope, Service, Settings};

/// Schedules fired per pass at most; more wait for the next pass.
pub const SCHEDULES_PER_PASS: u64 = 100;
/// How often the leader looks for due ticks.
pub const DEFAULT_SCHEDULE_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub struct Scheduler;

impl Service for Scheduler {
    fn name(&self) -> &'static str {
        "scheduler"
    }

    fn scope(&self) -> Scope {
        Scope::Leader
    }

    fn period(&self, settings: &Settings) -> Duration {
        settings.schedule_interval
    }

    fn pass<'a>(&'a self, ctx: &'a Context) -> Pass<'a> {
        Box::pin(async move { fire_due(ctx).await.map(|_| ()) })
    }
}

/// One pass: every due schedule fired; how many jobs that made.
pub async fn fire_due(ctx: &Context) -> Result<usize, MaintenanceError> {
    ctx.still_leader()?;
    let (due, now) = ctx.store.due_schedules(SCHEDULES_PER_PASS).await?;
    let mut made = 0;
    for row in due {
        ctx.still_leader()?;
        match ctx.client.fire_schedule(&row, now).await {
            Ok(jobs) => made += jobs.len(),
            // A schedule stored before a rule it breaks existed: say so,
            // and fire the others.
            Err(crate::StoreError::Invalid(err)) => {
                tracing::error!(schedule = %row.name, error = %err,
                    "schedule cannot fire; it waits until it is changed");
                ctx.client.park_schedule(&row).await?;
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(made)
}
