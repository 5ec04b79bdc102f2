//! `/schedules`: periodic jobs. Every write goes through the core client,
//! which checks the cron expression, the zone and the job template, and
//! the leader's scheduler fires them.

pub use conveyor_api_types::{
    CreateSchedule, JobTemplate, MissedPolicy, ScheduleList, ScheduleView, UpdateSchedule,
};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use conveyor::client::Created;
use conveyor::job::{DEFAULT_MAX_ATTEMPTS, DEFAULT_QUEUE, DEFAULT_TIMEOUT_SECONDS};
use conveyor::periodic::Missed;
use conveyor::store::{ScheduleRow, ScheduleSpec};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, Problem};
use crate::extract::{JsonBody, SchedulePath};
use crate::state::AppState;
use crate::views::JobView;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_schedule, list_schedules))
        .routes(routes!(get_schedule, update_schedule, delete_schedule))
        .routes(routes!(pause_schedule))
        .routes(routes!(resume_schedule))
        .routes(routes!(trigger_schedule))
}

/// The core's policy for a wire policy.
fn missed(policy: MissedPolicy) -> Missed {
    match policy {
        MissedPolicy::Skip => Missed::Skip,
        MissedPolicy::Once => Missed::Once,
        MissedPolicy::All => Missed::All,
    }
}

/// A stored schedule as the API shows it.
pub fn schedule_view(row: ScheduleRow) -> ScheduleView {
    let missed = match row.missed.parse::<Missed>().unwrap_or_default() {
        Missed::Skip => MissedPolicy::Skip,
        Missed::Once => MissedPolicy::Once,
        Missed::All => MissedPolicy::All,
    };
    ScheduleView {
        job: JobTemplate {
            task_type: row.job_type,
            queue: Some(row.job_queue),
            payload: Some(row.job_payload),
            priority: Some(row.job_priority),
            max_attempts: Some(row.job_max_attempts),
            timeout_seconds: Some(row.job_timeout_seconds),
        },
        name: row.name,
        cron: row.cron,
        timezone: row.timezone,
        enabled: row.enabled,
        missed,
        max_catch_up: row.max_catch_up,
        last_tick: row.last_tick,
        last_fired_at: row.last_fired_at,
        next_tick: row.next_tick,
        next_fire_at: row.next_fire_at,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

fn apply_template(spec: &mut ScheduleSpec, job: &JobTemplate) {
    spec.job_type = job.task_type.clone();
    spec.job_queue = job
        .queue
        .clone()
        .unwrap_or_else(|| DEFAULT_QUEUE.to_owned());
    spec.job_payload = job.payload.clone().unwrap_or_else(|| serde_json::json!({}));
    spec.job_priority = job.priority.unwrap_or(0);
    spec.job_max_attempts = job.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
    spec.job_timeout_seconds = job.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS);
}

pub fn not_found(name: &str) -> ApiError {
    ApiError::NotFound {
        code: "schedule_not_found",
        detail: format!("no schedule named {name:?}"),
    }
}

/// Create a periodic schedule; its first tick is the first after now.
#[utoipa::path(post, path = "/schedules", tag = "schedules",
    request_body = CreateSchedule,
    responses(
        (status = 201, description = "Created", body = ScheduleView),
        (status = 409, description = "The name is taken", body = Problem),
        (status = 422, description = "A field is invalid (cron, timezone, job.*)", body = Problem),
    ))]
pub async fn create_schedule(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateSchedule>,
) -> Result<Response, ApiError> {
    let mut spec = ScheduleSpec {
        name: body.name,
        cron: body.cron,
        timezone: body.timezone.unwrap_or_else(|| "UTC".to_owned()),
        job_type: String::new(),
        job_queue: String::new(),
        job_payload: serde_json::json!({}),
        job_priority: 0,
        job_max_attempts: DEFAULT_MAX_ATTEMPTS,
        job_timeout_seconds: DEFAULT_TIMEOUT_SECONDS,
        enabled: body.enabled.unwrap_or(true),
        missed: body.missed.map(missed).unwrap_or_default(),
        max_catch_up: body.max_catch_up.unwrap_or(10),
    };
    apply_template(&mut spec, &body.job);
    match state.client.create_schedule(&spec).await? {
        Created::Created(row) => {
            Ok((StatusCode::CREATED, Json(schedule_view(row))).into_response())
        }
        Created::Exists(row) => Err(ApiError::Conflict {
            code: "schedule_exists",
            detail: format!(
                "a schedule named {:?} exists; change it with PATCH /schedules/{}",
                row.name, row.name
            ),
            job_id: None,
        }),
    }
}

/// Every schedule, by name.
#[utoipa::path(get, path = "/schedules", tag = "schedules",
    responses((status = 200, body = ScheduleList)))]
pub async fn list_schedules(State(state): State<AppState>) -> Result<Json<ScheduleList>, ApiError> {
    let items = state.store.schedules().await?;
    Ok(Json(ScheduleList {
        items: items.into_iter().map(schedule_view).collect(),
    }))
}

/// One schedule, with its next tick.
#[utoipa::path(get, path = "/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, pattern = "^[a-z0-9_.:-]{1,64}$")),
    responses(
        (status = 200, body = ScheduleView),
        (status = 404, body = Problem),
        (status = 422, description = "Malformed name", body = Problem),
    ))]
pub async fn get_schedule(
    State(state): State<AppState>,
    SchedulePath(name): SchedulePath,
) -> Result<Json<ScheduleView>, ApiError> {
    let row = state
        .store
        .schedule(&name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    Ok(Json(schedule_view(row)))
}

/// Change a schedule: the fields given.
#[utoipa::path(patch, path = "/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, pattern = "^[a-z0-9_.:-]{1,64}$")),
    request_body = UpdateSchedule,
    responses(
        (status = 200, body = ScheduleView),
        (status = 404, body = Problem),
        (status = 422, description = "A field is invalid", body = Problem),
    ))]
pub async fn update_schedule(
    State(state): State<AppState>,
    SchedulePath(name): SchedulePath,
    JsonBody(body): JsonBody<UpdateSchedule>,
) -> Result<Json<ScheduleView>, ApiError> {
    let row = state
        .client
        .update_schedule(&name, |spec| {
            if let Some(cron) = &body.cron {
                spec.cron = cron.clone();
            }
            if let Some(timezone) = &body.timezone {
                spec.timezone = timezone.clone();
            }
            if let Some(job) = &body.job {
                apply_template(spec, job);
            }
            if let Some(enabled) = body.enabled {
                spec.enabled = enabled;
            }
            if let Some(missed) = body.missed {
                spec.missed = self::missed(missed);
            }
            if let Some(max_catch_up) = body.max_catch_up {
                spec.max_catch_up = max_catch_up;
            }
        })
        .await?
        .ok_or_else(|| not_found(&name))?;
    Ok(Json(schedule_view(row)))
}

/// Delete a schedule; the jobs it made stay.
#[utoipa::path(delete, path = "/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, pattern = "^[a-z0-9_.:-]{1,64}$")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, body = Problem),
        (status = 422, description = "Malformed name", body = Problem),
    ))]
pub async fn delete_schedule(
    State(state): State<AppState>,
    SchedulePath(name): SchedulePath,
) -> Result<StatusCode, ApiError> {
    if state.client.delete_schedule(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&name))
    }
}

/// Pauses (`false`) or resumes schedule `name` (for the API and the
/// dashboard).
pub async fn set_enabled(
    state: &AppState,
    name: &str,
    enabled: bool,
) -> Result<conveyor::store::ScheduleRow, ApiError> {
    state
        .client
        .update_schedule(name, |spec| spec.enabled = enabled)
        .await?
        .ok_or_else(|| not_found(name))
}

/// Pause a schedule: no tick fires until it is resumed.
#[utoipa::path(post, path = "/schedules/{name}/pause", tag = "schedules",
    params(("name" = String, Path, pattern = "^[a-z0-9_.:-]{1,64}$")),
    responses(
        (status = 200, body = ScheduleView),
        (status = 404, body = Problem),
        (status = 422, description = "Malformed name", body = Problem),
    ))]
pub async fn pause_schedule(
    State(state): State<AppState>,
    SchedulePath(name): SchedulePath,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(schedule_view(
        set_enabled(&state, &name, false).await?,
    )))
}

/// Resume a schedule from its next tick after now (ticks while it was
/// paused are not fired).
#[utoipa::path(post, path = "/schedules/{name}/resume", tag = "schedules",
    params(("name" = String, Path, pattern = "^[a-z0-9_.:-]{1,64}$")),
    responses(
        (status = 200, body = ScheduleView),
        (status = 404, body = Problem),
        (status = 422, description = "Malformed name", body = Problem),
    ))]
pub async fn resume_schedule(
    State(state): State<AppState>,
    SchedulePath(name): SchedulePath,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(schedule_view(set_enabled(&state, &name, true).await?)))
}

/// Enqueue the schedule's job now, outside its ticks.
#[utoipa::path(post, path = "/schedules/{name}/trigger", tag = "schedules",
    params(("name" = String, Path, pattern = "^[a-z0-9_.:-]{1,64}$")),
    responses(
        (status = 201, description = "The job made", body = JobView),
        (status = 404, body = Problem),
        (status = 422, description = "Malformed name", body = Problem),
    ))]
pub async fn trigger_schedule(
    State(state): State<AppState>,
    SchedulePath(name): SchedulePath,
) -> Result<Response, ApiError> {
    let made = state
        .client
        .trigger_schedule(&name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    Ok((
        StatusCode::CREATED,
        Json(crate::views::job_view(made.job().clone())),
    )
        .into_response())
}
