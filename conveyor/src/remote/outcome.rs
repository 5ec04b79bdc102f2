//! Outcomes: a remote worker reports an attempt completed or failed. The
//! write is fenced by the attempt's claim token, exactly as a
//! `conveyor-worker`'s is; only after it commits is Redis told (the place
//! under the queue's limit freed, a retry republished). A report repeated
//! (its reply was lost) finds its own outcome already on the row and is
//! answered as it was, writing nothing (Redis is told again).

use super::{RemoteError, RemoteWorkers, redis_retried};
use crate::{Fence, Job, JobStatus, Transition, WorkerId};

/// How an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong, recorded on the job.
    pub error: String,
    /// Another attempt may succeed: retry after the backoff while attempts
    /// remain. `false` fails the job now.
    pub retry: bool,
}

/// What a report did.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// Written now: the job as it is after.
    Written(Job),
    /// This attempt's outcome was already written (the report was
    /// repeated): nothing written; the job as it is.
    Repeated(Job),
    /// The attempt is no longer the worker's (its lease expired and the
    /// job moved on, a heartbeat ended it as canceled or timed out, or the
    /// token is not this attempt's): nothing written; the job as it is.
    Lost(Job),
    NotFound,
}

/// What a report asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Complete,
    Fail,
    Release,
}

impl Asked {
    /// Whether `job`, ended with the attempt's token, ended as a report of
    /// this kind ends it: then the report is a repeat.
    fn ended_so(self, job: &Job) -> bool {
        match self {
            Asked::Complete => job.status == JobStatus::Completed,
            Asked::Fail => matches!(
                job.status,
                JobStatus::Retrying | JobStatus::Failed | JobStatus::Canceled
            ),
            Asked::Release => matches!(job.status, JobStatus::Retrying | JobStatus::Canceled),
        }
    }
}

impl RemoteWorkers {
    /// `running` (fenced) → `completed` with `result`, written together
    /// with other completions waiting in this process.
    pub async fn complete(
        &self,
        fence: Fence,
        result: serde_json::Value,
    ) -> Result<Report, RemoteError> {
        let this = self.clone();
        super::detached(async move {
            this.report(&fence, Asked::Complete, async |_| {
                this.inner.completions.complete(&fence, result).await
            })
            .await
        })
        .await
    }

    /// `running` (fenced) → `retrying` after the backoff (or `failed` when
    /// that was its last attempt, `canceled` when a cancel was requested),
    /// or → `failed` when `failure.retry` is false.
    pub async fn fail(&self, fence: Fence, failure: Failure) -> Result<Report, RemoteError> {
        let this = self.clone();
        super::detached(async move {
            this.report(&fence, Asked::Fail, async |job| {
                let store = this.store();
                if failure.retry {
                    // The backoff depends on which attempt this was.
                    let delay = this
                        .settings()
                        .retry
                        .delay_after(job.attempts.max(1) as u32);
                    store.schedule_retry(&fence, &failure.error, delay).await
                } else {
                    store.fail(&fence, &failure.error).await
                }
            })
            .await
        })
        .await
    }

    /// `running` (fenced) → `retrying`, due now, its attempt not counted
    /// (or `canceled` when a cancel was asked): a worker shutting down puts
    /// back what it could not finish, as `conveyor-worker` does.
    pub async fn release(&self, fence: Fence) -> Result<Report, RemoteError> {
        let this = self.clone();
        super::detached(async move {
            this.report(&fence, Asked::Release, async |_| {
                this.store().release(&fence).await
            })
            .await
        })
        .await
    }

    /// One report: the row read first (an attempt already over is
    /// answered at once, repeated or lost), then `write`, given that row,
    /// then Redis told of a write that won.
    async fn report(
        &self,
        fence: &Fence,
        asked: Asked,
        write: impl AsyncFnOnce(&Job) -> Result<Transition, crate::StoreError>,
    ) -> Result<Report, RemoteError> {
        let Some(job) = self.store().find(fence.job_id).await? else {
            return Ok(Report::NotFound);
        };
        if let Some(report) = self.already_ended(fence, &job, asked) {
            return Ok(self.told_again(fence, report).await);
        }
        let written = write(&job).await?;
        Ok(self.reported(fence, written, asked).await)
    }

    /// A report on `job` when the attempt is already over: a repetition if
    /// the row holds this attempt's own outcome of the kind asked, else
    /// lost. `None` while the attempt runs: write. (The write does not
    /// settle, [`Fence::settles`], so the store never answers a repeat as
    /// a write: this is where it is recognised.)
    fn already_ended(&self, fence: &Fence, job: &Job, asked: Asked) -> Option<Report> {
        let ours =
            fence.token.is_on(job) && job.worker_id.as_deref() == Some(fence.worker_id.as_str());
        if ours && job.status == JobStatus::Running {
            return None;
        }
        Some(if ours && asked.ended_so(job) {
            Report::Repeated(job.clone())
        } else {
            self.lost(fence, job.clone())
        })
    }

    /// The report a fenced write amounts to: acknowledged in Redis when
    /// won.
    async fn reported(&self, fence: &Fence, written: Transition, asked: Asked) -> Report {
        match written {
            Transition::Won(after) => {
                if asked == Asked::Release && after.status == JobStatus::Retrying {
                    // Not an outcome: the attempt does not count.
                    crate::metrics::job_finished(&after.queue, &after.task_type, "released");
                    tracing::info!(event = "job_released", job.id = %after.id, job.claim = %fence.token,
                        worker.id = %fence.worker_id, "put back job {} for its remote worker; the attempt does not count", after.id);
                } else {
                    self.ended(fence, &after, "reported by its remote worker");
                }
                self.acknowledge(&fence.worker_id, &after).await;
                Report::Written(after)
            }
            Transition::Lost(job) => match self.already_ended(fence, &job, asked) {
                Some(report) => self.told_again(fence, report).await,
                // Running with this attempt's token, yet not written: a
                // guard of the write (none today) refused it.
                None => self.lost(fence, job),
            },
            Transition::NotFound => Report::NotFound,
        }
    }

    /// A repeated report tells Redis again what the first one did: the
    /// first's write may have committed with its answer lost (PostgreSQL's
    /// connection dropped), before it could tell Redis. Told twice, a
    /// place is freed twice and a retry's id pushed twice, which costs a
    /// skipped delivery; never told, a retry would wait for the reconciler.
    async fn told_again(&self, fence: &Fence, report: Report) -> Report {
        if let Report::Repeated(job) = &report {
            self.acknowledge(&fence.worker_id, job).await;
        }
        report
    }

    fn lost(&self, fence: &Fence, job: Job) -> Report {
        crate::metrics::job_finished(&job.queue, &job.task_type, "fenced");
        tracing::warn!(event = "job_fenced", job.id = %job.id, worker.id = %fence.worker_id,
            job.status = %job.status, "discarded a report on job {} from remote worker {}: \
            the attempt is no longer that worker's", job.id, fence.worker_id);
        Report::Lost(job)
    }

    /// Tells Redis an attempt ended: a retry goes back to its lane (or the
    /// delayed set), any other end frees the job's place under its queue's
    /// concurrency limit. After the outcome committed, never before.
    pub(super) async fn acknowledge(&self, worker: &WorkerId, job: &Job) {
        let broker = self.broker();
        let me = worker.as_str();
        if job.status == JobStatus::Retrying {
            redis_retried("republishing a job to retry", || {
                broker.ack_and_republish(me, job)
            })
            .await;
        } else {
            let id = [(job.queue.clone(), job.id.to_string())];
            redis_retried("freeing a finished job's place", || {
                broker.ack_many(me, &id)
            })
            .await;
        }
    }
}

impl RemoteWorkers {
    /// Counts an attempt of a remote worker that ended here (`how`), for
    /// the metrics and the dashboard's throughput, and logs it.
    pub(super) fn ended(&self, fence: &Fence, after: &Job, how: &str) {
        self.inner.tally.count(after.status);
        log_ended(fence, after, how);
    }
}

/// Logs and counts an attempt of a remote worker that ended here (`how`),
/// under the event names `conveyor-worker` uses for the same ends, with
/// the attempt's claim token: one history, whoever ran the attempt.
fn log_ended(fence: &Fence, after: &Job, how: &str) {
    let outcome = match after.status {
        JobStatus::Completed => "completed",
        JobStatus::Retrying => "retried",
        JobStatus::Failed => "failed",
        JobStatus::Canceled => "canceled",
        _ => "other",
    };
    crate::metrics::job_finished(&after.queue, &after.task_type, outcome);
    let (id, worker, attempt, claim) = (after.id, &fence.worker_id, after.attempts, fence.token);
    let error = after.error_message.as_deref().unwrap_or_default();
    match after.status {
        JobStatus::Completed => {
            tracing::info!(event = "job_completed", job.id = %id, job.attempt = attempt,
            job.claim = %claim, worker.id = %worker, "completed job {id} ({how})")
        }
        JobStatus::Retrying => tracing::warn!(event = "job_retry_scheduled", job.id = %id,
            job.attempt = attempt, job.claim = %claim, worker.id = %worker, error, retry_at = %after.run_at,
            "job {id} failed (attempt {attempt} of {}; {how}); retrying at {}", after.max_attempts, after.run_at),
        JobStatus::Failed => {
            tracing::warn!(event = "job_failed", job.id = %id, job.attempt = attempt,
            job.claim = %claim, worker.id = %worker, error, "job {id} failed after {attempt} attempt(s) ({how}): {error}")
        }
        JobStatus::Canceled => {
            tracing::info!(event = "job_canceled", job.id = %id, job.attempt = attempt,
            job.claim = %claim, worker.id = %worker, "canceled running job {id} ({how})")
        }
        status => {
            tracing::warn!(job.id = %id, job.status = %status, worker.id = %worker, "job {id} left in {status}")
        }
    }
}
