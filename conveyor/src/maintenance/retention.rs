//! Retention: the leader deletes finished jobs once they are older than
//! their queue's retention for their status (or the global one), with their
//! attempt history, in batches of [`BATCH`] rows, each its own short
//! statement, so no pass holds a lock for long. A pass goes on while
//! batches come back full, for up to [`PASS_BUDGET`], so it deletes far
//! faster than workers finish jobs (tens of thousands of rows a second
//! against a few thousand jobs) and the table stays bounded under any
//! steady load. A retention of 0 keeps jobs forever.

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
/// Longest a pass deletes for; a larger backlog (the first pass after an
/// upgrade) is worked off over the next passes.
pub const PASS_BUDGET: Duration = Duration::from_secs(30);

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
    let deadline = tokio::time::Instant::now() + PASS_BUDGET;
    let mut deleted = 0;
    for status in [JobStatus::Completed, JobStatus::Failed, JobStatus::Canceled] {
        let mut own_queues = Vec::new();
        for settings in &queues {
            if let Some(keep) = own(settings, status) {
                own_queues.push(settings.name.clone());
                let scope = QueueScope::Only(settings.name.clone());
                deleted += prune_scope(ctx, status, &scope, keep, deadline).await?;
            }
        }
        let keep = ctx.settings.retention.global(status);
        let others = QueueScope::AllBut(own_queues);
        deleted += prune_scope(ctx, status, &others, keep, deadline).await?;
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
    deadline: tokio::time::Instant,
) -> Result<u64, MaintenanceError> {
    let mut deleted = 0;
    while tokio::time::Instant::now() < deadline {
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
