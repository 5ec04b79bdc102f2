//! Operating queues: pause, resume, limits and retention. PostgreSQL's
//! `queues` table is the truth: a claim checks the pause itself, and
//! workers read the limits from it (see the worker's `gates`), so nothing
//! here writes Redis and nothing is lost when Redis loses its data.

use std::collections::BTreeMap;

use super::Client;
use crate::broker::QueueDepths;
use crate::job::{InvalidJob, check_queue_name};
use crate::store::{
    Change, MAX_LIMIT, MAX_RETENTION_SECS, MIN_RATE, QueueChange, QueueSettings, StoreError,
};
use crate::{Broker, BrokerError, Store};

/// One queue as an operator sees it: its settings and its live state.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueOverview {
    pub name: String,
    /// `None` for a queue never configured (the defaults).
    pub settings: Option<QueueSettings>,
    /// What Redis holds for it.
    pub depths: QueueDepths,
    /// Its jobs in `running` (PostgreSQL).
    pub running: i64,
    /// How long the job next in line has been due: the queue's latency.
    /// `None` when nothing is ready. Read from the id at the head of each
    /// ready lane, so an id whose job was canceled while it waited hides
    /// the one behind it until a worker takes it.
    pub oldest_due: Option<std::time::Duration>,
}

impl QueueOverview {
    pub fn is_paused(&self) -> bool {
        self.settings
            .as_ref()
            .is_some_and(|settings| settings.paused)
    }

    /// Ids waiting on its lanes.
    pub fn ready(&self) -> u64 {
        self.depths.ready.iter().sum()
    }

    /// Jobs are ready and no registered worker serves it: they wait for
    /// a worker configured with this queue.
    pub fn is_unserved(&self) -> bool {
        self.depths.workers == 0 && self.ready() > 0
    }
}

/// Why the overview could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OverviewError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// Every queue in use (known to Redis), running jobs, or configured, by
/// name, with its settings and live state. Reads only: the set of known
/// queues, two pipelines (depths, the next id of each lane), three small
/// queries.
pub async fn overview(store: &Store, broker: &Broker) -> Result<Vec<QueueOverview>, OverviewError> {
    let mut names = broker.known_queues().await?;
    let running = store.running_by_queue().await?;
    let mut settings: BTreeMap<String, QueueSettings> = store
        .queue_settings()
        .await?
        .into_iter()
        .map(|settings| (settings.name.clone(), settings))
        .collect();
    for queue in running.keys().chain(settings.keys()) {
        if !names.contains(queue) {
            names.push(queue.clone());
        }
    }
    names.sort();
    let depths = broker.queue_depths_of(&names).await?;
    let next_ids: Vec<String> = broker.next_ready_ids(&names).await?.concat();
    let mut oldest_due = store.longest_due(&next_ids).await?;
    Ok(names
        .into_iter()
        .zip(depths)
        .map(|(name, depths)| QueueOverview {
            oldest_due: oldest_due.remove(&name),
            settings: settings.remove(&name),
            running: running.get(&name).copied().unwrap_or_default(),
            depths,
            name,
        })
        .collect())
}

impl Client {
    /// Applies `change` to `queue`'s settings and returns them.
    pub async fn configure_queue(
        &self,
        queue: &str,
        change: &QueueChange,
    ) -> Result<QueueSettings, StoreError> {
        check_queue_name(queue)?;
        check_change(change)?;
        let settings = self.store.configure_queue(queue, change).await?;
        tracing::info!(event = "queue_configured", job.queue = %queue, paused = settings.paused,
            concurrency_limit = ?settings.concurrency_limit, rate_limit = ?settings.rate_limit,
            rate_burst = ?settings.rate_burst, retain_completed_secs = ?settings.retain_completed_secs,
            retain_failed_secs = ?settings.retain_failed_secs,
            retain_canceled_secs = ?settings.retain_canceled_secs, "queue {queue} configured");
        Ok(settings)
    }

    /// No worker starts a job of `queue` once this returns; running jobs
    /// finish, new jobs are still accepted.
    pub async fn pause_queue(&self, queue: &str) -> Result<QueueSettings, StoreError> {
        let change = QueueChange {
            paused: Some(true),
            ..QueueChange::default()
        };
        self.configure_queue(queue, &change).await
    }

    /// Workers start `queue`'s jobs again (within a second).
    pub async fn resume_queue(&self, queue: &str) -> Result<QueueSettings, StoreError> {
        let change = QueueChange {
            paused: Some(false),
            ..QueueChange::default()
        };
        self.configure_queue(queue, &change).await
    }
}

/// Refuses values the table would refuse, naming the field.
pub fn check_change(change: &QueueChange) -> Result<(), InvalidJob> {
    let whole = |field: &'static str, value: Change<i32>| match value {
        Change::Set(n) if !(1..=MAX_LIMIT).contains(&n) => Err(InvalidJob::new(
            field,
            format!("must be a whole number between 1 and {MAX_LIMIT}, or null for none (got {n})"),
        )),
        _ => Ok(()),
    };
    whole("concurrency_limit", change.concurrency_limit)?;
    whole("rate_burst", change.rate_burst)?;
    if let Change::Set(rate) = change.rate_limit
        && !(rate.is_finite() && rate >= MIN_RATE && rate <= f64::from(MAX_LIMIT))
    {
        return Err(InvalidJob::new(
            "rate_limit",
            format!(
                "must be a number of jobs per second from {MIN_RATE:.8} (one a day) to {MAX_LIMIT}, \
                 or null for none (got {rate})"
            ),
        ));
    }
    for (field, value) in [
        ("retain_completed_secs", change.retain_completed_secs),
        ("retain_failed_secs", change.retain_failed_secs),
        ("retain_canceled_secs", change.retain_canceled_secs),
    ] {
        if let Change::Set(secs) = value
            && !(0..=MAX_RETENTION_SECS).contains(&secs)
        {
            return Err(InvalidJob::new(
                field,
                format!(
                    "must be a number of seconds between 0 (keep forever) and {MAX_RETENTION_SECS}, \
                     or null for the global setting (got {secs})"
                ),
            ));
        }
    }
    Ok(())
}
