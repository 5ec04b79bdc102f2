//! `/ui`: how the whole system is doing — jobs by status, attempts ended
//! over the last hour and their failure rate, each queue's latency, the
//! workers alive.

use std::time::Duration;

use axum::extract::State;
use conveyor::JobStatus;
use conveyor::broker::MinuteTally;
use conveyor::broker::Tally;
use maud::{Markup, html};

use super::layout::{age, count, live, table_or};
use super::{PageContext, UiError};
use crate::state::AppState;
use crate::views::Accuracy;

pub async fn page(State(state): State<AppState>, context: PageContext) -> Result<Markup, UiError> {
    let shell = context.shell(&state, "/ui", "Overview").await?;
    let summary = state
        .summaries
        .get_within(&state.store, COUNTS_MAX_AGE)
        .await?;
    let minutes = state.broker.recent_tally().await?;
    let queues = conveyor::client::overview(&state.store, &state.broker).await?;
    let workers = state.broker.worker_count().await?;

    let mut hour = Tally::default();
    for minute in &minutes {
        hour.add(&minute.tally);
    }
    // The slowest queue that should be moving: paused ones wait by choice.
    let latency = queues
        .iter()
        .filter(|queue| !queue.is_paused())
        .filter_map(|queue| Some((queue.oldest_due?, queue.name.as_str())))
        .max();
    let unserved = queues.iter().filter(|queue| queue.is_unserved()).count();
    let waiting: u64 = queues
        .iter()
        .map(|queue| queue.depths.ready.iter().sum::<u64>())
        .sum();
    let status_count =
        |status: JobStatus| summary.by_status.get(status.as_str()).copied().unwrap_or(0);
    let estimated = summary.accuracy == Accuracy::Estimated;

    let body = html! {
        (live("overview-counts", html! {
            h2 { "Jobs by status" @if estimated { " " span.muted { "(finished counts estimated)" } } }
            div.cards {
                @for status in JobStatus::ALL {
                    a.card href={ "/ui/jobs?status=" (status.as_str()) } id={ "count-" (status.as_str()) } {
                        span.label { (status.as_str()) }
                        span.value { (count(status_count(status))) }
                    }
                }
            }
            h2 { "Last hour" }
            div.cards {
                div.card #ended-hour {
                    span.label { "Attempts ended" }
                    span.value { (count(hour.ended() as i128)) }
                }
                div.card #throughput {
                    span.label { "Completed" }
                    span.value { (rate(hour.completed)) }
                }
                div.card #failure-rate {
                    span.label { "Failure rate" }
                    span.value {
                        @match hour.failure_rate() {
                            Some(rate) => (format!("{:.1} %", rate * 100.0)),
                            None => "—",
                        }
                    }
                }
                div.card #latency {
                    span.label {
                        "Queue latency"
                        @if let Some((_, queue)) = latency { " (" (queue) ")" }
                    }
                    span.value {
                        @match latency {
                            Some((due, _)) => (age(due.as_secs())),
                            None => "—",
                        }
                    }
                }
                div.card #ready-now {
                    span.label { "Ready to run" }
                    span.value { (count(waiting as i128)) }
                }
                a.card href="/ui/workers" #workers-alive {
                    span.label { "Workers" }
                    span.value { (count(workers as i128)) }
                }
            }
            (sparkline(&minutes))
            div.spark-axis.muted { span { "60 min ago" } span { "now" } }
            p.muted {
                "Attempts ended per minute (completed, and failed or retried). Counted by workers and "
                "sent with each heartbeat, so the current minute lags by a few seconds."
            }
            h2 { "Queues" }
            @if unserved > 0 {
                p.notice.warning #unserved {
                    @if unserved == 1 { "1 queue has jobs ready and no worker serving it" }
                    @else { (unserved) " queues have jobs ready and no worker serving them" }
                    " (see the workers' " code { "CONVEYOR_QUEUES" } ")."
                }
            }
            (table_or(super::queues::NO_QUEUES, queues.len(),
                html! {
                    th { "Queue" } th.num { "Ready" } th.num { "Running" } th.num { "Oldest due" } th { "State" }
                },
                html! {
                    @for queue in &queues {
                        tr {
                            td { a href={ "/ui/jobs?queue=" (queue.name) } { (queue.name) } }
                            td.num { (count(queue.ready() as i128)) }
                            td.num { (count(queue.running)) }
                            td.num { @match queue.oldest_due { Some(due) => (age(due.as_secs())), None => "—" } }
                            td { (super::queues::state(queue)) }
                        }
                    }
                },
            ))
        }))
    };
    Ok(shell.page(body))
}

/// How old the status counts may be: a full count of the table runs at
/// most this often per API process, however many dashboards are open
/// (`GET /jobs/summary` allows two seconds).
pub const COUNTS_MAX_AGE: Duration = Duration::from_secs(5);

/// Completions per second over the hour, or per minute (or per hour)
/// when that reads better than "0.0/s".
fn rate(completed: u64) -> String {
    let per_hour = completed as f64;
    if per_hour >= 3_600.0 {
        format!("{:.1}/s", per_hour / 3_600.0)
    } else if per_hour >= 60.0 {
        format!("{:.1}/min", per_hour / 60.0)
    } else {
        format!("{completed}/h")
    }
}

/// Attempts ended per minute over the hour, as bars: completed below,
/// failed (retried or for good) above. Fixed size, so it never moves
/// the page.
fn sparkline(minutes: &[MinuteTally]) -> Markup {
    const HEIGHT: f64 = 60.0;
    let peak = minutes
        .iter()
        .map(|m| m.tally.ended())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let label = format!(
        "Attempts ended per minute over the last hour; the busiest minute had {}",
        count(peak as i128)
    );
    html! {
        svg.spark viewBox="0 0 600 60" preserveAspectRatio="none" role="img" aria-label=(label) {
            @for (i, minute) in minutes.iter().enumerate() {
                @let x = i as f64 * 10.0;
                @let done = minute.tally.completed as f64 / peak * HEIGHT;
                @let failed = (minute.tally.retried + minute.tally.failed) as f64 / peak * HEIGHT;
                rect.done x=(x) y=(HEIGHT - done) width="8" height=(done) {}
                rect.fail x=(x) y=(HEIGHT - done - failed) width="8" height=(failed) {}
            }
        }
    }
}
