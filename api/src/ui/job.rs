//! `/ui/jobs/{id}`: one job — its fields, payload, result, error,
//! progress and every attempt with its worker and duration; cancel and
//! retry.

use axum::extract::State;
use axum::response::Redirect;
use conveyor::client::BulkAction;
use conveyor::store::RunningAttempt;
use conveyor::{Job, JobStatus};
use maud::{Markup, html};

use super::layout::{
    Shell, action_button, duration, json_block, live, plain, status_badge, when, when_opt,
};
use super::session::{Action, Fields};
use super::{Done, PageContext, Ui, UiError, done};
use crate::error::ApiError;
use crate::extract::JobIdPath;
use crate::routes::jobs::{CancelOutcome, cancel_outcome, retry_outcome};
use crate::state::AppState;

pub async fn page(
    State(state): State<AppState>,
    Ui(JobIdPath(id)): Ui<JobIdPath>,
    context: PageContext,
) -> Result<Markup, UiError> {
    let shell = context
        .shell(&state, "/ui/jobs", format!("Job {id}"))
        .await?;
    let (job, attempts) = tokio::join!(state.store.find(id), state.store.attempts(id));
    let job = job?.ok_or_else(|| UiError(ApiError::job_not_found(id)))?;
    let attempts = attempts?;
    let now = shell.now;
    let running = RunningAttempt::of(&job);
    let body = html! {
        (live("job-detail", html! {
            (actions(&shell, &job))
            (facts(&job, now))
            @if let Some(error) = &job.error_message {
                h2 { "Error" }
                pre.json.error-text #job-error { (plain(error)) }
            }
            @if let Some(progress) = &job.progress {
                h2 { "Progress" }
                (json_block(progress))
            }
            @if let Some(result) = &job.result {
                h2 { "Result" }
                (json_block(result))
            }
            h2 { "Attempts" }
            @if attempts.is_empty() && running.is_none() {
                p.muted { "No attempt has started yet." }
            } @else {
                div.table-wrap {
                    table #attempts {
                        thead { tr {
                            th.num { "#" } th { "Outcome" } th { "Worker" } th { "Started" }
                            th.num { "Duration" } th { "Error" }
                        } }
                        tbody {
                            @if let Some(attempt) = &running {
                                tr {
                                    td.num { (attempt.attempt) }
                                    td { (status_badge("running")) }
                                    td.mono { (attempt.worker_id.as_deref().unwrap_or("—")) }
                                    td { (when(attempt.started_at, now)) }
                                    td.num { (duration((now - attempt.started_at).num_milliseconds())) " so far" }
                                    td {}
                                }
                                @if attempt.attempt == 1 && !attempts.is_empty() { (requeued_row()) }
                            }
                            // Newest first: the attempt that matters is on top.
                            @for (i, attempt) in attempts.iter().enumerate().rev() {
                                @let next = attempts.get(i + 1).map(|next| next.attempt)
                                    .or(running.as_ref().map(|running| running.attempt));
                                // Another attempt of the same run followed, or
                                // (the newest) one is due.
                                @let retried = attempt.outcome == "failed" && match next {
                                    Some(next) => next != 1,
                                    None => job.status == JobStatus::Retrying,
                                };
                                tr {
                                    td.num { (attempt.attempt) }
                                    td {
                                        (status_badge(&attempt.outcome))
                                        @if retried { " " span.muted { "then retried" } }
                                    }
                                    td.mono { (attempt.worker_id.as_deref().unwrap_or("—")) }
                                    td { (when(attempt.started_at, now)) }
                                    td.num { (duration(attempt.duration_ms())) }
                                    td.error-text { (plain(attempt.error.as_deref().unwrap_or(""))) }
                                }
                                @if attempt.attempt == 1 && i > 0 { (requeued_row()) }
                            }
                        }
                    }
                }
            }
        }))
        // The payload does not change; a refresh does not fetch it again.
        @if !shell.live_only {
            h2 { "Payload" }
            (json_block(&job.payload))
        }
    };
    Ok(shell.page(body))
}

/// Between two runs of a job: a manual retry starts again from attempt 1.
fn requeued_row() -> Markup {
    html! {
        tr.run-break { td colspan="6" { "↑ queued again by hand (attempts count from 1 again)" } }
    }
}

fn facts(job: &Job, now: chrono::DateTime<chrono::Utc>) -> Markup {
    html! {
        dl.facts {
            dt { "Status" } dd #job-status { (status_badge(job.status.as_str()))
                @if job.cancel_requested && job.status == JobStatus::Running { " " span.muted { "(asked to stop)" } } }
            dt { "Type" } dd { (job.task_type) }
            dt { "Queue" } dd { a href={ "/ui/jobs?queue=" (job.queue) } { (job.queue) } }
            dt { "Priority" } dd { (job.priority) }
            dt { "Attempts" } dd { (job.attempts) " of " (job.max_attempts) }
            dt { "Timeout" } dd { (job.timeout_seconds) " s" }
            dt { "Idempotency key" } dd.mono { (plain(job.idempotency_key.as_deref().unwrap_or("—"))) }
            @if let Some(schedule) = &job.schedule_name {
                dt { "Schedule" } dd { a href={ "/ui/jobs?schedule=" (schedule) } { (schedule) }
                    @if let Some(tick) = job.schedule_tick { " (tick " (when(tick, now)) ")" } }
            }
            dt { "Created" } dd { (when(job.created_at, now)) }
            dt { "Runs at" } dd { (when(job.run_at, now)) }
            dt { "Started" } dd { (when_opt(job.started_at, now)) }
            @if let Some(at) = job.completed_at { dt { "Completed" } dd { (when(at, now)) } }
            @if let Some(at) = job.failed_at { dt { "Failed" } dd { (when(at, now)) } }
            @if let Some(at) = job.canceled_at { dt { "Canceled" } dd { (when(at, now)) } }
            dt { "Last change" } dd { (when(job.updated_at, now)) }
            @if let Some(worker) = &job.worker_id { dt { "Worker" } dd.mono { (worker) } }
        }
    }
}

fn actions(shell: &Shell, job: &Job) -> Markup {
    if shell.read_only {
        return html! {};
    }
    let id = job.id.to_string();
    // The core's rules for which jobs each action moves.
    let can_retry = BulkAction::Retry.statuses().contains(&job.status);
    let can_cancel = BulkAction::Cancel.statuses().contains(&job.status) && !job.cancel_requested;
    html! {
        div.actions {
            @if can_retry {
                (action_button(&shell.csrf, &format!("/ui/jobs/{id}/retry"), "Retry", "job-retry", &[],
                    Some("Queue this job again, from its first attempt?")))
            }
            @if can_cancel {
                (action_button(&shell.csrf, &format!("/ui/jobs/{id}/cancel"), "Cancel", "job-cancel", &[],
                    Some("Cancel this job?")))
            }
        }
    }
}

/// Where to go after an action on one job: back to the list it was
/// started from, or to the job.
fn back(fields: &Fields, job: &str) -> String {
    match fields.get("back") {
        Some(_) => super::session::safe_next(fields.get("back")).to_owned(),
        None => format!("/ui/jobs/{job}"),
    }
}

pub async fn retry(
    State(state): State<AppState>,
    Ui(JobIdPath(id)): Ui<JobIdPath>,
    Action(fields): Action,
) -> Result<Redirect, UiError> {
    retry_outcome(id, state.client.retry(id).await?)?;
    Ok(done(&back(&fields, &id.to_string()), Done::Retried, None))
}

pub async fn cancel(
    State(state): State<AppState>,
    Ui(JobIdPath(id)): Ui<JobIdPath>,
    Action(fields): Action,
) -> Result<Redirect, UiError> {
    let to = back(&fields, &id.to_string());
    Ok(match cancel_outcome(id, state.client.cancel(id).await?)? {
        CancelOutcome::Canceled(_) => done(&to, Done::Canceled, None),
        CancelOutcome::Requested(_) => done(&to, Done::CancelRequested, None),
    })
}
