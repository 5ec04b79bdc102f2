//! `POST /jobs/batch`: up to 1,000 jobs in one request, one transaction and
//! one pipelined publish.

pub use conveyor_api_types::{BatchItem, BatchResult, CreateBatch};

use axum::Json;
use axum::extract::{Request, State};
use conveyor::trace::JobSpan;
use conveyor::{Inserted, NewJob, StoreError};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, Problem};
use crate::extract::{JsonBody, parse_json, traceparent};
use crate::routes::jobs::CreateJob;
use crate::state::AppState;

/// Most jobs one batch may hold.
pub const MAX_BATCH: usize = 1_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_batch))
}

/// Create many jobs at once. Valid items are inserted in one transaction
/// and published in one pipeline; invalid items, items PostgreSQL refuses
/// and idempotency conflicts are reported per item, in order, without
/// affecting the others. If PostgreSQL is unavailable or too slow, nothing
/// is written and the whole request is 503.
#[utoipa::path(post, path = "/jobs/batch", tag = "jobs",
    request_body(content = CreateBatch, content_type = "application/json"),
    params(("traceparent" = Option<String>, Header,
        description = "W3C trace context of the caller, given to every job of the batch; a value \
                       the W3C rules reject is ignored")),
    responses(
        (status = 200, description = "One outcome per item, in order", body = BatchResult),
        (status = 400, description = "Malformed JSON", body = Problem),
        (status = 413, description = "Body too large", body = Problem),
        (status = 415, description = "Not JSON", body = Problem),
        (status = 422, description = "Not a batch of 1 to 1,000 jobs", body = Problem),
        (status = 503, description = "PostgreSQL unavailable; nothing was written", body = Problem),
    ))]
pub async fn create_batch(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<BatchResult>, ApiError> {
    let parent = traceparent(request.headers());
    let JsonBody(batch) =
        <JsonBody<CreateBatch> as axum::extract::FromRequest<AppState>>::from_request(
            request, &state,
        )
        .await?;
    if batch.jobs.is_empty() || batch.jobs.len() > MAX_BATCH {
        return Err(ApiError::invalid(
            "jobs",
            format!(
                "jobs must hold 1 to {MAX_BATCH} jobs (got {})",
                batch.jobs.len()
            ),
        ));
    }
    let total = batch.jobs.len();
    let mut items: Vec<Option<BatchItem>> = (0..total).map(|_| None).collect();
    let mut valid: Vec<(usize, NewJob)> = Vec::with_capacity(total);
    for (index, raw) in batch.jobs.into_iter().enumerate() {
        let parsed = parse_json::<CreateJob>(raw.get().as_bytes())
            .and_then(|body| crate::routes::jobs::new_job(body, None))
            .and_then(|job| {
                job.validate()
                    .map(|()| job)
                    .map_err(|invalid| ApiError::invalid(invalid.field, invalid.to_string()))
            });
        match parsed {
            Ok(job) => valid.push((index, job)),
            Err(err) => items[index] = Some(rejected(err, index)),
        }
    }

    let (positions, mut jobs): (Vec<usize>, Vec<NewJob>) = valid.into_iter().unzip();
    // Each job is enqueued by a span of its own, under the request's
    // context.
    let spans: Vec<Option<JobSpan>> = jobs
        .iter_mut()
        .map(|job| {
            let span = state.traces.enqueue(job, parent);
            job.traceparent = span.as_ref().map(JobSpan::traceparent).or(parent);
            span
        })
        .collect();
    let outcomes = state.client.enqueue_many(jobs).await;
    end_spans(spans, &outcomes);
    let outcomes = outcomes?;
    let mut created = 0;
    let mut replayed = 0;
    for (index, outcome) in positions.iter().zip(outcomes) {
        items[*index] = Some(match outcome {
            Err(err) => rejected(ApiError::from(err), *index),
            Ok(Inserted::Created(job)) => {
                created += 1;
                BatchItem {
                    status: 201,
                    job: Some(crate::views::job_view(job)),
                    error: None,
                }
            }
            Ok(Inserted::Replayed(job)) => {
                replayed += 1;
                BatchItem {
                    status: 200,
                    job: Some(crate::views::job_view(job)),
                    error: None,
                }
            }
            Ok(Inserted::Conflict(job)) => rejected(
                ApiError::Conflict {
                    code: "idempotency_key_conflict",
                    detail: format!(
                        "idempotency key {:?} was already used by a different request (job {})",
                        job.idempotency_key.as_deref().unwrap_or_default(),
                        job.id
                    ),
                    job_id: Some(job.id.to_string()),
                },
                *index,
            ),
        });
    }

    let items: Vec<BatchItem> = items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            item.unwrap_or_else(|| {
                rejected(
                    ApiError::Internal(format!("batch item {index} got no outcome")),
                    index,
                )
            })
        })
        .collect();
    let rejected_count = items.iter().filter(|item| item.status >= 400).count();
    Ok(Json(BatchResult {
        created,
        replayed,
        rejected: rejected_count,
        items,
    }))
}

/// Ends each job's span by its outcome.
fn end_spans(
    spans: Vec<Option<JobSpan>>,
    outcomes: &Result<Vec<Result<Inserted, StoreError>>, StoreError>,
) {
    for (index, span) in spans.into_iter().enumerate() {
        let Some(span) = span else { continue };
        match outcomes {
            Ok(outcomes) => match outcomes.get(index) {
                Some(outcome) => span.end_enqueue(outcome.as_ref()),
                None => span.end(),
            },
            Err(err) => span.end_enqueue(Err(err)),
        }
    }
}

/// One item's error as a problem document, its field prefixed with the
/// item's index (`jobs[3].priority`).
fn rejected(error: ApiError, index: usize) -> BatchItem {
    let mut problem = error.problem();
    problem.field = Some(match problem.field.take() {
        Some(field) => format!("jobs[{index}].{field}"),
        None => format!("jobs[{index}]"),
    });
    BatchItem {
        status: problem.status,
        job: None,
        error: Some(problem),
    }
}
