//! `/ui/workers`: every registered worker with its host, queues,
//! concurrency, running jobs and last heartbeat.

use axum::extract::State;
use maud::{Markup, html};

use super::layout::{age, live};
use super::{PageContext, UiError};
use crate::state::AppState;

pub async fn page(State(state): State<AppState>, context: PageContext) -> Result<Markup, UiError> {
    let shell = context.shell(&state, "/ui/workers", "Workers").await?;
    let workers = state.broker.workers().await?;
    let body = html! {
        (live("workers-table", html! {
            @if workers.is_empty() {
                p.muted { "No worker is registered. Start one (" code { "conveyor-worker" } ") and it appears here." }
            } @else {
                div.table-wrap {
                    table {
                        thead { tr {
                            th { "Worker" } th { "Host" } th { "Queues" } th.num { "Concurrency" }
                            th.num { "Running" } th { "Started" } th { "Last heartbeat" }
                        } }
                        tbody {
                            @for worker in &workers {
                                @let info = worker.info.as_ref();
                                tr {
                                    td.mono { (worker.id) }
                                    td { @if let Some(info) = info { (info.host) " (pid " (info.pid) ")" } @else { "—" } }
                                    td { @if let Some(info) = info { (info.queues.join(", ")) } }
                                    td.num { @if let Some(info) = info { (info.concurrency) } }
                                    td.num { @if let Some(info) = info { (info.running) } }
                                    td {
                                        // By the worker's host clock, so shown as
                                        // written, not against the database's.
                                        @if let Some(info) = info {
                                            @if let Ok(at) = chrono::DateTime::parse_from_rfc3339(&info.started_at) {
                                                (at.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M:%S UTC"))
                                            }
                                        }
                                    }
                                    td {
                                        time datetime=(super::layout::iso(worker.last_beat)) title=(worker.last_beat.format("%Y-%m-%d %H:%M:%S%.3f UTC")) {
                                            (age(worker.silent_for.as_secs())) " ago"
                                        }
                                        @if worker.is_late() { " " span.badge.paused title="It has missed heartbeats; if it stays silent, dead-worker recovery puts its jobs back" { "late" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }))
    };
    Ok(shell.page(body))
}
