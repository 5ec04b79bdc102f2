//! `POST /jobs/retry` and `POST /jobs/cancel`: one action on every job
//! matching the filters of `GET /jobs`, a bounded number per request.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
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

/// Which jobs a bulk action applies to: the filters of `GET /jobs`, at
/// least one of them. Unknown fields are refused, so a misspelt filter
/// cannot widen the action to every job.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// For a retry: failed or canceled (default both). For a cancel:
    /// queued, retrying or running (default all three).
    pub status: Option<String>,
    pub queue: Option<String>,
    #[serde(rename = "type")]
    pub task_type: Option<String>,
    /// RFC 3339.
    pub created_before: Option<String>,
    /// RFC 3339.
    pub created_after: Option<String>,
    /// Most jobs changed by this request: 1..=10000, default 1000. Repeat
    /// the request while `more` is true.
    #[schema(minimum = 1, maximum = 10000)]
    pub limit: Option<u64>,
}

/// What a bulk action changed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BulkResult {
    /// Jobs changed by this request.
    pub changed: u64,
    /// For a cancel: waiting jobs now canceled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canceled: Option<u64>,
    /// For a cancel: running jobs whose workers were asked to stop them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_requested: Option<u64>,
    pub limit: u64,
    /// True when the limit was reached: more jobs may match; send the
    /// request again.
    pub more: bool,
}

impl BulkRequest {
    /// The filter and limit, parsed; the action's own rules (at least one
    /// filter, statuses it can move) are the core client's.
    fn parse(self) -> Result<(conveyor::store::ListFilter, u64), ApiError> {
        let limit = match self.limit {
            None => DEFAULT_BULK_LIMIT,
            Some(limit) => limit,
        };
        let filters = Filters::parse(
            self.status.as_deref(),
            self.queue,
            self.task_type,
            self.created_before.as_deref(),
            self.created_after.as_deref(),
        )?;
        Ok((filters.into_filter(), limit))
    }
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
    let (filter, limit) = request.parse()?;
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
    let (filter, limit) = request.parse()?;
    let done = state.client.cancel_matching(filter, limit).await?;
    let (canceled, requested) = (done.canceled.len() as u64, done.requested.len() as u64);
    Ok(Json(BulkResult {
        changed: canceled + requested,
        canceled: Some(canceled),
        cancel_requested: Some(requested),
        limit,
        more: canceled + requested >= limit,
    }))
}
