//! One delivered id, from claim to acknowledgement.
//!
//! Order matters: the outcome is committed in PostgreSQL first, and only
//! then is the id acknowledged in Redis. A worker that dies between the two
//! leaves an id whose job is finished; whoever finds it skips it.

use std::sync::Arc;

use conveyor::trace::{JobSpan, TraceParent};
use conveyor::{ClaimToken, Fence, Job, JobId, JobStatus, Transition};
use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use crate::handler::{Context, JobError, Progress};
use crate::retrying::{Unwritten, redis_call, store_call};
use crate::runtime::{Runtime, StopReason, Stopper};

/// How a handler's run ended.
#[derive(Debug)]
enum Outcome {
    Completed(serde_json::Value),
    Failed(JobError),
    /// Stopped because a client canceled the job.
    Canceled,
    /// Stopped by a shutdown; the attempt does not count.
    Interrupted,
    /// Stopped because the attempt was taken from this worker: nothing is
    /// written for it.
    LeaseLost,
}

/// Claims, with `token`, and runs the job behind one id taken from `queue`.
pub async fn process(
    runtime: Arc<Runtime>,
    queue: String,
    raw_id: String,
    token: ClaimToken,
    give_up: CancellationToken,
) {
    let Ok(id) = raw_id.parse::<JobId>() else {
        tracing::warn!(event = "job_skipped", reason = "malformed id", job.id = %raw_id, "dropping malformed id");
        ack(&runtime, &queue, &raw_id).await;
        return;
    };
    let me = runtime.settings.worker_id.clone();
    let lease = runtime.settings.lease;
    // While PostgreSQL is down this waits, holding the id (and a concurrency
    // slot, so the worker stops fetching more). Every try uses the same
    // token, so a claim whose reply was lost is recognised as ours.
    let Ok(claim) = store_call(&runtime, None, &give_up, || {
        runtime.store.claim(id, &me, token, lease)
    })
    .await
    else {
        return;
    };
    match claim {
        Transition::Won(job) => run_claimed(runtime, job, give_up).await,
        Transition::Lost(job) if job.status.is_waiting() && !job.cancel_requested => {
            // A waiting job loses its claim when it is not due by
            // PostgreSQL's clock (delivered early: a promoter whose Redis
            // clock runs ahead, or a race): back to `delayed` until due.
            // Or when its queue was paused after this worker last looked:
            // back to its lane, and the worker looks again now.
            tracing::debug!(event = "job_deferred", job.id = %id, "job {id} is not due yet, or its queue is paused");
            runtime.gates.mark_stale();
            redis_call(&runtime, 5, || {
                runtime.broker.ack_and_republish(runtime.me(), &job)
            })
            .await;
        }
        Transition::Lost(job) => {
            conveyor::metrics::job_finished(&job.queue, &job.task_type, "skipped");
            tracing::info!(event = "job_skipped", job.id = %id, job.r#type = %job.task_type,
                job.queue = %job.queue, job.status = %job.status, worker.id = %me,
                "skipped duplicate delivery of job {id} ({})", job.status);
            if job.status == JobStatus::Running {
                // Running elsewhere: its place under the queue's
                // concurrency limit is that attempt's, not ours to free.
                ack_keeping_place(&runtime, &queue, &raw_id).await;
            } else {
                ack(&runtime, &queue, &raw_id).await;
            }
        }
        Transition::NotFound => {
            conveyor::metrics::job_finished(&queue, "unknown", "skipped");
            tracing::info!(event = "job_skipped", job.id = %id, reason = "unknown id", worker.id = %me,
                "skipped id {id}: no such job");
            ack(&runtime, &queue, &raw_id).await;
        }
    }
}

/// Runs a job this worker has already claimed (alone or in a batch), in a
/// span carrying its id, type, queue and attempt.
pub async fn run_claimed(runtime: Arc<Runtime>, job: Job, give_up: CancellationToken) {
    let span = tracing::info_span!("job", job.id = %job.id, job.r#type = %job.task_type,
        job.queue = %job.queue, job.attempt = job.attempts, job.claim = %ClaimToken::of(&job));
    run(runtime, job, give_up).instrument(span).await;
}

async fn run(runtime: Arc<Runtime>, job: Job, give_up: CancellationToken) {
    let fence = Fence::of(&job, &runtime.settings.worker_id);
    tracing::info!(event = "job_claimed", worker.id = %runtime.me(), "claimed job {}", job.id);
    if let Some(started_at) = job.started_at {
        let waited = (started_at - job.run_at).to_std().unwrap_or_default();
        conveyor::metrics::wait_time(&job.queue, &job.task_type, waited);
    }
    let (stopper, progress, _running) = runtime.track(&fence, &job.queue);
    let span = runtime.traces.attempt(&job);
    let traceparent = span
        .as_ref()
        .map_or_else(|| TraceParent::of_job(&job), JobSpan::traceparent);
    let started = std::time::Instant::now();
    let outcome = execute(&runtime, &job, &stopper, progress, traceparent).await;
    conveyor::metrics::attempt_duration(&job.queue, &job.task_type, started.elapsed());
    let ending = span.map(|span| (span, SpanEnd::of(&outcome)));
    record(&runtime, &job, &fence, outcome, started.elapsed(), &give_up).await;
    if let Some((span, end)) = ending {
        match end {
            SpanEnd::Succeeded => span.succeed(),
            SpanEnd::Failed(why) => span.fail(why),
            SpanEnd::Unset => span.end(),
        }
    }
}

/// How an attempt's span ends, by the handler's outcome.
enum SpanEnd {
    Succeeded,
    Failed(String),
    /// Interrupted by a shutdown or a lost lease: neither.
    Unset,
}

impl SpanEnd {
    fn of(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Completed(_) => SpanEnd::Succeeded,
            Outcome::Failed(error) => SpanEnd::Failed(error.to_string()),
            Outcome::Canceled => SpanEnd::Failed("canceled".to_owned()),
            Outcome::Interrupted | Outcome::LeaseLost => SpanEnd::Unset,
        }
    }
}

/// Runs the handler in a task of its own, so that a panic is caught, a
/// timeout or a stop can abort it, and it cannot outlive this worker.
async fn execute(
    runtime: &Runtime,
    job: &Job,
    stopper: &Stopper,
    progress: Progress,
    traceparent: TraceParent,
) -> Outcome {
    let Some(handler) = runtime.registry.get(&job.task_type) else {
        return Outcome::Failed(JobError::permanent(format!(
            "no handler for task type {:?} on this worker (it runs: {})",
            job.task_type,
            runtime.registry.task_types().join(", ")
        )));
    };
    let context = Context::new(job, traceparent, stopper.token.clone(), progress);
    let mut task = AbortOnDropHandle::new(tokio::spawn(
        std::panic::AssertUnwindSafe(handler.call(job.payload.clone(), context))
            .catch_unwind()
            .in_current_span(),
    ));
    let timeout = std::time::Duration::from_secs(job.timeout_seconds.max(1) as u64);
    let joined = tokio::select! {
        joined = &mut task => joined,
        () = tokio::time::sleep(timeout) => {
            return Outcome::Failed(JobError::retryable(format!(
                "attempt timed out after {} s", job.timeout_seconds
            )));
        }
        () = stopper.token.cancelled() => {
            if stopper.reason() == Some(StopReason::LeaseLost) {
                // Dropping the task aborts the handler now: another worker
                // may already run the next attempt.
                return Outcome::LeaseLost;
            }
            // A cooperative handler gets a moment to return on its own.
            match tokio::time::timeout(runtime.settings.stop_grace, &mut task).await {
                Ok(joined) if stopper.reason() == Some(StopReason::Canceled) && matches!(joined, Ok(Ok(Ok(_)))) => joined,
                _ => return match stopper.reason() {
                    Some(StopReason::Shutdown) => Outcome::Interrupted,
                    Some(StopReason::LeaseLost) => Outcome::LeaseLost,
                    _ => Outcome::Canceled,
                },
            }
        }
    };
    match joined {
        Ok(Ok(Ok(value))) => Outcome::Completed(value),
        Ok(Ok(Err(error))) => Outcome::Failed(error),
        Ok(Err(panic)) => Outcome::Failed(JobError::retryable(format!(
            "handler panicked: {}",
            panic_message(&*panic)
        ))),
        Err(join_error) => Outcome::Failed(JobError::retryable(format!(
            "handler task failed: {join_error}"
        ))),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// Writes the outcome (fenced), then acknowledges the id.
async fn record(
    runtime: &Arc<Runtime>,
    job: &Job,
    fence: &Fence,
    outcome: Outcome,
    elapsed: std::time::Duration,
    give_up: &CancellationToken,
) {
    let store = &runtime.store;
    let patience = Some(runtime.settings.lease);
    let duration_ms = elapsed.as_millis() as u64;
    let written = match &outcome {
        Outcome::Completed(result) => {
            let completed = store_call(runtime, patience, give_up, || {
                runtime.completions.complete(fence, result.clone())
            })
            .await;
            match completed {
                // A result PostgreSQL will never store (a NUL character in a
                // string, a number out of range) would fail the same way on
                // every attempt: the job fails, saying why.
                Err(Unwritten::Refused(err)) if err.is_unstorable_value() => {
                    let error = format!("the handler's result could not be stored: {err}");
                    store_call(runtime, patience, give_up, || store.fail(fence, &error)).await
                }
                // Refused for another reason (a trigger, a constraint, a
                // statement timeout): the attempt is lost, the job tries
                // again, rather than staying `running` until its lease runs out.
                Err(Unwritten::Refused(err)) => {
                    let error = format!("the outcome could not be recorded: {err}");
                    let delay = runtime
                        .settings
                        .retry
                        .delay_after(job.attempts.max(1) as u32);
                    store_call(runtime, patience, give_up, || {
                        store.schedule_retry(fence, &error, delay)
                    })
                    .await
                }
                other => other,
            }
        }
        Outcome::Failed(JobError::Permanent(error)) => {
            store_call(runtime, patience, give_up, || store.fail(fence, error)).await
        }
        Outcome::Failed(JobError::Retryable(error)) => {
            let delay = runtime
                .settings
                .retry
                .delay_after(job.attempts.max(1) as u32);
            store_call(runtime, patience, give_up, || {
                store.schedule_retry(fence, error, delay)
            })
            .await
        }
        Outcome::Canceled => {
            store_call(runtime, patience, give_up, || store.finish_canceled(fence)).await
        }
        Outcome::Interrupted => {
            store_call(runtime, patience, give_up, || store.release(fence)).await
        }
        Outcome::LeaseLost => {
            conveyor::metrics::job_finished(&job.queue, &job.task_type, "lease_lost");
            tracing::warn!(event = "job_abandoned", worker.id = %runtime.me(), duration_ms,
                "stopped job {} attempt {}: its lease was lost, so nothing is written", job.id, fence.attempt);
            ack_keeping_place(runtime, &job.queue, &job.id.to_string()).await;
            return;
        }
    };
    let Ok(transition) = written else {
        // PostgreSQL stayed down past the lease, or refused even the
        // failure: the row's lease expires (this worker no longer renews
        // it) and the lease rescuer moves the job on. The id stays in this
        // worker's processing list; a later delivery of it is skipped.
        tracing::warn!(event = "job_outcome_unwritten", job.id = %job.id,
            "could not record the outcome of job {}; its lease will expire and it will run again", job.id);
        return;
    };
    let me = runtime.me();
    match transition {
        Transition::Won(after) => {
            log_outcome(&after, &outcome, duration_ms, me);
            if !matches!(outcome, Outcome::Interrupted) {
                runtime.count_ended(after.status);
            }
            conveyor::metrics::job_finished(
                &after.queue,
                &after.task_type,
                outcome_label(&after, &outcome),
            );
            if after.status == JobStatus::Retrying {
                redis_call(runtime, 5, || runtime.broker.ack_and_republish(me, &after)).await;
            } else {
                ack(runtime, &job.queue, &job.id.to_string()).await;
            }
        }
        Transition::Lost(found) => {
            conveyor::metrics::job_finished(&job.queue, &job.task_type, "fenced");
            tracing::warn!(event = "job_fenced", worker.id = %me, job.status = %found.status,
                job.current_attempt = found.attempts, duration_ms,
                "discarded the outcome of job {} attempt {}: the attempt was taken from this worker",
                job.id, fence.attempt);
            ack_keeping_place(runtime, &job.queue, &job.id.to_string()).await;
        }
        Transition::NotFound => ack(runtime, &job.queue, &job.id.to_string()).await,
    }
}

/// The `outcome` label of an ended attempt.
fn outcome_label(after: &Job, outcome: &Outcome) -> &'static str {
    match (after.status, outcome) {
        (JobStatus::Completed, _) => "completed",
        (JobStatus::Retrying, Outcome::Interrupted) => "released",
        (JobStatus::Retrying, _) => "retried",
        (JobStatus::Failed, _) => "failed",
        (JobStatus::Canceled, _) => "canceled",
        _ => "other",
    }
}

fn log_outcome(after: &Job, outcome: &Outcome, duration_ms: u64, me: &str) {
    let error = after.error_message.as_deref().unwrap_or_default();
    match (after.status, outcome) {
        (JobStatus::Completed, _) => {
            tracing::info!(event = "job_completed", worker.id = %me, duration_ms,
            "completed job {}", after.id)
        }
        (JobStatus::Retrying, Outcome::Interrupted) => {
            tracing::info!(event = "job_released", worker.id = %me,
            duration_ms, "put back job {} at shutdown; the attempt does not count", after.id)
        }
        (JobStatus::Retrying, _) => {
            tracing::warn!(event = "job_retry_scheduled", worker.id = %me, duration_ms,
            error, retry_at = %after.run_at, "job {} failed (attempt {} of {}); retrying at {}",
            after.id, after.attempts, after.max_attempts, after.run_at)
        }
        (JobStatus::Failed, _) => {
            tracing::warn!(event = "job_failed", worker.id = %me, duration_ms, error,
            "job {} failed after {} attempt(s): {error}", after.id, after.attempts)
        }
        (JobStatus::Canceled, _) => {
            tracing::info!(event = "job_canceled", worker.id = %me, duration_ms,
            "canceled running job {}", after.id)
        }
        (status, _) => {
            tracing::warn!(worker.id = %me, job.status = %status, "job {} left in {status}", after.id)
        }
    }
}

/// Acknowledges an id whose job another attempt may now hold (a duplicate
/// delivery of a running job, an attempt taken from this worker): its place
/// under the queue's concurrency limit belongs to that attempt and stays.
async fn ack_keeping_place(runtime: &Runtime, queue: &str, id: &str) {
    if redis_call(runtime, 5, || runtime.broker.ack(queue, runtime.me(), id))
        .await
        .is_none()
    {
        tracing::warn!(job.id = %id, "could not acknowledge id {id}; it stays in this worker's processing list");
    }
}

/// Acknowledges an id whose attempt ended here, freeing its place under
/// the queue's concurrency limit.
async fn ack(runtime: &Runtime, queue: &str, id: &str) {
    if redis_call(runtime, 5, || runtime.acks.ack(queue, id))
        .await
        .is_none()
    {
        tracing::warn!(job.id = %id, "could not acknowledge id {id}; it stays in this worker's processing list");
    }
}
