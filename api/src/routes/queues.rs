//! Queues: their settings (PostgreSQL, the truth) and live state (Redis
//! depths, running jobs), and the routes that pause, resume and configure
//! them through the core client.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use conveyor::job::PRIORITY_RANGE;
use serde::Serialize;
use utoipa::ToSchema;
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

/// A queue's settings. A queue never configured has the defaults: not
/// paused, no limits, the global retention.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueSettingsView {
    pub name: String,
    /// No worker starts a job of a paused queue; it still accepts jobs.
    pub paused: bool,
    /// Most jobs running at once across every worker; null: no limit.
    pub concurrency_limit: Option<i32>,
    /// Most jobs started per second across every worker; null: no limit.
    pub rate_limit: Option<f64>,
    /// Starts the rate limit lets through at once; null: the rate, rounded up.
    pub rate_burst: Option<i32>,
    /// Seconds completed jobs are kept; 0 forever; null: the global setting
    /// (`CONVEYOR_RETAIN_COMPLETED_SECS`, default 7 days).
    pub retain_completed_secs: Option<i64>,
    /// Seconds failed jobs are kept; null: `CONVEYOR_RETAIN_FAILED_SECS`
    /// (default 30 days).
    pub retain_failed_secs: Option<i64>,
    /// Seconds canceled jobs are kept; null: `CONVEYOR_RETAIN_CANCELED_SECS`
    /// (default 7 days).
    pub retain_canceled_secs: Option<i64>,
    /// When the settings last changed; null if never configured.
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl QueueSettingsView {
    fn defaults(name: &str) -> Self {
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
}

impl From<QueueSettings> for QueueSettingsView {
    fn from(settings: QueueSettings) -> Self {
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
}

/// One queue: its settings and its backlog.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueView {
    pub name: String,
    pub settings: QueueSettingsView,
    /// Ids waiting in each priority lane, by priority ("0" to "9").
    #[schema(value_type = BTreeMap<String, u64>)]
    pub ready: BTreeMap<i16, u64>,
    pub ready_total: u64,
    /// Ids due later (scheduled jobs and retries).
    pub delayed: u64,
    /// Ids taken by workers and not yet acknowledged (Redis).
    pub in_flight: u64,
    /// Jobs in status `running` (PostgreSQL).
    pub running: i64,
    /// Seconds the job next in line has been due (the queue's latency);
    /// null when nothing is ready.
    pub oldest_due_secs: Option<f64>,
    /// Registered workers that serve the queue (0: its jobs wait for one).
    pub workers: u64,
}

/// A live worker, from its latest heartbeat.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkerView {
    pub id: String,
    pub host: Option<String>,
    pub pid: Option<u32>,
    pub queues: Vec<String>,
    pub concurrency: Option<u32>,
    /// Jobs it was running at its last heartbeat.
    pub running: Option<u64>,
    pub started_at: Option<String>,
    /// RFC 3339.
    pub last_heartbeat: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Queues {
    pub queues: Vec<QueueView>,
    pub workers: Vec<WorkerView>,
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
                settings: queue.settings.map_or_else(
                    || QueueSettingsView::defaults(&queue.name),
                    QueueSettingsView::from,
                ),
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

/// `PATCH /queues/{queue}`: each field given is changed, `null` puts it
/// back to its default, a field left out is kept. Unknown fields are
/// refused.
#[derive(Debug, Default, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueuePatch {
    /// true to pause, false (or null) to resume.
    pub paused: Option<bool>,
    /// 1..=1000000, or null for no limit.
    #[schema(value_type = Option<i32>, nullable, minimum = 1, maximum = 1000000)]
    pub concurrency_limit: Option<i32>,
    /// Jobs per second, from one a day (1/86400) to 1000000, or null for
    /// no limit.
    #[schema(value_type = Option<f64>, nullable, minimum = 0.0000116, maximum = 1000000)]
    pub rate_limit: Option<f64>,
    /// 1..=1000000, or null for the rate rounded up.
    #[schema(value_type = Option<i32>, nullable, minimum = 1, maximum = 1000000)]
    pub rate_burst: Option<i32>,
    /// Seconds, 0 (forever) to 3153600000, or null for the global setting.
    #[schema(value_type = Option<i64>, nullable, minimum = 0, maximum = 3153600000_i64)]
    pub retain_completed_secs: Option<i64>,
    #[schema(value_type = Option<i64>, nullable, minimum = 0, maximum = 3153600000_i64)]
    pub retain_failed_secs: Option<i64>,
    #[schema(value_type = Option<i64>, nullable, minimum = 0, maximum = 3153600000_i64)]
    pub retain_canceled_secs: Option<i64>,
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
    Ok(Json(
        state.client.configure_queue(&queue, &change).await?.into(),
    ))
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
    Ok(Json(state.client.pause_queue(&queue).await?.into()))
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
    Ok(Json(state.client.resume_queue(&queue).await?.into()))
}
