//! Retention: the leader deletes finished jobs once they are older than
//! their queue's retention for their status (or the global one), with their
//! attempt history, in batches of [`BATCH`] rows, each its own short
//! statement, so no pass holds a lock for long and the jobs table stays
//! bounded under any steady load. A retention of 0 keeps jobs forever.

use std::time::Duration;

use super::{Context, MaintenanceError, Pass, Scope, Service, Settings};
use crate::store::{QueueScope, QueueSettings};
use entity::JobStatus;

/// How long finished jobs are kept when neither the process nor the queue
/// says otherwise, in seconds.
pub const DEFAULT_RETAIN_COMPLETED_SECS: i64 = 7 * 24 * 3600;
pub const DEFAULT_RETAIN_FAILED_SECS: i64 = 30 * 24 * 3600;
pub const DEFAULT_RETAIN_CANCELED_SECS: i64 = 7 * 24 * 3600;
/// How often the leader prunes.
pub const DEFAULT_RETENTION_INTERVAL: Duration = Duration::from_secs(60);
/// Rows deleted per statement.
pub const BATCH: u64 = 1_000;
/// Most statements per queue and status in one pass: a backlog older than
/// that is worked off over the next passes.
pub const MAX_BATCHES_PER_PASS: usize = 50;

/// The global retention, per finished status, in seconds (0: forever).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub completed_secs: i64,
    pub failed_secs: i64,
    pub canceled_secs: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            completed_secs: DEFAULT_RETAIN_COMPLETED_SECS,
            failed_secs: DEFAULT_RETAIN_FAILED_SECS,
            canceled_secs: DEFAULT_RETAIN_CANCELED_SECS,
        }
    }
}

impl Retention {
    fn global(&self, status: JobStatus) -> i64 {
        match status {
            JobStatus::Completed => self.completed_secs,
            JobStatus::Failed => self.failed_secs,
            _ => self.canceled_secs,
        }
    }
}

/// A queue's own retention for `status`, if it has one.
fn own(settings: &QueueSettings, status: JobStatus) -> Option<i64> {
    match status {
        JobStatus::Completed => settings.retain_completed_secs,
        JobStatus::Failed => settings.retain_failed_secs,
        _ => settings.retain_canceled_secs,
    }
}

#[derive(Debug)]
pub struct Retainer;

impl Service for Retainer {
    fn name(&self) -> &'static str {
        "retention"
    }

    fn scope(&self) -> Scope {
        Scope::Leader
    }

    fn period(&self, settings: &Settings) -> Duration {
        settings.retention_interval
    }

    fn pass<'a>(&'a self, ctx: &'a Context) -> Pass<'a> {
        Box::pin(async move { prune(ctx).await.map(|_| ()) })
    }
}

/// One pass over every finished status; returns how many jobs it deleted.
pub async fn prune(ctx: &Context) -> Result<u64, MaintenanceError> {
    ctx.still_leader()?;
    let queues = ctx.store.queue_settings().await?;
    let mut deleted = 0;
    for status in [JobStatus::Completed, JobStatus::Failed, JobStatus::Canceled] {
        let mut own_queues = Vec::new();
        for settings in &queues {
            if let Some(keep) = own(settings, status) {
                own_queues.push(settings.name.clone());
                let scope = QueueScope::Only(settings.name.clone());
                deleted += prune_scope(ctx, status, &scope, keep).await?;
            }
        }
        let keep = ctx.settings.retention.global(status);
        deleted += prune_scope(ctx, status, &QueueScope::AllBut(own_queues), keep).await?;
    }
    if deleted > 0 {
        tracing::info!(
            event = "jobs_pruned",
            count = deleted,
            "deleted {deleted} finished jobs past their retention"
        );
        crate::metrics::jobs_pruned(deleted);
    }
    Ok(deleted)
}

async fn prune_scope(
    ctx: &Context,
    status: JobStatus,
    scope: &QueueScope,
    keep_secs: i64,
) -> Result<u64, MaintenanceError> {
    let mut deleted = 0;
    for _ in 0..MAX_BATCHES_PER_PASS {
        let pruned = ctx
            .store
            .prune_finished(status, scope, keep_secs, BATCH)
            .await?;
        deleted += pruned;
        if pruned < BATCH {
            break;
        }
        ctx.still_leader()?;
    }
    Ok(deleted)
}
