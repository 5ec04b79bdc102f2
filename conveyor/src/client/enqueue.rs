//! Enqueueing: insert (grouped with other callers' single inserts), settle
//! a lost reply, then publish what was created.

use std::sync::Arc;
use std::time::Duration;

use backoff::backoff::Backoff;
use tokio::sync::oneshot;

use super::Client;
use crate::group_commit::ALONE_AT_ONCE;
use crate::job::{Job, JobId, NewJob};
use crate::store::{Inserted, StoreError};

/// How long a caller waits, after an insert's reply was lost, for the
/// client to learn whether it committed, before it is told the outcome is
/// unknown. The client goes on trying until PostgreSQL answers, and
/// publishes the job if it was created.
pub const SETTLE_PATIENCE: Duration = Duration::from_secs(5);

/// How long the client goes on looking, after the caller was told the
/// outcome is unknown, for a job whose first insert may have committed.
pub const SETTLE_GIVE_UP: Duration = Duration::from_secs(600);

type Answer = oneshot::Sender<Result<Vec<Inserted>, StoreError>>;

impl Client {
    /// Validates `job`, inserts it (honouring its idempotency key) and,
    /// if that created a row, publishes it. Runs to the end even if the
    /// caller stops waiting.
    pub async fn enqueue(&self, job: NewJob) -> Result<Inserted, StoreError> {
        job.validate()?;
        let mut outcomes = self.insert_and_publish(vec![Arc::new(job)], true).await?;
        outcomes
            .pop()
            .ok_or_else(|| StoreError::from(sea_orm::DbErr::RecordNotInserted))
    }

    /// Inserts many valid jobs in one statement (one transaction: all or
    /// none) and publishes those it created in one round trip; one outcome
    /// per job, in order. Validate each first ([`NewJob::validate`]): an
    /// invalid one fails the whole call. When PostgreSQL refuses a row for
    /// what it holds ([`StoreError::is_refused_row`]), each job is inserted
    /// alone, so each gets its own outcome and the others are not failed
    /// with it; any other error (an outage, a timeout, an overloaded
    /// server) fails the whole call, with nothing written. Runs to the end
    /// even if the caller stops waiting.
    pub async fn enqueue_many(
        &self,
        jobs: Vec<NewJob>,
    ) -> Result<Vec<Result<Inserted, StoreError>>, StoreError> {
        for job in &jobs {
            job.validate()?;
        }
        let jobs: Vec<Arc<NewJob>> = jobs.into_iter().map(Arc::new).collect();
        match self.insert_and_publish(jobs.clone(), false).await {
            Ok(outcomes) => Ok(outcomes.into_iter().map(Ok).collect()),
            // A row refused for what it holds, or a key held by another
            // transaction past the lock timeout: each job alone, so only
            // its own caller hears of it.
            Err(err) if !err.is_refused_row() && !err.is_lock_unavailable() => Err(err),
            Err(err) => {
                tracing::warn!(error = %err, rows = jobs.len(),
                    "PostgreSQL refused a batch insert; inserting each job alone");
                let alone = jobs.into_iter().map(|job| async move {
                    let mut outcome = self.insert_and_publish(vec![job], false).await?;
                    outcome
                        .pop()
                        .ok_or_else(|| StoreError::from(sea_orm::DbErr::RecordNotInserted))
                });
                // A few at a time, so a large batch does not crowd other
                // callers out of the pool.
                Ok(futures::StreamExt::collect(futures::StreamExt::buffered(
                    futures::stream::iter(alone),
                    ALONE_AT_ONCE,
                ))
                .await)
            }
        }
    }

    /// Inserts `jobs` (through the group-commit writer when `grouped`) and
    /// publishes the created ones, in a task of its own; answers the caller
    /// when done, or when a lost reply could not be settled within
    /// [`SETTLE_PATIENCE`] (the task then goes on settling).
    async fn insert_and_publish(
        &self,
        jobs: Vec<Arc<NewJob>>,
        grouped: bool,
    ) -> Result<Vec<Inserted>, StoreError> {
        let (answer, answered) = oneshot::channel();
        let client = self.clone();
        tokio::spawn(async move {
            let mut answer = Some(answer);
            let written = if grouped && jobs.len() == 1 {
                let job = jobs[0].clone();
                client
                    .inserts
                    .write(job, |job| {
                        let store = client.store.clone();
                        async move { store.insert(&job).await }
                    })
                    .await
                    .map(|inserted| vec![inserted])
            } else {
                client.store.insert_many(&jobs).await
            };
            let outcomes = match written {
                Err(err) if err.maybe_written() => client.settle(&jobs, err, &mut answer).await,
                other => other,
            };
            if let Ok(outcomes) = &outcomes {
                let created: Vec<Job> = outcomes
                    .iter()
                    .filter_map(|outcome| match outcome {
                        Inserted::Created(job) => Some(job.clone()),
                        _ => None,
                    })
                    .collect();
                client.created(&created).await;
            }
            if let Some(answer) = answer {
                // A caller that went away no longer listens.
                let _ = answer.send(outcomes);
            }
        });
        answered
            .await
            .map_err(|_| StoreError::Interrupted("client"))?
    }

    /// The insert of `jobs` may have committed, but its reply was lost.
    /// Tries it again under the same ids until PostgreSQL answers: a row
    /// found under its own id was created by the first try. After
    /// [`SETTLE_PATIENCE`] the caller is told the outcome is unknown; from
    /// then on this only looks (it no longer inserts, so a job whose first
    /// try did not commit is not created behind the caller's back, perhaps
    /// long after), for up to [`SETTLE_GIVE_UP`], so that a job that did
    /// commit is published.
    async fn settle(
        &self,
        jobs: &[Arc<NewJob>],
        first: StoreError,
        answer: &mut Option<Answer>,
    ) -> Result<Vec<Inserted>, StoreError> {
        tracing::warn!(error = %first, rows = jobs.len(),
            "the reply to an insert was lost; trying it again to learn whether it committed");
        let started = tokio::time::Instant::now();
        let mut backoff = crate::retry::RetryPolicy {
            base: Duration::from_millis(50),
            max: Duration::from_secs(2),
            jitter: 0.2,
        }
        .backoff();
        let unknown = |err: &StoreError| StoreError::Unavailable {
            detail: err.to_string(),
            maybe_written: true,
        };
        loop {
            if answer.is_some() {
                match self.store.insert_many(jobs).await {
                    // The first try may still be running and holding these
                    // rows: a timeout waiting for it is not an answer.
                    Err(err)
                        if err.is_unavailable()
                            || err.is_lock_unavailable()
                            || err.is_timed_out() =>
                    {
                        if started.elapsed() >= SETTLE_PATIENCE
                            && let Some(answer) = answer.take()
                        {
                            let _ = answer.send(Err(unknown(&err)));
                        }
                    }
                    settled => return settled,
                }
            } else {
                let ids: Vec<JobId> = jobs.iter().map(|job| job.id).collect();
                match self.store.find_many(&ids).await {
                    Ok(found) => {
                        // Created by the first try, or not at all.
                        return Ok(found.into_iter().map(Inserted::Created).collect());
                    }
                    Err(err) if err.is_unavailable() && started.elapsed() < SETTLE_GIVE_UP => {}
                    Err(err) => return Err(unknown(&err)),
                }
            }
            let delay = backoff.next_backoff().unwrap_or(Duration::from_secs(2));
            tokio::time::sleep(delay).await;
        }
    }

    /// Records and publishes newly created jobs.
    async fn created(&self, jobs: &[Job]) {
        for job in jobs {
            crate::metrics::job_enqueued(&job.queue, &job.task_type);
            tracing::info!(event = "job_created", job.id = %job.id, job.r#type = %job.task_type,
                job.queue = %job.queue, "created job {}", job.id);
        }
        self.publish_committed(jobs).await;
    }
}
