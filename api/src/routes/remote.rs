//! The worker protocol (`docs/worker-protocol.md`): `POST /jobs/claim`,
//! `POST /jobs/heartbeat`, `POST /jobs/{id}/complete`, `/fail` and
//! `/release`. Each handler checks its body and calls
//! [`conveyor::remote`], which owns what the call does and in which order.

pub use conveyor_api_types::{
    AttemptState, ClaimJobs, Claimed, ClaimedJob, CompleteJob, FailJob, Heartbeat, HeartbeatResult,
    HeldJob, HeldJobState, ReleaseJob, Reported,
};

use std::collections::HashSet;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use conveyor::job::{DEFAULT_QUEUE, check_queue_name, check_storable_json};
use conveyor::remote::{self, ClaimRequest, Failure, HeldAttempt, RemoteError, Report};
use conveyor::{ClaimToken, Fence, Job, JobId, JobStatus, WorkerId};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, Problem};
use crate::extract::{JobIdPath, JsonBody};
use crate::state::AppState;

/// Most queues one claim may name.
pub const MAX_CLAIM_QUEUES: usize = 16;
/// Most attempts one heartbeat may name.
pub const MAX_HEARTBEAT_JOBS: usize = 1_000;
/// Longest error message a failure report may carry, in characters.
pub const MAX_ERROR_CHARS: usize = 10_000;
/// What a long-poll leaves of the request timeout, for the claim itself
/// and the answer: a wait is cut to the timeout less this.
const CLAIM_MARGIN: Duration = Duration::from_secs(2);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(claim_jobs))
        .routes(routes!(heartbeat))
        .routes(routes!(complete_job))
        .routes(routes!(fail_job))
        .routes(routes!(release_job))
}

/// Claim ready jobs for a worker in any language. Queues are taken in the
/// order given (each queue's higher priorities first); each job comes with
/// its attempt's token, which every heartbeat and report must carry. With
/// `wait_ms`, waits for a job when none is ready (a long-poll, cut to the
/// request timeout less 2 s). A caller that hangs up before the answer has
/// the jobs claimed for it put back, their attempt not counted.
#[utoipa::path(post, path = "/jobs/claim", tag = "workers",
    request_body(content = ClaimJobs, content_type = "application/json"),
    responses(
        (status = 200, description = "Jobs claimed", body = Claimed),
        (status = 204, description = "No job was ready within the wait"),
        (status = 422, description = "A field is missing or out of range", body = Problem),
        (status = 503, description = "PostgreSQL or Redis unavailable; nothing was claimed", body = Problem),
    ))]
pub async fn claim_jobs(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<ClaimJobs>,
) -> Result<Response, ApiError> {
    let longest = state
        .settings
        .limits
        .request_timeout
        .saturating_sub(CLAIM_MARGIN)
        .min(remote::MAX_WAIT);
    let request = claim_request(body, longest)?;
    let jobs = state.workers.claim(request).await.map_err(remote_error)?;
    if jobs.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(Json(Claimed {
        jobs: jobs.iter().map(claimed_job).collect(),
        lease_ms: lease_ms(&state),
    })
    .into_response())
}

/// The claim a body asks for, each field checked.
fn claim_request(body: ClaimJobs, longest_wait: Duration) -> Result<ClaimRequest, ApiError> {
    let worker = worker_id(&body.worker)?;
    let queues = body
        .queues
        .unwrap_or_else(|| vec![DEFAULT_QUEUE.to_owned()]);
    if queues.is_empty() || queues.len() > MAX_CLAIM_QUEUES {
        return Err(ApiError::invalid(
            "queues",
            format!(
                "queues must name 1 to {MAX_CLAIM_QUEUES} queues (got {})",
                queues.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    for (index, queue) in queues.iter().enumerate() {
        check_queue_name(queue)
            .map_err(|invalid| ApiError::invalid(format!("queues[{index}]"), invalid.message))?;
        if !seen.insert(queue) {
            return Err(ApiError::invalid(
                format!("queues[{index}]"),
                format!("queue {queue:?} is named twice"),
            ));
        }
    }
    let max = body.max.unwrap_or(1);
    if !(1..=remote::MAX_CLAIM as i64).contains(&max) {
        return Err(ApiError::invalid(
            "max",
            format!("max must be 1 to {} (got {max})", remote::MAX_CLAIM),
        ));
    }
    let wait_ms = body.wait_ms.unwrap_or(0);
    let most = remote::MAX_WAIT.as_millis() as i64;
    if !(0..=most).contains(&wait_ms) {
        return Err(ApiError::invalid(
            "wait_ms",
            format!("wait_ms must be 0 to {most} (got {wait_ms})"),
        ));
    }
    Ok(ClaimRequest {
        worker,
        queues,
        max: max as usize,
        wait: Duration::from_millis(wait_ms as u64).min(longest_wait),
    })
}

/// Extend the leases of the attempts a worker runs, record their progress,
/// and learn which to stop: one canceled by a client, one past its job's
/// timeout (each ended here), or one no longer the worker's. Also keeps the
/// worker registered; a worker that stops calling is presumed dead after a
/// lease, and its jobs run again.
#[utoipa::path(post, path = "/jobs/heartbeat", tag = "workers",
    request_body(content = Heartbeat, content_type = "application/json"),
    responses(
        (status = 200, description = "Each attempt's state, in the order given", body = HeartbeatResult),
        (status = 422, description = "A field is missing or out of range", body = Problem),
        (status = 503, description = "PostgreSQL unavailable; no lease was extended", body = Problem),
    ))]
pub async fn heartbeat(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<Heartbeat>,
) -> Result<Json<HeartbeatResult>, ApiError> {
    let worker = worker_id(&body.worker)?;
    if body.jobs.len() > MAX_HEARTBEAT_JOBS {
        return Err(ApiError::invalid(
            "jobs",
            format!(
                "jobs must name at most {MAX_HEARTBEAT_JOBS} attempts (got {})",
                body.jobs.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    let mut held = Vec::with_capacity(body.jobs.len());
    let mut refused = Vec::with_capacity(body.jobs.len());
    for (index, job) in body.jobs.iter().enumerate() {
        if !seen.insert(job.id) {
            return Err(ApiError::invalid(
                format!("jobs[{index}].id"),
                format!("job {} is named twice", job.id),
            ));
        }
        // One attempt's progress that cannot be stored must not cost every
        // attempt of the worker its lease: it is left out, and the answer
        // says why.
        let storable = job
            .progress
            .as_ref()
            .map(|progress| check_storable_json("progress", progress));
        let (progress, why) = match storable {
            Some(Err(invalid)) => (None, Some(invalid.message)),
            Some(Ok(())) => (job.progress.clone(), None),
            None => (None, None),
        };
        refused.push(why);
        held.push(HeldAttempt {
            id: JobId::from(job.id),
            token: ClaimToken::from(job.token),
            progress,
        });
    }
    let states = state
        .workers
        .heartbeat(worker, held)
        .await
        .map_err(remote_error)?;
    let jobs = body
        .jobs
        .iter()
        .zip(states)
        .zip(refused)
        .map(|((job, found), progress_refused)| {
            let (state, lease_expires_at) = match found {
                remote::AttemptState::Running { lease_expires_at } => {
                    (AttemptState::Running, Some(lease_expires_at))
                }
                remote::AttemptState::Canceled => (AttemptState::Canceled, None),
                remote::AttemptState::TimedOut => (AttemptState::TimedOut, None),
                remote::AttemptState::Finished => (AttemptState::Finished, None),
                remote::AttemptState::Lost => (AttemptState::Lost, None),
            };
            HeldJobState {
                id: job.id,
                token: job.token,
                state,
                lease_expires_at,
                progress_refused,
            }
        })
        .collect();
    Ok(Json(HeartbeatResult {
        jobs,
        lease_ms: lease_ms(&state),
    }))
}

/// Report an attempt completed, with its result. Written only if the token
/// is still the job's current attempt's; sent again after a lost answer,
/// it is answered as before (`repeated`) and writes nothing.
#[utoipa::path(post, path = "/jobs/{id}/complete", tag = "workers",
    params(("id" = uuid::Uuid, Path, description = "Job id")),
    request_body(content = CompleteJob, content_type = "application/json"),
    responses(
        (status = 200, description = "Recorded", body = Reported),
        (status = 404, description = "No such job", body = Problem),
        (status = 409, description = "The attempt is no longer this worker's (`attempt_lost`); nothing was written", body = Problem),
        (status = 422, description = "A field is missing or malformed", body = Problem),
        (status = 503, description = "PostgreSQL unavailable; nothing was written, send it again", body = Problem),
    ))]
pub async fn complete_job(
    State(state): State<AppState>,
    JobIdPath(id): JobIdPath,
    JsonBody(body): JsonBody<CompleteJob>,
) -> Result<Json<Reported>, ApiError> {
    let fence = fence(id, &body.worker, body.token)?;
    check_storable_json("result", &body.result)?;
    reported(id, state.workers.complete(fence, body.result).await)
}

/// Report an attempt failed. With `retry` (the default) the job runs again
/// after the backoff while attempts remain; without, it fails now. Fenced
/// and repeatable as `complete` is.
#[utoipa::path(post, path = "/jobs/{id}/fail", tag = "workers",
    params(("id" = uuid::Uuid, Path, description = "Job id")),
    request_body(content = FailJob, content_type = "application/json"),
    responses(
        (status = 200, description = "Recorded", body = Reported),
        (status = 404, description = "No such job", body = Problem),
        (status = 409, description = "The attempt is no longer this worker's (`attempt_lost`); nothing was written", body = Problem),
        (status = 422, description = "A field is missing or malformed", body = Problem),
        (status = 503, description = "PostgreSQL unavailable; nothing was written, send it again", body = Problem),
    ))]
pub async fn fail_job(
    State(state): State<AppState>,
    JobIdPath(id): JobIdPath,
    JsonBody(body): JsonBody<FailJob>,
) -> Result<Json<Reported>, ApiError> {
    let fence = fence(id, &body.worker, body.token)?;
    let chars = body.error.chars().count();
    if chars == 0 || chars > MAX_ERROR_CHARS {
        return Err(ApiError::invalid(
            "error",
            format!("error must be 1 to {MAX_ERROR_CHARS} characters (got {chars})"),
        ));
    }
    let failure = Failure {
        error: body.error,
        retry: body.retry.unwrap_or(true),
    };
    reported(id, state.workers.fail(fence, failure).await)
}

/// Put an attempt back: the job runs again at once, this attempt not
/// counted (canceled instead when a cancel was asked). For a worker shutting
/// down with jobs it could not finish. Fenced and repeatable as `complete`
/// is.
#[utoipa::path(post, path = "/jobs/{id}/release", tag = "workers",
    params(("id" = uuid::Uuid, Path, description = "Job id")),
    request_body(content = ReleaseJob, content_type = "application/json"),
    responses(
        (status = 200, description = "Put back", body = Reported),
        (status = 404, description = "No such job", body = Problem),
        (status = 409, description = "The attempt is no longer this worker's (`attempt_lost`); nothing was written", body = Problem),
        (status = 422, description = "A field is missing or malformed", body = Problem),
        (status = 503, description = "PostgreSQL unavailable: send it again", body = Problem),
    ))]
pub async fn release_job(
    State(state): State<AppState>,
    JobIdPath(id): JobIdPath,
    JsonBody(body): JsonBody<ReleaseJob>,
) -> Result<Json<Reported>, ApiError> {
    let fence = fence(id, &body.worker, body.token)?;
    reported(id, state.workers.release(fence).await)
}

fn worker_id(name: &str) -> Result<WorkerId, ApiError> {
    Ok(remote::worker_id(name)?)
}

/// What a report must hold to write about its attempt.
fn fence(id: JobId, worker: &str, token: uuid::Uuid) -> Result<Fence, ApiError> {
    Ok(remote::fence(
        id,
        &worker_id(worker)?,
        ClaimToken::from(token),
    ))
}

fn reported(id: JobId, report: Result<Report, RemoteError>) -> Result<Json<Reported>, ApiError> {
    let (job, repeated) = match report.map_err(remote_error)? {
        Report::Written(job) => (job, false),
        Report::Repeated(job) => (job, true),
        Report::Lost(job) => {
            return Err(ApiError::Conflict {
                code: "attempt_lost",
                detail: format!(
                    "this attempt of job {id} is no longer this worker's (the job is now {}, \
                     attempt {}): nothing was written; stop working on it",
                    job.status, job.attempts
                ),
                job_id: Some(id.to_string()),
            });
        }
        Report::NotFound => return Err(ApiError::job_not_found(id)),
    };
    Ok(Json(Reported {
        id: job.id,
        status: job.status.to_string(),
        attempt: job.attempts,
        retry_at: (job.status == JobStatus::Retrying).then_some(job.run_at),
        repeated,
    }))
}

fn claimed_job(job: &Job) -> ClaimedJob {
    let lease_expires_at = job.lease_expires_at.unwrap_or_default();
    let started_at = job.started_at.unwrap_or(lease_expires_at);
    ClaimedJob {
        id: job.id,
        queue: job.queue.clone(),
        task_type: job.task_type.clone(),
        payload: job.payload.clone(),
        priority: job.priority,
        attempt: job.attempts,
        max_attempts: job.max_attempts,
        token: ClaimToken::of(job).as_uuid(),
        lease_expires_at,
        timeout_seconds: job.timeout_seconds,
        deadline: started_at + chrono::Duration::seconds(i64::from(job.timeout_seconds)),
        traceparent: conveyor::trace::TraceParent::of_job(job).to_string(),
    }
}

fn lease_ms(state: &AppState) -> u64 {
    state.workers.settings().lease.as_millis() as u64
}

fn remote_error(err: RemoteError) -> ApiError {
    match err {
        // A write may have committed with its answer lost: say so. Every
        // call of the protocol may be sent again (a repeated report is
        // answered as the first).
        RemoteError::Store(err) if err.is_unavailable() => ApiError::Unavailable {
            code: "database_unavailable",
            detail: "PostgreSQL is unavailable; this call may or may not have taken effect: \
                     send it again (a repeated report is answered as the first)"
                .to_owned(),
        },
        RemoteError::Store(err) => ApiError::from(err),
        RemoteError::Broker(err) => {
            tracing::warn!(event = "redis_unavailable", error = %err, "a worker protocol call could not reach Redis");
            ApiError::Unavailable {
                code: "redis_unavailable",
                detail: "Redis is unavailable; nothing was claimed, try again".to_owned(),
            }
        }
    }
}
