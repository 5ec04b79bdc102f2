//! The handlers, one module per resource.

pub mod attempts;
pub mod batch;
pub mod bulk;
pub mod health;
pub mod jobs;
pub mod list;
pub mod metrics;
pub mod queues;
pub mod remote;
pub mod schedules;
pub mod summary;

use crate::error::ApiError;

/// Any path no route matches.
pub async fn not_found() -> ApiError {
    ApiError::NotFound {
        code: "route_not_found",
        detail: "no route matches this path; see /docs for the API".to_owned(),
    }
}

/// A known path with a method it does not accept.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
