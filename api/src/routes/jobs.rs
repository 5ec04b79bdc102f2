//! `/jobs`: create, read, cancel, retry, result. Listing is in `list`, the
//! summary in `summary`.

pub use conveyor_api_types::CreateJob;

use axum::Json;
use axum::extract::{Multipart, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use conveyor::job::DEFAULT_QUEUE;
use conveyor::trace::JobSpan;
use conveyor::{Canceled, Inserted, JobStatus, NewJob, Schedule, Transition};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, Problem};
use crate::extract::{BodyKind, JobIdPath, body_kind, parse_json, read_body, traceparent};
use crate::state::AppState;
use crate::views::{JobResult, JobView};

/// Longest delay a job may be scheduled with: one year.
pub const MAX_DELAY_SECONDS: i64 = 365 * 24 * 60 * 60;
/// Header that carries an idempotency key, as an alternative to the field.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_job))
        .routes(routes!(get_job))
        .routes(routes!(cancel_job))
        .routes(routes!(retry_job))
        .routes(routes!(job_result))
}

/// The multipart form of `POST /jobs`: a UTF-8 text file to count. Parts
/// not listed here are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct UploadJob {
    /// UTF-8 text; becomes a `char_count` job with payload `{"text": ...}`.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    queue: Option<String>,
    #[schema(minimum = 0, maximum = 9)]
    priority: Option<i64>,
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    idempotency_key: Option<String>,
}

/// The job a `POST /jobs` body describes, each field checked.
pub(crate) fn new_job(body: CreateJob, header_key: Option<String>) -> Result<NewJob, ApiError> {
    let payload = body
        .payload
        .ok_or_else(|| ApiError::invalid("payload", "payload is required (a JSON object)"))?;
    if !payload.is_object() {
        return Err(ApiError::invalid(
            "payload",
            "payload must be a JSON object",
        ));
    }
    let mut job = NewJob::new(
        body.task_type
            .unwrap_or_else(|| conveyor::job::DEFAULT_TASK_TYPE.to_owned()),
        payload,
    );
    job.queue = body.queue.unwrap_or_else(|| DEFAULT_QUEUE.to_owned());
    if let Some(priority) = body.priority {
        job.priority = in_range("priority", priority, 0, 9)?;
    }
    if let Some(max_attempts) = body.max_attempts {
        job.max_attempts = in_range("max_attempts", max_attempts, 1, 100)?;
    }
    if let Some(timeout) = body.timeout_seconds {
        job.timeout_seconds = in_range("timeout_seconds", timeout, 1, 86_400)?;
    }
    job.schedule = match (body.run_at, body.delay_seconds) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "run_at",
                "give either run_at or delay_seconds, not both",
            ));
        }
        (Some(run_at), None) => Schedule::At(
            DateTime::parse_from_rfc3339(&run_at)
                .map_err(|err| {
                    ApiError::invalid(
                        "run_at",
                        format!("run_at must be an RFC 3339 timestamp such as 2030-01-01T12:00:00Z ({err})"),
                    )
                })?
                .with_timezone(&Utc),
        ),
        (None, Some(delay)) => {
            Schedule::DelaySeconds(in_range("delay_seconds", delay, 0, MAX_DELAY_SECONDS)?)
        }
        (None, None) => Schedule::Now,
    };
    job.idempotency_key = merge_keys(body.idempotency_key, header_key)?;
    Ok(job)
}

fn in_range<T: TryFrom<i64>>(field: &str, value: i64, min: i64, max: i64) -> Result<T, ApiError> {
    if (min..=max).contains(&value) {
        T::try_from(value).map_err(|_| ApiError::invalid(field, format!("{field} is out of range")))
    } else {
        Err(ApiError::invalid(
            field,
            format!("{field} must be between {min} and {max} (got {value})"),
        ))
    }
}

/// The body's key and the header's key must agree when both are given,
/// and neither may take the prefix periodic schedules key their ticks with
/// (a client's key must not stand in for a tick's job).
fn merge_keys(body: Option<String>, header: Option<String>) -> Result<Option<String>, ApiError> {
    let key = match (body, header) {
        (Some(body), Some(header)) if body != header => {
            return Err(ApiError::invalid(
                "idempotency_key",
                "the idempotency_key field and the Idempotency-Key header differ; send one, or the same in both",
            ));
        }
        (body, header) => body.or(header),
    };
    if let Some(key) = &key
        && key.starts_with(conveyor::periodic::TICK_KEY_PREFIX)
    {
        return Err(ApiError::invalid(
            "idempotency_key",
            format!(
                "keys starting with {:?} are reserved for periodic schedules",
                conveyor::periodic::TICK_KEY_PREFIX
            ),
        ));
    }
    Ok(key)
}

fn header_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    headers
        .get(IDEMPOTENCY_KEY_HEADER)
        .map(|value| {
            value.to_str().map(str::to_owned).map_err(|_| {
                ApiError::invalid(
                    "idempotency_key",
                    "the Idempotency-Key header must be printable ASCII",
                )
            })
        })
        .transpose()
}

/// Create a job. JSON, or `multipart/form-data` with a UTF-8 text `file`
/// (a `char_count` job). With an idempotency key: the same request again
/// returns the existing job with 200; a different request under the same key
/// is 409.
#[utoipa::path(post, path = "/jobs", tag = "jobs",
    request_body(content(
        (CreateJob = "application/json"),
        (UploadJob = "multipart/form-data"),
    )),
    params(("Idempotency-Key" = Option<String>, Header, max_length = 255,
        pattern = "^[\\x21-\\x7e]([\\x20-\\x7e]*[\\x21-\\x7e])?$",
        description = "Alternative to the idempotency_key field: printable ASCII. (A control \
                       character in any header is malformed HTTP, refused before routing with \
                       an empty 400.)"),
        ("traceparent" = Option<String>, Header,
        description = "W3C trace context of the caller; the job keeps it and its first attempt's \
                       span is its child. A value the W3C rules reject is ignored, and the job \
                       starts a trace of its own.")),
    responses(
        (status = 201, description = "Created; Location names the job", body = JobView),
        (status = 200, description = "Replay of an earlier request with the same key", body = JobView),
        (status = 400, description = "Malformed JSON", body = Problem),
        (status = 409, description = "Key used by a different request", body = Problem),
        (status = 413, description = "Body too large", body = Problem),
        (status = 415, description = "Neither JSON nor multipart", body = Problem),
        (status = 422, description = "A field is missing or invalid", body = Problem),
        (status = 503, description = "PostgreSQL unavailable; nothing was written", body = Problem),
    ))]
pub async fn create_job(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let header_key = header_key(request.headers())?;
    let parent = traceparent(request.headers());
    let mut new_job = match body_kind(&request)? {
        BodyKind::Json => {
            let bytes = read_body(request, &state).await?;
            new_job(parse_json::<CreateJob>(&bytes)?, header_key)?
        }
        BodyKind::Multipart => upload(request, &state, header_key).await?,
    };
    let span = state.traces.enqueue(&new_job, parent);
    new_job.traceparent = span.as_ref().map(JobSpan::traceparent).or(parent);
    let outcome = state.client.enqueue(new_job).await;
    if let Some(span) = span {
        span.end_enqueue(outcome.as_ref());
    }
    match outcome? {
        Inserted::Created(job) => {
            let location = format!("/jobs/{}", job.id);
            Ok((
                StatusCode::CREATED,
                [(header::LOCATION, location)],
                Json(crate::views::job_view(job)),
            )
                .into_response())
        }
        Inserted::Replayed(job) => {
            Ok((StatusCode::OK, Json(crate::views::job_view(job))).into_response())
        }
        Inserted::Conflict(job) => Err(ApiError::Conflict {
            code: "idempotency_key_conflict",
            detail: format!(
                "idempotency key {:?} was already used by a different request (job {}); \
                 repeat that request exactly, or use a new key",
                job.idempotency_key.as_deref().unwrap_or_default(),
                job.id
            ),
            job_id: Some(job.id.to_string()),
        }),
    }
}

async fn upload(
    request: Request,
    state: &AppState,
    header_key: Option<String>,
) -> Result<NewJob, ApiError> {
    let limit = state.settings.max_body_bytes;
    let multipart_error = |err: axum::extract::multipart::MultipartError| {
        if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit }
        } else if crate::error::is_body_timeout(&err) {
            crate::error::body_timeout()
        } else {
            ApiError::BadRequest {
                code: "malformed_multipart",
                detail: format!("the multipart body could not be read: {}", err.body_text()),
            }
        }
    };
    let mut multipart =
        <Multipart as axum::extract::FromRequest<AppState>>::from_request(request, state)
            .await
            .map_err(|rejection| ApiError::BadRequest {
                code: "malformed_multipart",
                detail: format!(
                    "the multipart body could not be read: {}",
                    rejection.body_text()
                ),
            })?;
    let mut body = CreateJob::default();
    let mut text = None;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = field.bytes().await.map_err(multipart_error)?;
        let as_text = || {
            String::from_utf8(bytes.to_vec())
                .map_err(|_| ApiError::invalid(name.clone(), format!("{name} must be UTF-8 text")))
        };
        match name.as_str() {
            "file" => text = Some(as_text()?),
            "queue" => body.queue = Some(as_text()?),
            "idempotency_key" => body.idempotency_key = Some(as_text()?),
            "priority" => {
                body.priority = Some(as_text()?.trim().parse().map_err(|_| {
                    ApiError::invalid(
                        "priority",
                        "priority must be a whole number between 0 and 9",
                    )
                })?)
            }
            // A misspelt part would otherwise be dropped without a word.
            _ => {
                return Err(ApiError::invalid(
                    name.clone(),
                    format!(
                        "unknown part {name:?}: the form takes file, queue, priority and \
                         idempotency_key"
                    ),
                ));
            }
        }
    }
    let text =
        text.ok_or_else(|| ApiError::invalid("file", "a `file` part with UTF-8 text is required"))?;
    body.payload = Some(serde_json::json!({ "text": text }));
    body.task_type = Some("char_count".to_owned());
    new_job(body, header_key)
}

/// One job.
#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs",
    params(("id" = uuid::Uuid, Path, description = "Job id")),
    responses(
        (status = 200, body = JobView),
        (status = 404, description = "No such job", body = Problem),
        (status = 422, description = "Malformed id", body = Problem),
    ))]
pub async fn get_job(
    State(state): State<AppState>,
    JobIdPath(id): JobIdPath,
) -> Result<Json<JobView>, ApiError> {
    let job = state
        .store
        .find(id)
        .await?
        .ok_or_else(|| ApiError::job_not_found(id))?;
    Ok(Json(crate::views::job_view(job)))
}

/// Cancel a job: a waiting one at once (200); a running one is asked to
/// stop (202, `cancel_requested`), and its worker marks it canceled.
#[utoipa::path(post, path = "/jobs/{id}/cancel", tag = "jobs",
    params(("id" = uuid::Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "Canceled", body = JobView),
        (status = 202, description = "Running; cancellation requested", body = JobView),
        (status = 404, body = Problem),
        (status = 409, description = "Already finished", body = Problem),
        (status = 422, description = "Malformed id", body = Problem),
    ))]
pub async fn cancel_job(
    State(state): State<AppState>,
    JobIdPath(id): JobIdPath,
) -> Result<Response, ApiError> {
    match cancel_outcome(id, state.client.cancel(id).await?)? {
        CancelOutcome::Canceled(job) => {
            Ok((StatusCode::OK, Json(crate::views::job_view(job))).into_response())
        }
        CancelOutcome::Requested(job) => {
            Ok((StatusCode::ACCEPTED, Json(crate::views::job_view(job))).into_response())
        }
    }
}

/// What a cancel did, when it did something.
#[derive(Debug)]
pub enum CancelOutcome {
    /// The job was waiting and is now canceled.
    Canceled(conveyor::Job),
    /// The job is running; its worker was asked to stop it.
    Requested(conveyor::Job),
}

/// A cancel's result as the API (and the dashboard) answer it.
pub fn cancel_outcome(id: conveyor::JobId, canceled: Canceled) -> Result<CancelOutcome, ApiError> {
    match canceled {
        Canceled::Canceled(job) => Ok(CancelOutcome::Canceled(job)),
        Canceled::Requested(job) => Ok(CancelOutcome::Requested(job)),
        Canceled::Finished(job) => Err(ApiError::Conflict {
            code: "job_not_cancelable",
            detail: format!(
                "job {id} is already {}; only waiting or running jobs can be canceled",
                job.status
            ),
            job_id: Some(id.to_string()),
        }),
        Canceled::NotFound => Err(ApiError::job_not_found(id)),
        Canceled::Busy => Err(ApiError::Conflict {
            code: "job_busy",
            detail: format!("job {id} kept changing state; try again"),
            job_id: Some(id.to_string()),
        }),
    }
}

/// Run a failed or canceled job again, from attempt 1.
#[utoipa::path(post, path = "/jobs/{id}/retry", tag = "jobs",
    params(("id" = uuid::Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "Queued again", body = JobView),
        (status = 404, body = Problem),
        (status = 409, description = "Not failed or canceled", body = Problem),
        (status = 422, description = "Malformed id", body = Problem),
    ))]
pub async fn retry_job(
    State(state): State<AppState>,
    JobIdPath(id): JobIdPath,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(crate::views::job_view(retry_outcome(
        id,
        state.client.retry(id).await?,
    )?)))
}

/// A manual retry's result as the API (and the dashboard) answer it.
pub fn retry_outcome(id: conveyor::JobId, retried: Transition) -> Result<conveyor::Job, ApiError> {
    match retried {
        Transition::Won(job) => Ok(job),
        Transition::Lost(job) => Err(ApiError::Conflict {
            code: "job_not_retryable",
            detail: format!(
                "job {id} is {}; only failed or canceled jobs can be retried",
                job.status
            ),
            job_id: Some(id.to_string()),
        }),
        Transition::NotFound => Err(ApiError::job_not_found(id)),
    }
}

/// The result of a job: 200 when completed, 202 while not finished, 409 with
/// the error when it failed or was canceled.
#[utoipa::path(get, path = "/jobs/{id}/result", tag = "jobs",
    params(("id" = uuid::Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "Completed", body = JobResult),
        (status = 202, description = "Not finished yet", body = JobResult),
        (status = 404, body = Problem),
        (status = 409, description = "Failed or canceled", body = Problem),
        (status = 422, description = "Malformed id", body = Problem),
    ))]
pub async fn job_result(
    State(state): State<AppState>,
    JobIdPath(id): JobIdPath,
) -> Result<Response, ApiError> {
    let job = state
        .store
        .find(id)
        .await?
        .ok_or_else(|| ApiError::job_not_found(id))?;
    let view = JobResult {
        id: job.id,
        status: job.status.as_str().to_owned(),
        result: job.result.clone(),
    };
    match job.status {
        JobStatus::Completed => Ok((StatusCode::OK, Json(view)).into_response()),
        JobStatus::Failed => Err(ApiError::Conflict {
            code: "job_failed",
            detail: format!(
                "job {id} failed after {} attempt(s): {}",
                job.attempts,
                job.error_message.as_deref().unwrap_or("no error recorded")
            ),
            job_id: Some(id.to_string()),
        }),
        JobStatus::Canceled => Err(ApiError::Conflict {
            code: "job_canceled",
            detail: format!("job {id} was canceled"),
            job_id: Some(id.to_string()),
        }),
        JobStatus::Queued | JobStatus::Running | JobStatus::Retrying => {
            Ok((StatusCode::ACCEPTED, Json(view)).into_response())
        }
    }
}
