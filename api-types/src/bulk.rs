//! Retry or cancel every job matching a filter: `POST /jobs/retry`,
//! `POST /jobs/cancel`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Which jobs a bulk action applies to: the filters of `GET /jobs`, at
/// least one of them. Unknown fields are refused, so a misspelt filter
/// cannot widen the action to every job.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// For a retry: failed or canceled (default both). For a cancel:
    /// queued, retrying or running (default all three).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(rename = "type")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_type: Option<String>,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_before: Option<String>,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_after: Option<String>,
    /// Most jobs changed by this request: 1..=10000, default 1000. Repeat
    /// the request while `more` is true.
    #[schema(minimum = 1, maximum = 10000)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// What a bulk action changed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
