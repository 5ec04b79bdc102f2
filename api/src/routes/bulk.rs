//! `POST /jobs/retry` and `POST /jobs/cancel`: one action on every job
//! matching the filters of `GET /jobs`, a bounded number per request.

pub use conveyor_api_types::{BulkRequest, BulkResult};

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::list::Filters;
use crate::error::{ApiError, Problem};
use crate::extract::JsonBody;
use crate::state::AppState;

/// Jobs changed per request when the body does not say, and the most.
pub const DEFAULT_BULK_LIMIT: u64 = 1_000;
pub const MAX_BULK_LIMIT: u64 = conveyor::store::MAX_BULK;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(retry_matching))
        .routes(routes!(cancel_matching))
}

/// The filter and limit, parsed; the action's own rules (at least one
/// filter, statuses it can move) are the core client's.
fn parse(request: BulkRequest) -> Result<(conveyor::store::ListFilter, u64), ApiError> {
    let limit = match request.limit {
        None => DEFAULT_BULK_LIMIT,
        Some(limit) => limit,
    };
    let filters = Filters::parse(
        request.status.as_deref(),
        request.queue,
        request.task_type,
        request.created_before.as_deref(),
        request.created_after.as_deref(),
    )?;
    Ok((filters.into_filter(), limit))
}

/// Run again, from attempt 1, every failed or canceled job matching the
/// filters, up to `limit` per request (oldest first).
#[utoipa::path(post, path = "/jobs/retry", tag = "jobs",
    request_body = BulkRequest,
    responses(
        (status = 200, description = "How many were queued again", body = BulkResult),
        (status = 422, description = "A filter is invalid", body = Problem),
    ))]
pub async fn retry_matching(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<BulkRequest>,
) -> Result<Json<BulkResult>, ApiError> {
    let (filter, limit) = parse(request)?;
    let retried = state.client.retry_matching(filter, limit).await?;
    let changed = retried.len() as u64;
    Ok(Json(BulkResult {
        changed,
        canceled: None,
        cancel_requested: None,
        limit,
        more: changed >= limit,
    }))
}

/// Cancel every waiting job matching the filters, and ask the workers of
/// every running one to stop it, up to `limit` per request (oldest first).
#[utoipa::path(post, path = "/jobs/cancel", tag = "jobs",
    request_body = BulkRequest,
    responses(
        (status = 200, description = "How many were canceled or asked to stop", body = BulkResult),
        (status = 422, description = "A filter is invalid", body = Problem),
    ))]
pub async fn cancel_matching(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<BulkRequest>,
) -> Result<Json<BulkResult>, ApiError> {
    let (filter, limit) = parse(request)?;
    let done = state.client.cancel_matching(filter, limit).await?;
    let (canceled, requested) = (done.canceled.len() as u64, done.requested.len() as u64);
    Ok(Json(BulkResult {
        changed: canceled + requested,
        canceled: Some(canceled),
        cancel_requested: Some(requested),
        limit,
        more: canceled + requested >= limit || done.unfinished,
    }))
}
