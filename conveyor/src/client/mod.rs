//! The client: how anything enqueues, cancels or retries a job. The API is
//! one caller of it; a Rust application that enqueues without HTTP is
//! another (see `conveyor/examples/enqueue.rs`), and one that enqueues
//! inside its own database transaction a third ([`enqueue_in`], see
//! `conveyor/examples/transactional.rs`).
//!
//! It owns every ordering rule between PostgreSQL and Redis on these paths,
//! so no caller can get one wrong:
//! - **commit, then publish**: an id reaches Redis only after its row
//!   committed, or a worker could pop an id whose row it cannot see;
//! - **publication does not depend on the caller**: each operation runs in
//!   a task of its own, so a caller that goes away (an HTTP client hanging
//!   up, a dropped future) cannot stop a committed job from being published;
//! - **a lost reply is settled, not guessed**: an insert whose connection
//!   failed after the statement was sent is tried again under the same id
//!   until PostgreSQL answers, so a committed job is reported as created;
//! - **a canceled waiting job leaves Redis** (its ready lane or delayed set),
//!   and a running one is told to stop.
//!
//! Redis failures never fail these operations: PostgreSQL is the truth, and
//! the reconciler publishes whatever Redis missed.
//!
//! # Layout
//! - this module: [`Client`] and publication.
//! - `enqueue`: inserts, one or many, and settling lost replies.
//! - `cancel`: [`Canceled`], the cancel loop.
//! - `retry`: the manual retry.
//! - `bulk`: retry and cancel of every job matching a filter.
//! - `queues`: pause, resume, limits and retention of a queue.
//! - `schedules`: periodic schedules, and firing their ticks.
//! - `transactional`: enqueueing inside the caller's own transaction.

mod bulk;
mod cancel;
mod enqueue;
mod queues;
mod retry;
mod schedules;
mod transactional;

use std::sync::Arc;

pub use bulk::{BulkAction, BulkCanceled, check_bulk};
pub use cancel::Canceled;
pub use queues::{OverviewError, QueueOverview, check_change, overview};
pub use schedules::{Created, MAX_CATCH_UP, check_schedule, is_schedule_name, spec_of};
pub use transactional::{enqueue_in, enqueue_many_in};

use crate::group_commit::StoreGroup;
use crate::job::{Job, NewJob};
use crate::store::{Inserted, Store, StoreError};
use crate::{Broker, BrokerError};

/// How long committed jobs Redis did not take are offered to it again
/// before the reconciler is left to publish them.
pub const REPUBLISH_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Most background re-publications one client runs at once. Each holds
/// only job ids and tries a few times over [`REPUBLISH_PATIENCE`], so a
/// thousand of them cost little; a longer outage leaves the rest to the
/// reconciler. (At 32, a three-second spell of slow Redis under 40 jobs/s
/// already left most jobs to the reconciler in the chaos run.)
pub const MAX_REPUBLISHERS: usize = 1_024;

/// Most single enqueues inserted in one statement.
pub const MAX_INSERT_BATCH: usize = 256;

/// Enqueues, cancels and retries jobs. Cheap to clone; clones share one
/// group-commit writer.
#[derive(Debug, Clone)]
pub struct Client {
    store: Store,
    broker: Broker,
    /// Single enqueues arriving together are inserted together.
    inserts: Arc<StoreGroup<Arc<NewJob>, Inserted>>,
    /// Places for background re-publications (see `publish_committed`).
    republishers: Arc<tokio::sync::Semaphore>,
}

impl Client {
    pub fn new(store: Store, broker: Broker) -> Self {
        let writer = store.clone();
        let inserts = StoreGroup::new(
            "inserts",
            MAX_INSERT_BATCH,
            move |jobs: Vec<Arc<NewJob>>| {
                let store = writer.clone();
                async move {
                    let written = store.insert_many(&jobs).await;
                    (jobs, written)
                }
            },
        );
        Client {
            store,
            broker,
            inserts: Arc::new(inserts),
            republishers: Arc::new(tokio::sync::Semaphore::new(MAX_REPUBLISHERS)),
        }
    }

    /// The job store, for reads.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The broker, for reads.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Makes committed jobs visible to workers in one round trip, and logs
    /// each. When Redis is unreachable they stay safe in PostgreSQL and the
    /// reconciler publishes them: callers on the enqueue path ignore the
    /// error (it is logged here); a command may report it.
    pub async fn publish(&self, jobs: &[Job]) -> Result<(), BrokerError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let outcome = self.broker.publish(jobs).await;
        for job in jobs {
            match &outcome {
                Ok(()) => {
                    tracing::info!(event = "job_enqueued", job.id = %job.id, job.r#type = %job.task_type,
                        job.queue = %job.queue, job.attempt = job.attempts, "enqueued job {}", job.id)
                }
                Err(err) => tracing::warn!(event = "job_enqueue_failed", job.id = %job.id,
                    job.r#type = %job.task_type, job.queue = %job.queue, error = %err,
                    "job {} accepted but not published to Redis; reconciliation will publish it", job.id),
            }
        }
        outcome
    }

    /// Publishes committed jobs; if Redis does not take them (down, or its
    /// reply late), offers them again in the background for up to
    /// [`REPUBLISH_PATIENCE`], so that a Redis blip delays them by the blip,
    /// not by a reconciliation pass. Each try first reads which of them
    /// still wait (a job canceled or claimed meanwhile is not pushed back),
    /// and the tries thin out (0.5 s, 1 s, 2 s, ... 8 s). At most
    /// [`MAX_REPUBLISHERS`] such retries run at once per client; past that,
    /// and after the patience, the reconciler publishes them. A try whose
    /// reply was lost may have been applied: the next makes a duplicate
    /// delivery, which the claim turns into a skip.
    pub(crate) async fn publish_committed(&self, jobs: &[Job]) {
        if self.publish(jobs).await.is_ok() {
            return;
        }
        let Ok(permit) = self.republishers.clone().try_acquire_owned() else {
            return;
        };
        let client = self.clone();
        let ids: Vec<uuid::Uuid> = jobs.iter().map(|job| job.id).collect();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let mut delay = std::time::Duration::from_millis(500);
            while started.elapsed() < REPUBLISH_PATIENCE {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(8));
                let Ok(waiting) = client
                    .store
                    .still_waiting(&ids, std::time::Duration::ZERO)
                    .await
                else {
                    continue;
                };
                if client.broker.publish_waiting(&waiting).await.is_ok() {
                    break;
                }
            }
            drop(permit);
        });
    }

    /// Runs `work` in a task of its own and waits for it: the caller may go
    /// away, the work finishes.
    async fn detached<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        tokio::spawn(work)
            .await
            .map_err(|_| StoreError::Interrupted("client"))?
    }
}
