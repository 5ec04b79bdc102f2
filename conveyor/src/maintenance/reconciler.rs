//! The reconciler: makes Redis agree with PostgreSQL.
//!
//! Redis can lose ids: it restarts without persistence, someone deletes
//! keys, or a publish after a commit never happened. The leader pages
//! through the waiting jobs in PostgreSQL, reading only what publishing
//! needs (id, queue, priority, run_at, updated_at: never the payload), and
//! publishes those that no Redis key holds: due ones to their ready lane,
//! later ones to `delayed`. "Held" means a ready lane, the delayed set, or
//! the processing list of a registered worker; a list of a worker that left
//! the registry holds nothing anyone will act on.
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

/// Routine passes take at most one part in this many of the time: after a
/// pass that took `d`, the next waits at least `d × (PARTS − 1)`.
const PARTS: u32 = 10;

/// The longest wait between routine passes, however long the last took: a
/// publish that never happened is found within this (plus a pass).
pub const MAX_PAUSE: Duration = Duration::from_secs(120);

/// The service: a full pass every `reconcile_interval`, or less often when
/// passes are long (see [`pause_after`]), and at once when the epoch key is
/// gone.
#[derive(Debug, Default)]
pub struct Reconciler {
    /// When the last pass ended, and how long it took.
    last_pass: Mutex<Option<(Instant, Duration)>>,
}

/// How long after a pass that took `pass` the next routine one is due: the
/// reconcile interval, or nine times the pass when that is longer (so that
/// routine passes take at most a tenth of the time), but never more than
/// [`MAX_PAUSE`]. A pass reads every waiting job and every id Redis holds;
/// over a backlog of a million it takes seconds, and every ten seconds it
/// cost a draining stack a third of its throughput. A Redis that lost its
/// data is still reconciled at once.
pub fn pause_after(pass: Duration, interval: Duration) -> Duration {
    interval
        .max(pass.saturating_mul(PARTS - 1))
        .min(MAX_PAUSE.max(interval))
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
            let due = last.is_none_or(|(ended, took)| {
                ended.elapsed() >= pause_after(took, ctx.settings.reconcile_interval)
            });
            if !due && ctx.broker.epoch_exists().await? {
                return Ok(());
            }
            let started = Instant::now();
            reconcile_once(ctx, ctx.settings.reconcile_interval * 2).await?;
            if let Ok(mut last) = self.last_pass.lock() {
                *last = Some((Instant::now(), started.elapsed()));
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
    let workers = ctx.broker.registered_workers().await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routine_passes_take_at_most_a_tenth_of_the_time() {
        let interval = Duration::from_secs(10);
        // Short passes keep the interval.
        assert_eq!(pause_after(Duration::from_millis(20), interval), interval);
        assert_eq!(pause_after(Duration::from_secs(1), interval), interval);
        // Long ones space the next out: a 3 s pass, then 27 s of rest.
        let pass = Duration::from_secs(3);
        let pause = pause_after(pass, interval);
        assert_eq!(pause, Duration::from_secs(27));
        assert!(pass.as_secs_f64() / (pass + pause).as_secs_f64() <= 0.1);
        // A pass slowed by a stall cannot put the next one off for long.
        assert_eq!(pause_after(Duration::from_secs(60), interval), MAX_PAUSE);
        assert_eq!(pause_after(Duration::MAX, interval), MAX_PAUSE);
        // An interval set longer than the cap is kept.
        let hourly = Duration::from_secs(3600);
        assert_eq!(pause_after(Duration::from_secs(60), hourly), hourly);
    }
}
