//! Making Redis agree with PostgreSQL.
//!
//! Redis can lose ids: it restarts without persistence, someone deletes
//! keys, or the API crashed between committing a job and publishing it. One
//! reconciler at a time (elected with an expiring Redis lock, among all
//! workers) pages through the waiting jobs in PostgreSQL and publishes those
//! that no Redis key holds: due ones to their ready lane, later ones to
//! `delayed`. Jobs that changed within the quiet period are left to the
//! normal path, and ids already held are never pushed again, so a large,
//! healthy backlog is not duplicated.
//!
//! An epoch key, set after a full pass, vanishes when Redis loses its data;
//! the reconciler checks for it often and, when it is gone, runs a pass at
//! once with no quiet period.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use conveyor::{Broker, Job, Store};

/// Jobs read from PostgreSQL per page.
pub const PAGE_SIZE: u64 = 5_000;

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

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] conveyor::StoreError),
    #[error(transparent)]
    Broker(#[from] conveyor::BrokerError),
}

/// One reconciliation pass. Jobs changed within `quiet` are skipped unless
/// Redis was reset.
pub async fn reconcile_once(
    store: &Store,
    broker: &Broker,
    quiet: Duration,
) -> Result<Report, ReconcileError> {
    let redis_was_reset = !broker.epoch_exists().await?;
    let quiet = if redis_was_reset {
        Duration::ZERO
    } else {
        quiet
    };
    let mut report = Report {
        redis_was_reset,
        ..Report::default()
    };
    let mut held: HashMap<String, HashSet<String>> = HashMap::new();
    let mut after = None;
    loop {
        let page = store.waiting_jobs(quiet, after, PAGE_SIZE).await?;
        let Some(last) = page.last() else { break };
        after = Some((last.run_at, last.id));
        report.checked += page.len();
        let mut missing: Vec<Job> = Vec::new();
        for job in page.iter() {
            if !held.contains_key(&job.queue) {
                let ids = broker.ids_held(&job.queue).await?;
                held.insert(job.queue.clone(), ids);
            }
            let in_redis = held
                .get(&job.queue)
                .is_some_and(|ids| ids.contains(&job.id.to_string()));
            if !in_redis {
                missing.push(job.clone());
            }
        }
        for chunk in missing.chunks(1_000) {
            broker.publish(chunk).await?;
        }
        report.republished += missing.len();
        conveyor::metrics::reconciler_republished(missing.len());
        if (page.len() as u64) < PAGE_SIZE {
            break;
        }
    }
    if redis_was_reset {
        broker.set_epoch(&uuid::Uuid::now_v7().to_string()).await?;
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
