//! State shared by a worker's loops and its job tasks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use conveyor::broker::{Tally, TallyBuffer};
use conveyor::outage::Outages;
use conveyor::{Broker, ClaimToken, Fence, JobId, Store};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::gates::Gates;
use crate::handler::{Progress, Registry};
use crate::outcomes::Acks;
use crate::settings::Settings;
use conveyor::group_commit::Completions;

/// Why a running handler is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A client canceled the job.
    Canceled,
    /// The worker is shutting down and the grace period ran out.
    Shutdown,
    /// The attempt was taken from this worker (its lease expired and the
    /// job moved on): whatever the handler does now, nothing is written.
    LeaseLost,
}

/// How to stop one running handler.
#[derive(Debug, Clone)]
pub struct Stopper {
    pub token: CancellationToken,
    reason: Arc<Mutex<Option<StopReason>>>,
}

impl Stopper {
    fn new() -> Self {
        Stopper {
            token: CancellationToken::new(),
            reason: Arc::new(Mutex::new(None)),
        }
    }

    /// The first reason given wins.
    pub fn stop(&self, reason: StopReason) {
        if let Ok(mut slot) = self.reason.lock() {
            slot.get_or_insert(reason);
        }
        self.token.cancel();
    }

    pub fn reason(&self) -> Option<StopReason> {
        self.reason.lock().ok().and_then(|slot| *slot)
    }
}

/// What every part of a running worker shares.
#[derive(Debug)]
pub struct Runtime {
    pub store: Store,
    pub broker: Broker,
    pub settings: Settings,
    pub registry: Registry,
    /// PostgreSQL and Redis as this worker saw them last; shared with its
    /// maintenance services.
    pub outages: Arc<Outages>,
    /// The group-commit writer for completed attempts.
    pub completions: Completions,
    /// The pipelining writer for acknowledgements.
    pub acks: Acks,
    /// This worker's queues' settings, as last read.
    pub gates: Gates,
    /// A span per attempt, when trace export is on.
    pub traces: conveyor::trace::Traces,
    /// The attempts this worker's tasks are running, each by job and
    /// claim (one worker can run two attempts of one job: the first one's
    /// lease lost while it stalled, the second claimed after).
    running: Mutex<HashMap<(JobId, ClaimToken), Attempt>>,
    /// Ids taken from Redis whose task has not ended, with how many tasks
    /// handle each (an id republished for a retry can be delivered again
    /// before the task that republished it has returned).
    in_flight: Mutex<HashMap<String, usize>>,
    /// Attempts ended here and not yet counted in Redis (the dashboard's
    /// throughput).
    tally: TallyBuffer,
}

impl Runtime {
    pub fn new(
        store: Store,
        broker: Broker,
        settings: Settings,
        registry: Registry,
        traces: conveyor::trace::Traces,
    ) -> Arc<Self> {
        Arc::new(Runtime {
            traces,
            completions: Completions::new(store.clone()),
            acks: Acks::new(broker.clone(), settings.worker_id.as_str().to_owned()),
            gates: Gates::default(),
            store,
            broker,
            settings,
            registry,
            outages: Arc::new(Outages::default()),
            running: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            tally: TallyBuffer::default(),
        })
    }

    /// Counts an attempt that ended in `status` (one a worker wrote).
    pub fn count_ended(&self, status: conveyor::JobStatus) {
        self.tally.count(status);
    }

    /// The batch of counts to send Redis, if any ([`TallyBuffer::batch`]).
    pub fn tally_batch(&self) -> Option<(u64, Tally)> {
        self.tally.batch()
    }

    /// Sends the batch of counts due, if any.
    pub async fn send_tally(&self) -> Result<(), conveyor::BrokerError> {
        self.tally.send(&self.broker, self.me()).await
    }

    pub fn me(&self) -> &str {
        self.settings.worker_id.as_str()
    }

    /// Registers an attempt of a job of `queue` as running here, its lease
    /// good for one lease period from now; the guard unregisters it.
    pub fn track(
        self: &Arc<Self>,
        fence: &Fence,
        queue: &str,
    ) -> (Stopper, Progress, RunningGuard) {
        let stopper = Stopper::new();
        let progress = Progress::default();
        let attempt = Attempt {
            stopper: stopper.clone(),
            lease_until: Instant::now() + self.settings.lease,
            queue: queue.to_owned(),
            progress: progress.clone(),
        };
        if let Ok(mut running) = self.running.lock() {
            running.insert((fence.job_id, fence.token), attempt);
            conveyor::metrics::jobs_running(running.len());
        }
        (
            stopper,
            progress,
            RunningGuard {
                runtime: self.clone(),
                attempt: (fence.job_id, fence.token),
            },
        )
    }

    /// The attempts running here, each with the progress its handler
    /// reported since the last call (taken: give back what could not be
    /// written with [`Runtime::restore_progress`]).
    pub fn attempts_reporting(&self) -> Vec<(JobId, ClaimToken, Option<serde_json::Value>)> {
        self.running
            .lock()
            .map(|running| {
                running
                    .iter()
                    .map(|((id, token), attempt)| (*id, *token, attempt.progress.take()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Gives back progress reports a heartbeat did not write.
    pub fn restore_progress(&self, reports: Vec<(JobId, ClaimToken, Option<serde_json::Value>)>) {
        if let Ok(running) = self.running.lock() {
            for (id, token, report) in reports {
                if let (Some(report), Some(attempt)) = (report, running.get(&(id, token))) {
                    attempt.progress.restore(report);
                }
            }
        }
    }

    /// The ids running here, by queue.
    pub fn running_by_queue(&self) -> HashMap<String, Vec<String>> {
        let mut by_queue: HashMap<String, Vec<String>> = HashMap::new();
        if let Ok(running) = self.running.lock() {
            for ((id, _), attempt) in running.iter() {
                by_queue
                    .entry(attempt.queue.clone())
                    .or_default()
                    .push(id.to_string());
            }
        }
        by_queue
    }

    /// Records that the leases of `renewed` were extended by a heartbeat
    /// sent at `sent`: each is good until one lease period after that.
    pub fn renewed(&self, renewed: &[(JobId, ClaimToken)], sent: Instant) {
        if let Ok(mut running) = self.running.lock() {
            for key in renewed {
                if let Some(attempt) = running.get_mut(key) {
                    attempt.lease_until = sent + self.settings.lease;
                }
            }
        }
    }

    /// Attempts whose lease runs out within `margin` by this worker's own
    /// reckoning (no renewal got through for a lease period less `margin`:
    /// PostgreSQL unreachable, a renewal that hangs) and that are not being
    /// stopped already: another worker may run them soon.
    pub fn overdue_attempts(&self, margin: std::time::Duration) -> Vec<(JobId, ClaimToken)> {
        let now = Instant::now() + margin;
        self.running
            .lock()
            .map(|running| {
                running
                    .iter()
                    .filter(|(_, attempt)| {
                        attempt.lease_until <= now && attempt.stopper.reason().is_none()
                    })
                    .map(|(key, _)| *key)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// True if attempt `token` of job `id` runs here and is being stopped.
    pub fn is_stopping(&self, id: JobId, token: ClaimToken) -> bool {
        self.running
            .lock()
            .ok()
            .and_then(|running| {
                running
                    .get(&(id, token))
                    .map(|attempt| attempt.stopper.reason().is_some())
            })
            .unwrap_or(false)
    }

    /// Stops the handler of attempt `token` of job `id`, if it still runs
    /// here.
    pub fn stop_attempt(&self, id: JobId, token: ClaimToken, reason: StopReason) {
        let stopper = self.running.lock().ok().and_then(|running| {
            running
                .get(&(id, token))
                .map(|attempt| attempt.stopper.clone())
        });
        if let Some(stopper) = stopper {
            stopper.stop(reason);
        }
    }

    /// Stops the handlers of job `id` that run here (every attempt).
    pub fn stop(&self, id: JobId, reason: StopReason) {
        let stoppers: Vec<Stopper> = self
            .running
            .lock()
            .map(|running| {
                running
                    .iter()
                    .filter(|((job, _), _)| *job == id)
                    .map(|(_, attempt)| attempt.stopper.clone())
                    .collect()
            })
            .unwrap_or_default();
        for stopper in stoppers {
            stopper.stop(reason);
        }
    }

    /// Stops every running handler.
    pub fn stop_all(&self, reason: StopReason) {
        let stoppers: Vec<Stopper> = self
            .running
            .lock()
            .map(|running| {
                running
                    .values()
                    .map(|attempt| attempt.stopper.clone())
                    .collect()
            })
            .unwrap_or_default();
        for stopper in stoppers {
            stopper.stop(reason);
        }
    }

    /// Marks an id as being handled by one more task of this worker.
    pub fn begin(&self, id: &str) {
        if let Ok(mut ids) = self.in_flight.lock() {
            *ids.entry(id.to_owned()).or_default() += 1;
        }
    }

    pub fn end(&self, id: &str) {
        if let Ok(mut ids) = self.in_flight.lock()
            && let Some(count) = ids.get_mut(id)
        {
            *count -= 1;
            if *count == 0 {
                ids.remove(id);
            }
        }
    }

    pub fn is_in_flight(&self, id: &str) -> bool {
        self.in_flight
            .lock()
            .map(|ids| ids.contains_key(id))
            .unwrap_or(false)
    }

    pub fn running_count(&self) -> usize {
        self.running
            .lock()
            .map(|running| running.len())
            .unwrap_or_default()
    }
}

/// One attempt running here.
#[derive(Debug)]
struct Attempt {
    stopper: Stopper,
    /// Until when its lease surely holds, by this worker's last renewal.
    lease_until: Instant,
    queue: String,
    /// What its handler reported, until a heartbeat writes it.
    progress: Progress,
}

/// Removes an attempt from the running set when its task ends, however it
/// ends.
#[derive(Debug)]
pub struct RunningGuard {
    runtime: Arc<Runtime>,
    attempt: (JobId, ClaimToken),
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        if let Ok(mut running) = self.runtime.running.lock() {
            running.remove(&self.attempt);
            conveyor::metrics::jobs_running(running.len());
        }
    }
}
