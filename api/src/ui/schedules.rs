//! `/ui/schedules`: every periodic schedule with its last and next run;
//! pause, resume and trigger now.

use axum::extract::State;
use axum::response::Redirect;
use maud::{Markup, html};

use super::layout::{action_button, live, when_opt};
use super::session::Action;
use super::{Done, PageContext, Ui, UiError, done};
use crate::extract::SchedulePath;
use crate::routes::schedules::{not_found, set_enabled};
use crate::state::AppState;

pub async fn page(State(state): State<AppState>, context: PageContext) -> Result<Markup, UiError> {
    let shell = context.shell(&state, "/ui/schedules", "Schedules").await?;
    let schedules = state.store.schedules().await?;
    let now = shell.now;
    let body = html! {
        (live("schedules-table", html! {
            @if schedules.is_empty() {
                p.muted { "No schedules. Create one with " code { "POST /schedules" } " or declare it in a worker's settings." }
            } @else {
                div.table-wrap {
                    table {
                        thead { tr {
                            th { "Schedule" } th { "When" } th { "Job" } th { "State" }
                            th { "Last run" } th { "Next run" } th { "Missed ticks" }
                            @if !shell.read_only { th { "Actions" } }
                        } }
                        tbody {
                            @for schedule in &schedules {
                                tr id={ "schedule-" (schedule.name) } {
                                    td { a href={ "/ui/jobs?schedule=" (schedule.name) } { (schedule.name) } }
                                    td { code { (schedule.cron) } br; span.muted { (schedule.timezone) } }
                                    td { (schedule.job_type) br; span.muted { "on " (schedule.job_queue) } }
                                    td {
                                        @if schedule.enabled { span.muted { "active" } }
                                        @else { span.badge.paused { "paused" } }
                                    }
                                    td { (when_opt(schedule.last_fired_at, now)) }
                                    td {
                                        @if schedule.enabled { (when_opt(schedule.next_fire_at, now)) }
                                        @else { span.muted { "—" } }
                                    }
                                    td { (schedule.missed) }
                                    @if !shell.read_only {
                                        td {
                                            @let base = format!("/ui/schedules/{}", schedule.name);
                                            @if schedule.enabled {
                                                (action_button(&shell.csrf, &format!("{base}/pause"), "Pause",
                                                    &format!("pause-schedule-{}", schedule.name), &[],
                                                    Some(&format!("Pause schedule {}? No tick fires until it is resumed.", schedule.name))))
                                            } @else {
                                                (action_button(&shell.csrf, &format!("{base}/resume"), "Resume",
                                                    &format!("resume-schedule-{}", schedule.name), &[], None))
                                            }
                                            " "
                                            (action_button(&shell.csrf, &format!("{base}/trigger"), "Run now",
                                                &format!("trigger-{}", schedule.name), &[],
                                                Some(&format!("Enqueue a {} job from schedule {} now?", schedule.job_type, schedule.name))))
                                        }
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

pub async fn pause(
    State(state): State<AppState>,
    Ui(SchedulePath(name)): Ui<SchedulePath>,
    Action(_): Action,
) -> Result<Redirect, UiError> {
    set_enabled(&state, &name, false).await?;
    Ok(done("/ui/schedules", Done::Paused, None))
}

pub async fn resume(
    State(state): State<AppState>,
    Ui(SchedulePath(name)): Ui<SchedulePath>,
    Action(_): Action,
) -> Result<Redirect, UiError> {
    set_enabled(&state, &name, true).await?;
    Ok(done("/ui/schedules", Done::Resumed, None))
}

pub async fn trigger(
    State(state): State<AppState>,
    Ui(SchedulePath(name)): Ui<SchedulePath>,
    Action(_): Action,
) -> Result<Redirect, UiError> {
    let made = state
        .client
        .trigger_schedule(&name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    Ok(Redirect::to(&format!(
        "/ui/jobs/{}?done=triggered",
        made.job().id
    )))
}
