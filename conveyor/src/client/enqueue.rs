//! Enqueueing: insert (grouped with other callers' single inserts), settle
//! a lost reply, then publish what was created.

use std::sync::Arc;
use std::time::Duration;

use backoff::backoff::Backoff;

use super::Client;
use crate::job::{Job, NewJob};
use crate::store::{Inserted, StoreError};

/// How long an insert whose reply was lost is tried again before the
/// caller is told its outcome is unknown.
pub const SETTLE_PATIENCE: Duration = Duration::from_secs(5);

impl Client {
    /// Validates `job`, inserts it (honouring its idempotency key) and,
    /// if that created a row, publishes it. Runs to the end even if the
    /// caller stops waiting.
    pub async fn enqueue(&self, job: NewJob) -> Result<Inserted, StoreError> {
        job.validate()?;
        let client = self.clone();
        self.detached(async move {
            let job = Arc::new(job);
            let written = client
                .inserts
                .write(job.clone(), |job| {
                    let store = client.store.clone();
                    async move { store.insert(&job).await }
                })
                .await;
            let inserted = match written {
                Err(err) if err.maybe_written() => {
                    client.settle(std::slice::from_ref(&job), err).await?.pop()
                }
                other => other.map(Some)?,
            }
            .ok_or_else(|| StoreError::from(sea_orm::DbErr::RecordNotInserted))?;
            if let Inserted::Created(row) = &inserted {
                client.created(std::slice::from_ref(row)).await;
            }
            Ok(inserted)
        })
        .await
    }

    /// Inserts many valid jobs in one statement (one transaction: all or
    /// none) and publishes those it created in one round trip; one outcome
    /// per job, in order. Validate each first ([`NewJob::validate`]): an
    /// invalid one fails the whole call. Runs to the end even if the
    /// caller stops waiting.
    pub async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Inserted>, StoreError> {
        for job in &jobs {
            job.validate()?;
        }
        let client = self.clone();
        self.detached(async move {
            let outcomes = match client.store.insert_many(&jobs).await {
                Err(err) if err.maybe_written() => client.settle(&jobs, err).await?,
                other => other?,
            };
            let created: Vec<Job> = outcomes
                .iter()
                .filter_map(|outcome| match outcome {
                    Inserted::Created(job) => Some(job.clone()),
                    _ => None,
                })
                .collect();
            client.created(&created).await;
            Ok(outcomes)
        })
        .await
    }

    /// The insert of `jobs` may have committed, but its reply was lost.
    /// Tries it again under the same ids until PostgreSQL answers: a row
    /// found under its own id was created by the first try. After
    /// [`SETTLE_PATIENCE`], the outcome is unknown.
    async fn settle<J>(&self, jobs: &[J], first: StoreError) -> Result<Vec<Inserted>, StoreError>
    where
        J: std::borrow::Borrow<NewJob> + Sync,
    {
        tracing::warn!(error = %first, rows = jobs.len(),
            "the reply to an insert was lost; trying it again to learn whether it committed");
        let started = tokio::time::Instant::now();
        let mut backoff = crate::retry::RetryPolicy {
            base: Duration::from_millis(50),
            max: Duration::from_millis(500),
            jitter: 0.2,
        }
        .backoff();
        loop {
            match self.store.insert_many(jobs).await {
                Err(err) if err.is_unavailable() && started.elapsed() < SETTLE_PATIENCE => {
                    let delay = backoff.next_backoff().unwrap_or(Duration::from_millis(500));
                    tokio::time::sleep(delay).await;
                }
                Err(err) if err.is_unavailable() => {
                    return Err(StoreError::Unavailable {
                        detail: err.to_string(),
                        maybe_written: true,
                    });
                }
                settled => return settled,
            }
        }
    }

    /// Records and publishes newly created jobs.
    async fn created(&self, jobs: &[Job]) {
        for job in jobs {
            crate::metrics::job_enqueued(&job.queue, &job.task_type);
            tracing::info!(event = "job_created", job.id = %job.id, job.r#type = %job.task_type,
                job.queue = %job.queue, "created job {}", job.id);
        }
        // Logged there; the reconciler publishes what Redis missed.
        let _ = self.publish(jobs).await;
    }
}
