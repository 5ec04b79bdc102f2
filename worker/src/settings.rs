use std::time::Duration;

use conveyor::WorkerId;
use conveyor::config::WorkerConfig;
use conveyor::retry::RetryPolicy;

/// How long an idle worker blocks on Redis before sweeping every lane again:
/// the longest a job outside the default lane waits for an idle worker.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How often due retries and scheduled jobs are moved to their ready lanes.
pub const DEFAULT_PROMOTE_INTERVAL: Duration = Duration::from_millis(250);
/// How long a handler asked to stop may take before it is aborted.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_millis(500);
/// How often the reconciler compares every waiting job with Redis.
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(10);
/// How often it checks whether Redis lost its data (the epoch key).
pub const DEFAULT_EPOCH_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Most ids taken from Redis in one round trip.
pub const MAX_FETCH_BATCH: usize = 64;

/// Everything a [`crate::Worker`] needs to know, as durations. Build it from
/// [`WorkerConfig`] or directly (tests use sub-second leases).
#[derive(Debug, Clone)]
pub struct Settings {
    pub worker_id: WorkerId,
    pub host: String,
    /// Queues in strict order: a job in an earlier queue always goes first.
    pub queues: Vec<String>,
    pub concurrency: usize,
    /// A running job's lease, and how long a silent worker is presumed alive.
    pub lease: Duration,
    pub heartbeat: Duration,
    pub retry: RetryPolicy,
    pub shutdown_grace: Duration,
    pub poll_interval: Duration,
    pub promote_interval: Duration,
    pub stop_grace: Duration,
    pub reconcile_interval: Duration,
    pub epoch_check_interval: Duration,
    /// How long finished jobs are kept unless their queue says otherwise.
    pub retention: conveyor::maintenance::retention::Retention,
    pub retention_interval: Duration,
    /// How often the maintenance leader fires due periodic schedules.
    pub schedule_interval: Duration,
    /// Schedules this worker declares at start-up (created, or their
    /// definitions replaced, by name).
    pub schedules: Vec<conveyor::store::ScheduleSpec>,
}

impl Settings {
    pub fn from_config(config: &WorkerConfig) -> Self {
        let host = hostname();
        Settings {
            worker_id: WorkerId::generate(&host),
            host,
            queues: config.queues.names().to_vec(),
            concurrency: config.concurrency as usize,
            lease: config.lease(),
            heartbeat: config.heartbeat_interval(),
            retry: RetryPolicy::from_config(&config.retry),
            shutdown_grace: config.shutdown_grace(),
            poll_interval: DEFAULT_POLL_INTERVAL,
            promote_interval: DEFAULT_PROMOTE_INTERVAL,
            stop_grace: DEFAULT_STOP_GRACE,
            reconcile_interval: DEFAULT_RECONCILE_INTERVAL,
            epoch_check_interval: DEFAULT_EPOCH_CHECK_INTERVAL,
            retention: config.retention(),
            retention_interval: Duration::from_secs(config.retention_interval_secs),
            schedule_interval: conveyor::maintenance::scheduler::DEFAULT_SCHEDULE_INTERVAL,
            schedules: Vec::new(),
        }
    }

    /// What this worker's maintenance services run with.
    pub fn maintenance(&self) -> conveyor::maintenance::Settings {
        conveyor::maintenance::Settings {
            me: self.worker_id.clone(),
            queues: self.queues.clone(),
            lease: self.lease,
            tick: self.heartbeat,
            promote_interval: self.promote_interval,
            reconcile_interval: self.reconcile_interval,
            epoch_check_interval: self.epoch_check_interval,
            retention: self.retention,
            retention_interval: self.retention_interval,
            schedule_interval: self.schedule_interval,
        }
    }
}

/// This machine's name, for worker ids and the registry.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|name| name.trim().to_owned())
                .filter(|name| !name.is_empty())
        })
        .unwrap_or_else(|| "localhost".to_owned())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}
