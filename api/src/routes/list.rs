//! `GET /jobs`: a page of jobs, newest first, filtered, with the number of
//! matches and a cursor to the next page.

pub use conveyor_api_types::{JobStatusName, ListParams};

use axum::Json;
use axum::extract::{Query, State};
use conveyor::JobStatus;
use conveyor::store::{ListCursor, ListFilter};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, Problem};
use crate::state::AppState;
use crate::views::{Accuracy, JobList};

/// Page size when the client gives none, and the largest it may ask for.
pub const DEFAULT_LIMIT: u64 = 20;
pub const MAX_LIMIT: u64 = 100;
/// Deepest `offset` accepted: PostgreSQL reads and discards every row it
/// skips, so deeper pages use the cursor (`after`).
pub const MAX_OFFSET: u64 = 10_000;
/// Jobs counted exactly for `count`; more are estimated.
pub const COUNT_EXACT_UP_TO: u64 = conveyor::store::COUNT_EXACT_UP_TO;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_jobs))
}

/// The filters `GET /jobs` and the bulk actions share, checked.
#[derive(Debug, Default)]
pub struct Filters {
    pub status: Option<JobStatus>,
    pub queue: Option<String>,
    pub task_type: Option<String>,
    pub created_before: Option<chrono::DateTime<chrono::Utc>>,
    pub created_after: Option<chrono::DateTime<chrono::Utc>>,
}

impl Filters {
    /// Parses each filter, naming the one that is wrong.
    pub fn parse(
        status: Option<&str>,
        queue: Option<String>,
        task_type: Option<String>,
        created_before: Option<&str>,
        created_after: Option<&str>,
    ) -> Result<Self, ApiError> {
        let status = status
            .map(str::parse::<JobStatus>)
            .transpose()
            .map_err(|err| ApiError::invalid("status", err.to_string()))?;
        if let Some(queue) = &queue {
            conveyor::job::check_queue_name(queue)?;
        }
        if let Some(task_type) = &task_type {
            conveyor::job::check_task_type(task_type)?;
        }
        Ok(Filters {
            status,
            queue,
            task_type,
            created_before: created_before
                .map(|at| parse_instant("created_before", at))
                .transpose()?,
            created_after: created_after
                .map(|at| parse_instant("created_after", at))
                .transpose()?,
        })
    }

    /// As a store filter, with paging left empty.
    pub fn into_filter(self) -> ListFilter {
        ListFilter {
            status: self.status,
            queue: self.queue,
            task_type: self.task_type,
            created_before: self.created_before,
            created_after: self.created_after,
            ..ListFilter::default()
        }
    }
}

/// An RFC 3339 instant PostgreSQL can store.
fn parse_instant(
    field: &'static str,
    raw: &str,
) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    let refused = || {
        ApiError::invalid(
            field,
            format!(
                "{field} must be an RFC 3339 date and time between years 1 and 9999, not on a leap second, such as 2026-11-29T12:00:00Z (got {raw:?})"
            ),
        )
    };
    let at = chrono::DateTime::parse_from_rfc3339(raw).map_err(|_| refused())?;
    let at = at.with_timezone(&chrono::Utc);
    if !conveyor::job::is_writable_instant(at) {
        return Err(refused());
    }
    Ok(at)
}

/// Jobs, newest first, optionally filtered. `count` is the number of jobs
/// matching the filters (exact up to 10,000, then estimated, as
/// `count_accuracy` says); page with `next_cursor`.
#[utoipa::path(get, path = "/jobs", tag = "jobs",
    params(ListParams),
    responses(
        (status = 200, body = JobList),
        (status = 400, description = "The query string cannot be parsed", body = Problem,
            content_type = "application/problem+json"),
        (status = 422, description = "A parameter is invalid", body = Problem,
            content_type = "application/problem+json"),
        (status = 503, description = "PostgreSQL unavailable or too slow", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn list_jobs(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    let Query(params) = params.map_err(|rejection| ApiError::BadRequest {
        code: "malformed_query",
        detail: format!(
            "the query string could not be parsed: {}",
            rejection.body_text()
        ),
    })?;
    if let Some(schedule) = &params.schedule
        && !conveyor::client::is_schedule_name(schedule)
    {
        return Err(ApiError::invalid(
            "schedule",
            format!("{schedule:?} is not a schedule name"),
        ));
    }
    let filters = Filters::parse(
        params.status.as_deref(),
        params.queue,
        params.task_type,
        params.created_before.as_deref(),
        params.created_after.as_deref(),
    )?;
    let limit = parse_count(
        "limit",
        params.limit.as_deref(),
        DEFAULT_LIMIT,
        1,
        MAX_LIMIT,
    )?;
    let offset = parse_count("offset", params.offset.as_deref(), 0, 0, u64::MAX)?;
    if offset > MAX_OFFSET {
        return Err(ApiError::invalid(
            "offset",
            format!(
                "offset may be at most {MAX_OFFSET} (got {offset}); to page deeper, pass the \
                 previous page's next_cursor as `after`"
            ),
        ));
    }
    let after = params
        .after
        .map(|after| {
            after.parse::<ListCursor>().map_err(|_| {
                ApiError::invalid(
                    "after",
                    "after must be the next_cursor of an earlier page of GET /jobs",
                )
            })
        })
        .transpose()?;
    let filter = ListFilter {
        // One more than the page tells whether there is a next page.
        limit: limit + 1,
        offset,
        after,
        ..filters.into_filter()
    };
    let filter = ListFilter {
        schedule: params.schedule,
        ..filter
    };
    let (page, matching) = tokio::join!(
        state.store.list(&filter),
        state.store.count_matching(&filter, COUNT_EXACT_UP_TO)
    );
    let mut page = page?;
    let matching = matching?;
    let next_cursor = if page.len() as u64 > limit {
        page.truncate(limit as usize);
        page.last().map(|job| ListCursor::after(job).to_string())
    } else {
        None
    };
    Ok(Json(JobList {
        items: page.into_iter().map(crate::views::job_view).collect(),
        limit,
        offset,
        count: matching.count,
        count_accuracy: if matching.exact {
            Accuracy::Exact
        } else {
            Accuracy::Estimated
        },
        next_cursor,
    }))
}

fn parse_count(
    field: &str,
    raw: Option<&str>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ApiError> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    match raw.parse::<u64>() {
        Ok(value) if (min..=max).contains(&value) => Ok(value),
        _ if max == u64::MAX => Err(ApiError::invalid(
            field,
            format!("{field} must be a whole number >= {min} (got {raw:?})"),
        )),
        _ => Err(ApiError::invalid(
            field,
            format!("{field} must be a whole number between {min} and {max} (got {raw:?})"),
        )),
    }
}
