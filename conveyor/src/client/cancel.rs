//! Canceling: a waiting job at once (and its id out of Redis), a running
//! one by asking its worker to stop.

use super::Client;
use crate::JobStatus;
use crate::job::{Job, JobId};
use crate::store::{StoreError, Transition};

/// How many times the cancel loop re-reads a job that keeps changing state.
const CANCEL_TRIES: usize = 3;

/// What a cancel did.
#[derive(Debug, Clone, PartialEq)]
pub enum Canceled {
    /// The job was waiting and is now `canceled`; it will not run.
    Canceled(Job),
    /// The job is running; its worker was asked to stop it and will record
    /// `canceled` (or its outcome, if it finishes first).
    Requested(Job),
    /// The job had already finished: nothing changed.
    Finished(Job),
    NotFound,
    /// The job changed state on every try; nothing changed.
    Busy,
}

impl Client {
    /// Cancels job `id`. Runs to the end even if the caller stops waiting.
    pub async fn cancel(&self, id: JobId) -> Result<Canceled, StoreError> {
        let client = self.clone();
        self.detached(async move { client.cancel_now(id).await })
            .await
    }

    async fn cancel_now(&self, id: JobId) -> Result<Canceled, StoreError> {
        // The job may move between our statements (a worker claims it, or it
        // finishes); each try re-reads it through a guarded transition.
        for _ in 0..CANCEL_TRIES {
            let found = match self.store.cancel(id).await? {
                Transition::Won(job) => {
                    tracing::info!(event = "job_canceled", job.id = %job.id, job.r#type = %job.task_type,
                        job.queue = %job.queue, job.attempt = job.attempts, "canceled waiting job {}", job.id);
                    self.forget(&job).await;
                    return Ok(Canceled::Canceled(job));
                }
                Transition::NotFound => return Ok(Canceled::NotFound),
                Transition::Lost(job) => job,
            };
            if found.status.is_terminal() {
                if found.status == JobStatus::Canceled {
                    // Perhaps canceled by an earlier try whose reply was lost
                    // (or while Redis was down): take its id out now.
                    self.forget(&found).await;
                }
                return Ok(Canceled::Finished(found));
            }
            if found.status != JobStatus::Running {
                continue;
            }
            match self.store.request_cancel(id).await? {
                Transition::Won(job) => {
                    if let Err(err) = self.broker.notify_cancel(id).await {
                        tracing::warn!(job.id = %id, error = %err,
                            "could not notify workers of a cancel; the next heartbeat carries it");
                    }
                    return Ok(Canceled::Requested(job));
                }
                // Asked before: still running, still asked.
                Transition::Lost(job) if job.status == JobStatus::Running => {
                    return Ok(Canceled::Requested(job));
                }
                Transition::Lost(_) => continue,
                Transition::NotFound => return Ok(Canceled::NotFound),
            }
        }
        Ok(Canceled::Busy)
    }

    /// Takes a canceled job's id out of its ready lane and delayed set, so
    /// that no key keeps it until a worker happens by (a job delayed by a
    /// year, a queue nobody serves). If Redis is unreachable the id stays;
    /// a worker that pops it loses the claim and drops it.
    pub(super) async fn forget(&self, job: &Job) {
        if let Err(err) = self.broker.forget(job).await {
            tracing::warn!(job.id = %job.id, error = %err,
                "could not remove a canceled job's id from Redis; a worker will skip it");
        }
    }
}
