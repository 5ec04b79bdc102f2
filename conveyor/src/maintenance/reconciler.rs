//! The reconciler: makes Redis agree with PostgreSQL.
//!
//! Redis can lose ids: it restarts without persistence, someone deletes
//! keys, or a publish after a commit never happened. The leader pages
//! through the waiting jobs in PostgreSQL, reading only what publishing
//! needs (id, queue, priority, run_at, updated_at: never the payload), and
//! publishes those that no Redis key holds: due ones to their ready lane,
//! later ones to `delayed`. "Held" means a ready lane, the delayed set, or
//! the processing list of a registered worker; a list of a worker that left
//! the registry holds nothing anyone will act on, and neither does a remote
//! worker's (the worker protocol's), whose list holds ids only between
//! their fetch and their claim.
//!
//! Jobs written within the quiet period are left to the normal path, ids
//! already held are never pushed again (a large, healthy backlog is not
//! duplicated), and the jobs about to be published are read again first, so
//! one that moved on since its page was read (claimed, canceled, deleted) is
//! not. Between pages the pass checks that this process still leads.
//!
//! An epoch key, set after a full pass, vanishes when Redis loses its data;
//! the reconciler looks for it every `epoch_check_interval` and, when it is
//! gone, runs a pass at once with no quiet period.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::{Context, MaintenanceError, Pass, Scope, Service, Settings};
use crate::job::WaitingJob;

/// Waiting jobs read from PostgreSQL per page.
pub const PAGE_SIZE: u64 = 10_000;
/// Most ids published per Redis round trip.
const PUBLISH_CHUNK: usize = 1_000;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Waiting jobs compared with Redis.
    pub checked: usize,
    /// Of those, published again because no Redis key held them.
    pub republished: usize,
    /// The epoch key was missing: Redis had lost its data.
    pub redis_was_reset: bool,
}

/// The service: a full pass every `reconcile_interval`, and at once when
/// the epoch key is gone.
#[derive(Debug, Default)]
pub struct Reconciler {
    last_pass: Mutex<Option<Instant>>,
}

impl Service for Reconciler {
    fn name(&self) -> &'static str {
        "reconciler"
    }

    fn scope(&self) -> Scope {
        Scope::Leader
    }

    fn period(&self, settings: &Settings) -> Duration {
        settings.epoch_check_interval
    }

    fn pass<'a>(&'a self, ctx: &'a Context) -> Pass<'a> {
        Box::pin(async move {
            let last = self.last_pass.lock().ok().and_then(|last| *last);
            let due = last.is_none_or(|at| at.elapsed() >= ctx.settings.reconcile_interval);
            if !due && ctx.broker.epoch_exists().await? {
                return Ok(());
            }
            reconcile_once(ctx, ctx.settings.reconcile_interval * 2).await?;
            if let Ok(mut last) = self.last_pass.lock() {
                *last = Some(Instant::now());
            }
            Ok(())
        })
    }
}

/// One reconciliation pass. Jobs written within `quiet` are skipped unless
/// Redis was reset.
pub async fn reconcile_once(ctx: &Context, quiet: Duration) -> Result<Report, MaintenanceError> {
    let redis_was_reset = !ctx.broker.epoch_exists().await?;
    let quiet = if redis_was_reset {
        Duration::ZERO
    } else {
        quiet
    };
    let mut report = Report {
        redis_was_reset,
        ..Report::default()
    };
    // A remote worker's list holds only ids taken and not yet claimed (a
    // claim cut off midway): waiting jobs there count as held by no one, or
    // a worker that keeps calling but never claims from that queue again
    // would keep them forever.
    let workers: Vec<String> = ctx
        .broker
        .registered_workers()
        .await?
        .into_iter()
        .filter(|worker| !crate::WorkerId::is_remote(worker))
        .collect();
    let mut held: HashMap<String, HashSet<uuid::Uuid>> = HashMap::new();
    let mut after = None;
    loop {
        ctx.still_leader()?;
        let page = ctx.store.waiting_page(quiet, after, PAGE_SIZE).await?;
        let Some(last) = page.last() else { break };
        after = Some((last.run_at, last.id));
        report.checked += page.len();
        let mut missing: Vec<uuid::Uuid> = Vec::new();
        for job in &page {
            if !held.contains_key(&job.queue) {
                let ids = ctx.broker.ids_held(&job.queue, &workers).await?;
                held.insert(job.queue.clone(), ids);
            }
            if !held
                .get(&job.queue)
                .is_some_and(|ids| ids.contains(&job.id))
            {
                missing.push(job.id);
            }
        }
        let full_page = page.len() as u64 == PAGE_SIZE;
        drop(page);
        for chunk in missing.chunks(PUBLISH_CHUNK) {
            ctx.still_leader()?;
            let still: Vec<WaitingJob> = ctx.store.still_waiting(chunk, quiet).await?;
            ctx.broker.publish_waiting(&still).await?;
            report.republished += still.len();
            crate::metrics::reconciler_republished(still.len());
        }
        if !full_page {
            break;
        }
    }
    if redis_was_reset {
        ctx.broker
            .set_epoch(&uuid::Uuid::now_v7().to_string())
            .await?;
    }
    if report.republished > 0 || redis_was_reset {
        tracing::warn!(
            event = "jobs_republished",
            checked = report.checked,
            republished = report.republished,
            redis_was_reset,
            "reconciler republished {} job(s) that Redis did not hold",
            report.republished
        );
    }
    Ok(report)
}
