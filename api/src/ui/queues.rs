//! `/ui/queues`: every queue's live state and settings; pause and resume.

use axum::extract::State;
use axum::response::Redirect;
use conveyor::client::QueueOverview;
use conveyor::job::PRIORITY_RANGE;
use maud::{Markup, html};

use super::layout::{action_button, age, count, live, table_or};
use super::session::{Action, Csrf};
use super::{Done, PageContext, Ui, UiError, done};
use crate::extract::QueuePath;
use crate::state::AppState;

/// What the queue tables say when there is none.
pub const NO_QUEUES: &str = "No queues yet: they appear when the first job is submitted.";

pub async fn page(State(state): State<AppState>, context: PageContext) -> Result<Markup, UiError> {
    let shell = context.shell(&state, "/ui/queues", "Queues").await?;
    let queues = conveyor::client::overview(&state.store, &state.broker).await?;
    let body = html! {
        p.muted {
            "Ready: ids waiting on the queue's lanes (by priority, 9 runs first). Delayed: due later. "
            "In flight: taken by workers. Oldest due: how long the job next in line has waited."
        }
        (live("queues-table", table_or(NO_QUEUES, queues.len(),
            html! {
                th { "Queue" } th { "State" } th.num { "Ready" } th.num { "Delayed" }
                th.num { "In flight" } th.num { "Running" } th.num { "Oldest due" }
                th { "Limits" }
                @if !shell.read_only { th { "Actions" } }
            },
            html! { @for queue in &queues { (row(queue, &shell.csrf, shell.read_only)) } },
        )))
    };
    Ok(shell.page(body))
}

fn row(queue: &QueueOverview, csrf: &Csrf, read_only: bool) -> Markup {
    let settings = queue.settings.as_ref();
    let paused = queue.is_paused();
    let ready: u64 = queue.depths.ready.iter().sum();
    let lanes: Vec<String> = PRIORITY_RANGE
        .zip(queue.depths.ready.iter())
        .rev()
        .filter(|(_, n)| **n > 0)
        .map(|(priority, n)| format!("p{priority}: {}", count(*n as i128)))
        .collect();
    let concurrency = settings.and_then(|s| s.concurrency_limit);
    let rate = settings.and_then(|s| s.rate_limit);
    let burst = settings.and_then(|s| s.rate_burst);
    html! {
        tr id={ "queue-" (queue.name) } {
            td { a href={ "/ui/jobs?queue=" (queue.name) } { (queue.name) } }
            td { (state(queue)) }
            td.num {
                (count(ready as i128))
                @if lanes.len() > 1 || lanes.first().is_some_and(|lane| !lane.starts_with("p0:")) {
                    br; span.lanes { (lanes.join(" · ")) }
                }
            }
            td.num { (count(queue.depths.delayed as i128)) }
            td.num { (count(queue.depths.processing as i128)) }
            td.num { (count(queue.running)) }
            td.num { @match queue.oldest_due { Some(due) => (age(due.as_secs())), None => "—" } }
            td {
                @if concurrency.is_none() && rate.is_none() { span.muted { "none" } }
                @if let Some(limit) = concurrency { (limit) " at once" br; }
                @if let Some(rate) = rate {
                    (format!("{rate}/s")) @if let Some(burst) = burst { " (burst " (burst) ")" }
                }
            }
            @if !read_only {
                td {
                    @if paused {
                        (action_button(csrf, &format!("/ui/queues/{}/resume", queue.name), "Resume",
                            &format!("resume-{}", queue.name), &[], None))
                    } @else {
                        (action_button(csrf, &format!("/ui/queues/{}/pause", queue.name), "Pause",
                            &format!("pause-{}", queue.name), &[],
                            Some(&format!("Pause queue {}? Running jobs finish; no new ones start until it is resumed.", queue.name))))
                    }
                }
            }
        }
    }
}

/// Paused, waiting for a worker (jobs ready, none serving it), or
/// running.
pub fn state(queue: &QueueOverview) -> Markup {
    html! {
        @if queue.is_paused() { span.badge.paused { "paused" } }
        @else if queue.is_unserved() {
            span.badge.status-retrying title="Jobs are ready and no registered worker serves this queue" { "no worker" }
        }
        @else { span.muted { "running" } }
    }
}

pub async fn pause(
    State(state): State<AppState>,
    Ui(QueuePath(queue)): Ui<QueuePath>,
    Action(_): Action,
) -> Result<Redirect, UiError> {
    state.client.pause_queue(&queue).await?;
    Ok(done("/ui/queues", Done::Paused, None))
}

pub async fn resume(
    State(state): State<AppState>,
    Ui(QueuePath(queue)): Ui<QueuePath>,
    Action(_): Action,
) -> Result<Redirect, UiError> {
    state.client.resume_queue(&queue).await?;
    Ok(done("/ui/queues", Done::Resumed, None))
}
