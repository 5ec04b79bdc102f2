//! Remote workers: processes in any language that take attempts and report
//! their outcomes through calls (the API's worker protocol,
//! `docs/worker-protocol.md`) instead of running handlers inside a
//! `conveyor-worker`. This module owns what such a call does to PostgreSQL
//! and Redis, and in which order; the API only parses and answers.
//!
//! A remote worker is a worker like any other to the rest of the system:
//! it is registered under its name (kept alive by its calls), ids move
//! into its processing lists through the same reliable fetch, and its jobs
//! are claimed by the same guarded update, with a lease and a claim token
//! that fences every later write. What differs is who runs the attempt:
//!
//! - An id leaves the worker's processing list as soon as its claim
//!   commits. A `conveyor-worker` keeps it there until the outcome, to
//!   find again ids it lost track of; a remote worker's running job is
//!   recovered by its lease alone (the lease rescuer), exactly as a dead
//!   `conveyor-worker`'s is, and what stays in the list is only what was
//!   taken and not yet claimed: [`claim`] adopts it on the worker's next
//!   claim.
//! - The handler's timeout is enforced at the heartbeat: an attempt found
//!   running past its job's `timeout_seconds` is failed (retryably) there,
//!   and its caller told to stop. A cancel requested by a client ends the
//!   attempt there too, as `canceled`.
//!
//! # Layout
//! - [`claim`]: taking ready jobs, long-polling for them.
//! - [`lease`]: heartbeats: leases, cancels, timeouts, presence.
//! - [`outcome`]: complete, fail and release, fenced, then acknowledged.

pub mod claim;
pub mod lease;
pub mod outcome;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::broker::{BlockingConnection, GATE_REFRESH, Gate, RemoteSeen};
use crate::group_commit::Completions;
use crate::retry::RetryPolicy;
use crate::{Broker, BrokerError, ClaimToken, Fence, JobId, Store, StoreError, WorkerId};

pub use claim::ClaimRequest;
pub use lease::{AttemptState, HeldAttempt};
pub use outcome::{Failure, Report};

/// Longest a claim may wait for a job.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// Most jobs one claim may take.
pub const MAX_CLAIM: usize = 100;
/// How long one blocking pop of a long-poll lasts: the longest a job in a
/// lane other than the first queue's default one waits for a polling
/// worker (as for `conveyor-worker`'s poll interval).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Most claims waiting at once, by default: half the API's default limit
/// on requests in flight.
pub const DEFAULT_MAX_WAITING: usize = crate::config::DEFAULT_API_MAX_IN_FLIGHT / 2;
/// How often the attempts remote workers ended are added to the
/// dashboard's throughput.
const TALLY_PERIOD: Duration = Duration::from_secs(1);
/// Idle blocking connections kept for the next claims.
const IDLE_CONNECTIONS: usize = 32;
/// Workers whose last adoption is remembered; older entries are dropped
/// beyond this.
const ADOPTIONS_KEPT: usize = 10_000;

/// How remote workers' attempts are run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A claimed job's lease, renewed by each heartbeat that names it; also
    /// how long a remote worker may stay silent before it is presumed dead.
    pub lease: Duration,
    /// Delays before retries of failed attempts.
    pub retry: RetryPolicy,
    /// The longest blocking pop of a long-poll.
    pub poll_interval: Duration,
    /// Most claims waiting (long-polling) at once; a claim beyond them
    /// answers at once instead of waiting, so that waiting workers cannot
    /// take every place the API has for requests.
    pub max_waiting: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lease: Duration::from_secs(crate::config::DEFAULT_LEASE_SECS),
            retry: RetryPolicy::default(),
            poll_interval: DEFAULT_POLL_INTERVAL,
            max_waiting: DEFAULT_MAX_WAITING,
        }
    }
}

/// Why a call of the protocol could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// What the protocol's calls share in one process. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RemoteWorkers {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    broker: Broker,
    settings: Settings,
    completions: Completions,
    /// Blocking connections between claims: opening one per claim would
    /// cost a connection handshake per call.
    idle: Mutex<Vec<BlockingConnection>>,
    /// Queue gates as last read, and when.
    gates: Mutex<HashMap<String, (Gate, Instant)>>,
    /// When each worker's processing lists were last adopted from here.
    adopted: Mutex<HashMap<String, Instant>>,
    /// Places for waiting claims.
    waiting: Arc<tokio::sync::Semaphore>,
    /// Fired when the process stops: waiting claims end their wait.
    stopping: tokio_util::sync::CancellationToken,
    /// Attempts ended here, for the dashboard's throughput.
    tally: crate::broker::TallyBuffer,
    /// This process, as it sends those counts.
    sender: String,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteWorkers")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl RemoteWorkers {
    pub fn new(store: Store, broker: Broker, settings: Settings) -> Self {
        RemoteWorkers {
            inner: Arc::new(Inner {
                completions: Completions::new(store.clone()),
                store,
                broker,
                idle: Mutex::new(Vec::new()),
                gates: Mutex::new(HashMap::new()),
                adopted: Mutex::new(HashMap::new()),
                waiting: Arc::new(tokio::sync::Semaphore::new(settings.max_waiting.max(1))),
                stopping: tokio_util::sync::CancellationToken::new(),
                tally: crate::broker::TallyBuffer::default(),
                sender: format!("api-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
                settings,
            }),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Adds the attempts ended here to the dashboard's throughput in
    /// Redis every second, until [`RemoteWorkers::stop_waiting`]; then once
    /// more (bounded: a Redis that does not answer costs the counts only).
    pub async fn count_ended(self) {
        let mut ticker = tokio::time::interval(TALLY_PERIOD);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = self.inner.stopping.cancelled() => break,
            }
            if let Err(err) = self
                .inner
                .tally
                .send(self.broker(), &self.inner.sender)
                .await
            {
                tracing::debug!(error = %err, "could not add remote workers' counts to the tally");
            }
        }
        let _ = tokio::time::timeout(
            TALLY_PERIOD,
            self.inner.tally.send(self.broker(), &self.inner.sender),
        )
        .await;
    }

    /// Ends every waiting claim's wait now (each answers with what it has,
    /// within a poll interval), and every later claim's at once: the
    /// process is stopping, and a long-poll must not hold its shutdown.
    pub fn stop_waiting(&self) {
        self.inner.stopping.cancel();
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    fn broker(&self) -> &Broker {
        &self.inner.broker
    }

    /// Registers `worker` as alive now, with what this call says of it.
    async fn touch(&self, worker: &WorkerId, mut seen: RemoteSeen) -> Result<(), BrokerError> {
        let lease = self.inner.settings.lease;
        // Late, to readers, once silent for a lease (three of these).
        seen.heartbeat = lease / 3;
        self.broker()
            .touch_remote(worker.as_str(), &seen, lease * 2)
            .await
    }

    /// A blocking connection: an idle one, or a new one.
    async fn blocking(&self) -> Result<BlockingConnection, BrokerError> {
        let idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        match idle {
            Some(conn) => Ok(conn),
            None => {
                self.broker()
                    .blocking_connection(self.inner.settings.poll_interval)
                    .await
            }
        }
    }

    /// Keeps `conn` for the next claim (only one whose last command
    /// succeeded: a failed one may be broken, or hold a reply not read).
    fn give_back(&self, conn: BlockingConnection) {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < IDLE_CONNECTIONS {
            idle.push(conn);
        }
    }

    /// The gates of `queues`, read from PostgreSQL when older than
    /// [`GATE_REFRESH`]. When PostgreSQL cannot be read, the last ones
    /// known (or none): the claim itself refuses paused queues.
    async fn gates(&self, queues: &[String]) -> HashMap<String, Gate> {
        let now = Instant::now();
        let stale: Vec<String> = {
            let gates = self.inner.gates.lock().unwrap_or_else(|e| e.into_inner());
            queues
                .iter()
                .filter(|queue| {
                    gates
                        .get(*queue)
                        .is_none_or(|(_, read)| now.duration_since(*read) >= GATE_REFRESH)
                })
                .cloned()
                .collect()
        };
        if !stale.is_empty() {
            match self.store().queue_settings_of(&stale).await {
                Ok(rows) => {
                    let mut fresh: HashMap<String, Gate> = stale
                        .iter()
                        .map(|queue| (queue.clone(), Gate::default()))
                        .collect();
                    for row in &rows {
                        fresh.insert(row.name.clone(), Gate::from(row));
                    }
                    let mut gates = self.inner.gates.lock().unwrap_or_else(|e| e.into_inner());
                    // Queues come and go by name: the map holds those
                    // claimed from lately, dropped when it grows large.
                    if gates.len() > ADOPTIONS_KEPT {
                        gates.retain(|_, (_, read)| now.duration_since(*read) < GATE_REFRESH);
                    }
                    for (queue, gate) in fresh {
                        gates.insert(queue, (gate, now));
                    }
                }
                Err(err) => {
                    tracing::debug!(error = %err, "could not read queue settings for a claim");
                }
            }
        }
        let gates = self.inner.gates.lock().unwrap_or_else(|e| e.into_inner());
        queues
            .iter()
            .map(|queue| {
                let gate = gates.get(queue).map(|(gate, _)| *gate).unwrap_or_default();
                (queue.clone(), gate)
            })
            .collect()
    }

    /// Reads `queue`'s gate again on the next claim (a claim was refused
    /// for a reason the gate did not show: perhaps the queue was paused).
    fn forget_gate(&self, queue: &str) {
        self.inner
            .gates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(queue);
    }

    /// True, and noted as done now, when `worker`'s processing lists were
    /// not adopted from here within a lease.
    fn adoption_due(&self, worker: &WorkerId) -> bool {
        let now = Instant::now();
        let lease = self.inner.settings.lease;
        let mut adopted = self.inner.adopted.lock().unwrap_or_else(|e| e.into_inner());
        if adopted.len() > ADOPTIONS_KEPT {
            adopted.retain(|_, at| now.duration_since(*at) < lease);
        }
        match adopted.get(worker.as_str()) {
            Some(at) if now.duration_since(*at) < lease => false,
            _ => {
                adopted.insert(worker.as_str().to_owned(), now);
                true
            }
        }
    }

    /// Adopt `worker`'s processing lists on its next claim: something
    /// was left there.
    fn adopt_next_time(&self, worker: &WorkerId) {
        self.inner
            .adopted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(worker.as_str());
    }
}

/// Runs `work` in a task of its own and waits for it: a caller that goes
/// away (a client that hangs up) cannot cut a call between a write and the
/// Redis step that must follow it, or between a fetch and its claim.
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, RemoteError>> + Send + 'static,
) -> Result<T, RemoteError> {
    tokio::spawn(work)
        .await
        .map_err(|_| RemoteError::Store(StoreError::Interrupted("a remote worker's call")))?
}

/// The id of the remote worker that calls itself `name` (checked: 1 to 128
/// of `A-Za-z0-9._:@-`), as the registry and its jobs name it.
pub fn worker_id(name: &str) -> Result<WorkerId, crate::job::InvalidJob> {
    crate::job::check_worker_name(name)?;
    Ok(WorkerId::remote(name))
}

/// What a remote worker's write about its attempt must hold: the claim's
/// token, on a row the worker claimed. It does not settle
/// ([`Fence::settles`]): the server ends attempts too (a timeout, a cancel,
/// a client that hung up), and two copies of one report may race, so a
/// write counts as made only if it changed the row itself.
pub fn fence(job_id: JobId, worker: &WorkerId, token: ClaimToken) -> Fence {
    Fence {
        job_id,
        token,
        worker_id: worker.clone(),
        // Only for logs; the token is what fences.
        attempt: 0,
        settles: false,
    }
}

/// Tries a Redis write up to a few times: it follows a committed write
/// that it must not be lost to one dropped connection. `None` if it never
/// got through (logged by the caller's context).
async fn redis_retried<F, Fut>(what: &'static str, mut call: F) -> Option<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), BrokerError>>,
{
    const TRIES: u32 = 3;
    for attempt in 1..=TRIES {
        match call().await {
            Ok(()) => return Some(()),
            Err(err) if attempt == TRIES => {
                tracing::warn!(error = %err, "{what} failed; the reconciler or the lease rescuer will catch up");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await,
        }
    }
    None
}
