//! Queue state as Redis sees it.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use conveyor::job::PRIORITY_RANGE;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_queues))
}

/// One queue's backlog.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueView {
    pub name: String,
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

/// Per queue: ready ids per priority lane, delayed ids, ids in flight and
/// running jobs; and the live workers.
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
    let mut names = state.broker.known_queues().await.map_err(redis_down)?;
    let running = state.store.running_by_queue().await?;
    for queue in running.keys() {
        if !names.contains(queue) {
            names.push(queue.clone());
        }
    }
    names.sort();

    let all_depths = state
        .broker
        .queue_depths_of(&names)
        .await
        .map_err(redis_down)?;
    let mut queues = Vec::with_capacity(names.len());
    for (name, depths) in names.into_iter().zip(all_depths) {
        let ready: BTreeMap<i16, u64> = PRIORITY_RANGE.zip(depths.ready.iter().copied()).collect();
        let running = running.get(&name).copied().unwrap_or_default();
        queues.push(QueueView {
            ready_total: ready.values().sum(),
            delayed: depths.delayed,
            in_flight: depths.processing,
            ready,
            running,
            name,
        });
    }

    let workers = state
        .broker
        .workers()
        .await
        .map_err(redis_down)?
        .into_iter()
        .map(|(id, last_heartbeat_ms, details)| WorkerView {
            id,
            host: details.get("host").cloned(),
            pid: details.get("pid").and_then(|pid| pid.parse().ok()),
            queues: details
                .get("queues")
                .map(|queues| queues.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
            concurrency: details.get("concurrency").and_then(|c| c.parse().ok()),
            running: details.get("running").and_then(|r| r.parse().ok()),
            started_at: details.get("started_at").cloned(),
            last_heartbeat: chrono::DateTime::from_timestamp_millis(last_heartbeat_ms)
                .map(|at| at.to_rfc3339())
                .unwrap_or_default(),
        })
        .collect();
    Ok(Json(Queues { queues, workers }))
}
