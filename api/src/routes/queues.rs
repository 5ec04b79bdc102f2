//! Queues: their settings (PostgreSQL, the truth) and live state (Redis
//! depths, running jobs), and the routes that pause, resume and configure
//! them through the core client.

pub use conveyor_api_types::{QueuePatch, QueueSettingsView, QueueView, Queues, WorkerView};

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use conveyor::job::PRIORITY_RANGE;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use conveyor::store::{Change, QueueChange, QueueSettings};

use crate::error::{ApiError, Problem};
use crate::extract::{JsonBody, QueuePath};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_queues))
        .routes(routes!(configure_queue))
        .routes(routes!(pause_queue))
        .routes(routes!(resume_queue))
}

/// The settings of a queue never configured.
fn default_settings(name: &str) -> QueueSettingsView {
    QueueSettingsView {
        name: name.to_owned(),
        paused: false,
        concurrency_limit: None,
        rate_limit: None,
        rate_burst: None,
        retain_completed_secs: None,
        retain_failed_secs: None,
        retain_canceled_secs: None,
        updated_at: None,
    }
}

/// A queue's stored settings as the API shows them.
pub fn settings_view(settings: QueueSettings) -> QueueSettingsView {
    QueueSettingsView {
        name: settings.name,
        paused: settings.paused,
        concurrency_limit: settings.concurrency_limit,
        rate_limit: settings.rate_limit,
        rate_burst: settings.rate_burst,
        retain_completed_secs: settings.retain_completed_secs,
        retain_failed_secs: settings.retain_failed_secs,
        retain_canceled_secs: settings.retain_canceled_secs,
        updated_at: Some(settings.updated_at),
    }
}

/// Every queue (in use, running jobs, or configured) with its settings
/// and live state: ready ids per priority lane, delayed ids, ids in
/// flight and running jobs; and the live workers.
#[utoipa::path(get, path = "/queues", tag = "queues",
    responses(
        (status = 200, description = "Queue state", body = Queues),
        (status = 503, description = "Redis or PostgreSQL unavailable", body = crate::error::Problem),
    ))]
pub async fn list_queues(State(state): State<AppState>) -> Result<Json<Queues>, ApiError> {
    // The cause is logged; callers get no driver text.
    let redis_down = |err: conveyor::BrokerError| {
        tracing::warn!(event = "redis_unavailable", error = %err, "GET /queues could not read Redis");
        ApiError::Unavailable {
            code: "redis_unavailable",
            detail: "Redis is unavailable; try again".to_owned(),
        }
    };
    let overview = conveyor::client::overview(&state.store, &state.broker)
        .await
        .map_err(|err| match err {
            conveyor::client::OverviewError::Store(err) => ApiError::from(err),
            conveyor::client::OverviewError::Broker(err) => redis_down(err),
        })?;
    let queues = overview
        .into_iter()
        .map(|queue| {
            let ready: BTreeMap<i16, u64> = PRIORITY_RANGE
                .zip(queue.depths.ready.iter().copied())
                .collect();
            QueueView {
                settings: queue
                    .settings
                    .map_or_else(|| default_settings(&queue.name), settings_view),
                ready_total: ready.values().sum(),
                delayed: queue.depths.delayed,
                in_flight: queue.depths.processing,
                ready,
                running: queue.running,
                oldest_due_secs: queue.oldest_due.map(|due| due.as_secs_f64()),
                workers: queue.depths.workers,
                name: queue.name,
            }
        })
        .collect();

    let workers = state
        .broker
        .workers()
        .await
        .map_err(redis_down)?
        .into_iter()
        .map(|worker| {
            let info = worker.info.as_ref();
            WorkerView {
                host: info.map(|info| info.host.clone()),
                pid: info.map(|info| info.pid),
                queues: info.map(|info| info.queues.clone()).unwrap_or_default(),
                concurrency: info.map(|info| info.concurrency),
                running: info.map(|info| info.running as u64),
                started_at: info.map(|info| info.started_at.clone()),
                last_heartbeat: worker.last_beat.to_rfc3339(),
                id: worker.id,
            }
        })
        .collect();
    Ok(Json(Queues { queues, workers }))
}

/// Reads a patch by hand: serde cannot tell a field set to null from one
/// left out, and that difference is the point.
fn parse_patch(body: serde_json::Map<String, serde_json::Value>) -> Result<QueueChange, ApiError> {
    use serde_json::Value;
    fn whole<T: TryFrom<i64>>(field: &str, value: &Value) -> Result<Change<T>, ApiError> {
        match value {
            Value::Null => Ok(Change::Clear),
            // 1e6 is a whole number too.
            Value::Number(n) => n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                        .map(|f| f as i64)
                })
                .and_then(|n| T::try_from(n).ok())
                .map(Change::Set)
                .ok_or_else(|| {
                    ApiError::invalid(
                        field,
                        format!("{field} must be a whole number or null (got {n})"),
                    )
                }),
            other => Err(ApiError::invalid(
                field,
                format!("{field} must be a whole number or null (got {other})"),
            )),
        }
    }
    let mut change = QueueChange::default();
    for (field, value) in &body {
        match field.as_str() {
            // null: back to the default, running.
            "paused" => {
                change.paused = Some(match value {
                    Value::Null => false,
                    other => other.as_bool().ok_or_else(|| {
                        ApiError::invalid(
                            "paused",
                            format!("paused must be true, false or null (got {value})"),
                        )
                    })?,
                })
            }
            "concurrency_limit" => change.concurrency_limit = whole("concurrency_limit", value)?,
            "rate_burst" => change.rate_burst = whole("rate_burst", value)?,
            "retain_completed_secs" => change.retain_completed_secs = whole(field, value)?,
            "retain_failed_secs" => change.retain_failed_secs = whole(field, value)?,
            "retain_canceled_secs" => change.retain_canceled_secs = whole(field, value)?,
            "rate_limit" => {
                change.rate_limit = match value {
                    Value::Null => Change::Clear,
                    Value::Number(n) => Change::Set(n.as_f64().unwrap_or(f64::NAN)),
                    other => {
                        return Err(ApiError::invalid(
                            "rate_limit",
                            format!(
                                "rate_limit must be a number of jobs per second or null (got {other})"
                            ),
                        ));
                    }
                }
            }
            _ => {
                return Err(ApiError::Invalid {
                    field: Some(field.clone()),
                    detail: format!(
                        "unknown setting {field:?}; settings are paused, concurrency_limit, rate_limit, \
                         rate_burst, retain_completed_secs, retain_failed_secs, retain_canceled_secs"
                    ),
                });
            }
        }
    }
    // The values themselves are the core client's to check.
    Ok(change)
}

/// Change a queue's settings: pause, concurrency and rate limits,
/// retention. Fields left out are kept; `null` restores a default. Workers
/// apply new limits within a second; a pause holds from the moment this
/// answers.
#[utoipa::path(patch, path = "/queues/{queue}", tag = "queues",
    params(("queue" = String, Path, description = "Queue name", pattern = "^[a-z0-9_-]{1,64}$")),
    request_body = QueuePatch,
    responses(
        (status = 200, description = "The queue's settings", body = QueueSettingsView),
        (status = 422, description = "A setting is invalid", body = Problem),
    ))]
pub async fn configure_queue(
    State(state): State<AppState>,
    QueuePath(queue): QueuePath,
    JsonBody(body): JsonBody<serde_json::Map<String, serde_json::Value>>,
) -> Result<Json<QueueSettingsView>, ApiError> {
    let change = parse_patch(body)?;
    Ok(Json(settings_view(
        state.client.configure_queue(&queue, &change).await?,
    )))
}

/// Pause a queue: it still accepts jobs, running ones finish, and no
/// worker starts one of its jobs until it is resumed.
#[utoipa::path(post, path = "/queues/{queue}/pause", tag = "queues",
    params(("queue" = String, Path, description = "Queue name", pattern = "^[a-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "The queue's settings", body = QueueSettingsView),
        (status = 422, description = "Malformed queue name", body = Problem),
    ))]
pub async fn pause_queue(
    State(state): State<AppState>,
    QueuePath(queue): QueuePath,
) -> Result<Json<QueueSettingsView>, ApiError> {
    Ok(Json(settings_view(state.client.pause_queue(&queue).await?)))
}

/// Resume a paused queue: workers start its jobs again within a second.
#[utoipa::path(post, path = "/queues/{queue}/resume", tag = "queues",
    params(("queue" = String, Path, description = "Queue name", pattern = "^[a-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "The queue's settings", body = QueueSettingsView),
        (status = 422, description = "Malformed queue name", body = Problem),
    ))]
pub async fn resume_queue(
    State(state): State<AppState>,
    QueuePath(queue): QueuePath,
) -> Result<Json<QueueSettingsView>, ApiError> {
    Ok(Json(settings_view(
        state.client.resume_queue(&queue).await?,
    )))
}
