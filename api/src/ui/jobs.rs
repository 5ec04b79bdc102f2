//! `/ui/jobs`: jobs filtered by status, queue, type and schedule, newest
//! first, a page at a time (keyset cursors); find one by id or
//! idempotency key; retry or cancel everything that matches.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Redirect;
use conveyor::client::BulkAction;
use conveyor::store::{ListCursor, ListFilter, MAX_BULK};
use conveyor::{Job, JobStatus};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{Shell, action_button, count, live, plain, status_badge, when};
use super::session::{Action, Fields};
use super::{Done, PageContext, UiError, done, done_with};
use crate::error::ApiError;
use crate::routes::list::Filters;
use crate::state::AppState;

/// Jobs on one page.
pub const PAGE_SIZE: u64 = 50;

/// The filters of the jobs page, as the form sends them (empty means
/// none).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct JobQuery {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub queue: String,
    #[serde(default, rename = "type")]
    pub task_type: String,
    #[serde(default)]
    pub schedule: String,
    #[serde(default)]
    pub after: String,
}

fn given(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

impl JobQuery {
    fn from_fields(fields: &Fields) -> Self {
        let field = |name| fields.get(name).unwrap_or_default().to_owned();
        JobQuery {
            status: field("status"),
            queue: field("queue"),
            task_type: field("type"),
            schedule: field("schedule"),
            after: String::new(),
        }
    }

    /// The filter these fields name, checked as `GET /jobs` checks them.
    pub fn filter(&self) -> Result<ListFilter, ApiError> {
        let filters = Filters::parse(
            given(&self.status).as_deref(),
            given(&self.queue),
            given(&self.task_type),
            None,
            None,
        )?;
        let schedule = given(&self.schedule);
        if let Some(name) = &schedule
            && !conveyor::client::is_schedule_name(name)
        {
            return Err(ApiError::invalid(
                "schedule",
                format!("{name:?} is not a schedule name"),
            ));
        }
        let after = given(&self.after)
            .map(|after| {
                after.parse::<ListCursor>().map_err(|_| {
                    ApiError::invalid(
                        "after",
                        "this page link is damaged; start from the first page",
                    )
                })
            })
            .transpose()?;
        Ok(ListFilter {
            schedule,
            after,
            ..filters.into_filter()
        })
    }

    /// These filters as a query string (without the cursor).
    pub fn query_string(&self) -> String {
        let pairs: Vec<(&str, &str)> = [
            ("status", &self.status),
            ("queue", &self.queue),
            ("type", &self.task_type),
            ("schedule", &self.schedule),
        ]
        .into_iter()
        .filter(|(_, value)| !value.trim().is_empty())
        .map(|(name, value)| (name, value.trim()))
        .collect();
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }

    fn is_filtered(&self) -> bool {
        !self.query_string().is_empty()
    }
}

pub async fn page(
    State(state): State<AppState>,
    context: PageContext,
    query: Result<Query<JobQuery>, QueryRejection>,
) -> Result<Markup, UiError> {
    let query = read_query(query)?;
    let shell = context.shell(&state, "/ui/jobs", "Jobs").await?;
    let body = listing(&state, &shell, &query, "/ui/jobs", false).await?;
    Ok(shell.page(body))
}

/// The query of a listing; one that cannot be read (a filter given
/// twice, bytes that are not text) is a 400 page, not a page that quietly
/// drops the filter (a bulk action on it would act on more).
pub fn read_query(query: Result<Query<JobQuery>, QueryRejection>) -> Result<JobQuery, UiError> {
    query.map(|Query(query)| query).map_err(|rejection| {
        UiError(ApiError::BadRequest {
            code: "invalid_query",
            detail: format!("the filters cannot be read: {}", rejection.body_text()),
        })
    })
}

/// The filter form, the matching jobs, paging and the bulk actions:
/// shared by the jobs page and the failed page (`failed_view`: the
/// error column and no status filter).
pub async fn listing(
    state: &AppState,
    shell: &Shell,
    query: &JobQuery,
    base: &str,
    failed_view: bool,
) -> Result<Markup, UiError> {
    let filter = query.filter()?;
    let page_filter = ListFilter {
        limit: PAGE_SIZE + 1,
        ..filter.clone()
    };
    let counted = ListFilter {
        after: None,
        ..filter.clone()
    };
    let mut jobs = state.store.list(&page_filter).await?;
    // A first page with room to spare holds every match: its rows are the
    // count (exact, and never at odds with the rows shown beside it).
    let matching = if filter.after.is_none() && jobs.len() as u64 <= PAGE_SIZE {
        conveyor::store::MatchCount {
            count: jobs.len() as u64,
            exact: true,
        }
    } else {
        state
            .ui_counts
            .count(&state.store, &counted, shell.live_only)
            .await?
    };
    let next = (jobs.len() as u64 > PAGE_SIZE).then(|| {
        jobs.truncate(PAGE_SIZE as usize);
        jobs.last().map(|job| ListCursor::after(job).to_string())
    });
    // The failed page's status is its own; its links leave it out.
    let filters = if failed_view {
        JobQuery {
            status: String::new(),
            ..query.clone()
        }
        .query_string()
    } else {
        query.query_string()
    };
    let link = |extra: &str| {
        let joined = [filters.as_str(), extra]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("&");
        if joined.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{joined}")
        }
    };
    let now = shell.now;
    // Where an action started here returns to: this list, first page.
    let back_here = link("");
    Ok(html! {
        @if !failed_view {
            form.filters method="get" action="/ui/find" role="search" {
                label for="find" { "Find by id or idempotency key"
                    input #find type="search" name="q" required maxlength="255" placeholder="job id or idempotency key";
                }
                button #find-go type="submit" { "Find" }
            }
        }
        form.filters method="get" action=(base) aria-label="Filter jobs" {
            @if !failed_view {
                label for="f-status" { "Status"
                    select #f-status name="status" {
                        option value="" selected[query.status.is_empty()] { "any" }
                        @for status in JobStatus::ALL {
                            option value=(status.as_str()) selected[query.status == status.as_str()] { (status.as_str()) }
                        }
                    }
                }
            }
            label for="f-queue" { "Queue" input #f-queue type="text" name="queue" value=(query.queue) maxlength="64"; }
            label for="f-type" { "Type" input #f-type type="text" name="type" value=(query.task_type) maxlength="64"; }
            label for="f-schedule" { "Schedule" input #f-schedule type="text" name="schedule" value=(query.schedule) maxlength="64"; }
            button #filter-go type="submit" { "Filter" }
            @if query.is_filtered() && !failed_view { a href=(base) { "Clear" } }
        }
        (live("jobs-list", html! {
            p #match-count {
                @if matching.exact { (count(matching.count as i128)) } @else { "about " (count(matching.count as i128)) }
                @if matching.count == 1 { " job matches" } @else { " jobs match" }
                @if filter.after.is_some() { " (this page starts after the first)" }
            }
            @if !shell.read_only && (query.is_filtered() || failed_view) && matching.count > 0 {
                (bulk_buttons(shell, query, failed_view, &back_here))
            }
            @if jobs.is_empty() {
                p.muted { "No jobs here." }
            } @else {
                div.table-wrap {
                    table {
                        thead { tr {
                            th { "Job" } th { "Type" } th { "Queue" } th { "Status" } th.num { "Attempts" }
                            th { "Created" } th { "Changed" }
                            @if failed_view { th { "Error" } }
                            @if failed_view && !shell.read_only { th { "Actions" } }
                        } }
                        tbody {
                            @for job in &jobs { (row(shell, job, now, failed_view, &back_here)) }
                        }
                    }
                }
            }
            nav.pager aria-label="Pages" {
                @if filter.after.is_some() { a #first-page href=(link("")) { "« Newest" } }
                @if let Some(Some(cursor)) = &next {
                    a #next-page href=(link(&format!("after={cursor}"))) { "Older »" }
                }
            }
        }))
    })
}

fn row(
    shell: &Shell,
    job: &Job,
    now: chrono::DateTime<chrono::Utc>,
    failed_view: bool,
    back: &str,
) -> Markup {
    let id = job.id.to_string();
    // The random end of a UUIDv7 (its start is the time, shared by
    // neighbours).
    let short = id.get(id.len().saturating_sub(12)..).unwrap_or(&id);
    html! {
        tr {
            td { a.mono href={ "/ui/jobs/" (id) } title=(id) { "…" (short) } }
            td { (job.task_type) }
            td { a href={ "/ui/jobs?queue=" (job.queue) } { (job.queue) } }
            td { (status_badge(job.status.as_str())) }
            td.num { (job.attempts) "/" (job.max_attempts) }
            td { (when(job.created_at, now)) }
            td { (when(job.updated_at, now)) }
            @if failed_view {
                td.error-text { (plain(&truncated(job.error_message.as_deref().unwrap_or(""), 160))) }
            }
            @if failed_view && !shell.read_only {
                td { (action_button(&shell.csrf, &format!("/ui/jobs/{id}/retry"), "Retry", &format!("retry-{id}"),
                    &[("back", back)], Some(&format!("Retry job …{short} ({}) from its first attempt?", job.task_type)))) }
            }
        }
    }
}

/// At most `max` characters of `text`, with an ellipsis when cut.
pub fn truncated(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn bulk_buttons(shell: &Shell, query: &JobQuery, failed_view: bool, back: &str) -> Markup {
    let status = if failed_view {
        "failed"
    } else {
        query.status.trim()
    };
    let can = |action: BulkAction| {
        status.is_empty() || action.statuses().iter().any(|s| s.as_str() == status)
    };
    let (retry, cancel) = (
        can(BulkAction::Retry),
        can(BulkAction::Cancel) && !failed_view,
    );
    let fields = [
        ("status", status),
        ("queue", query.queue.trim()),
        ("type", query.task_type.trim()),
        ("schedule", query.schedule.trim()),
        ("back", back),
    ];
    let fields: Vec<(&str, &str)> = fields.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    html! {
        @if retry || cancel {
            div.actions {
                @if retry {
                    (action_button(&shell.csrf, "/ui/jobs/retry", "Retry all matching", "bulk-retry", &fields,
                        Some(if failed_view {
                            "Queue every failed job shown by these filters again, from its first attempt?"
                        } else {
                            "Queue every failed or canceled job that matches again, from its first attempt?"
                        })))
                }
                @if cancel {
                    (action_button(&shell.csrf, "/ui/jobs/cancel", "Cancel all matching", "bulk-cancel", &fields,
                        Some("Cancel every waiting job that matches, and ask every running one to stop?")))
                }
                span.muted {
                    @if retry && !failed_view { "Retry acts on the failed or canceled ones; " }
                    @if cancel { "cancel on the waiting or running ones; " }
                    "up to " (count(MAX_BULK as i128)) " a click, oldest first."
                }
            }
        }
    }
}

/// The filters posted with a bulk action, checked as the API checks them,
/// and the page to return to.
fn bulk_filter(fields: &Fields) -> Result<(ListFilter, String), UiError> {
    let query = JobQuery::from_fields(fields);
    let filter = query.filter()?;
    let to = super::session::safe_next(fields.get("back")).to_owned();
    Ok((filter, to))
}

pub async fn retry_matching(
    State(state): State<AppState>,
    Action(fields): Action,
) -> Result<Redirect, UiError> {
    let (filter, to) = bulk_filter(&fields)?;
    let retried = state.client.retry_matching(filter, MAX_BULK).await?;
    Ok(match retried.len() {
        0 => done(&to, Done::Nothing, None),
        n => done(&to, Done::Retried, Some(n as u64)),
    })
}

pub async fn cancel_matching(
    State(state): State<AppState>,
    Action(fields): Action,
) -> Result<Redirect, UiError> {
    let (filter, to) = bulk_filter(&fields)?;
    let result = state.client.cancel_matching(filter, MAX_BULK).await?;
    Ok(
        match (result.canceled.len() as u64, result.requested.len() as u64) {
            (0, 0) => done(&to, Done::Nothing, None),
            (0, requested) => done(&to, Done::CancelRequested, Some(requested)),
            (canceled, 0) => done(&to, Done::Canceled, Some(canceled)),
            (canceled, requested) => {
                done_with(&to, Done::Canceled, Some(canceled), Some(requested))
            }
        },
    )
}
