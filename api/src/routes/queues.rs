//! Queue state as Redis sees it.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use conveyor::job::PRIORITY_RANGE;
use redis::AsyncCommands;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/queues", get(list_queues))
}

/// One queue's backlog.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueView {
    pub name: String,
    /// Ids waiting in each priority lane, by priority.
    pub ready: BTreeMap<i16, u64>,
    pub ready_total: u64,
    /// Ids due later (scheduled jobs and retries).
    pub delayed: u64,
    /// Jobs running now, from PostgreSQL.
    pub running: i64,
}

/// A worker seen in the registry.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkerView {
    pub id: String,
    /// Milliseconds since the Unix epoch.
    pub last_heartbeat_ms: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Queues {
    pub queues: Vec<QueueView>,
    pub workers: Vec<WorkerView>,
}

/// Per queue: ready ids per priority lane, delayed ids and running jobs; and
/// the workers that have registered.
#[utoipa::path(get, path = "/queues", tag = "queues",
    responses(
        (status = 200, description = "Queue state", body = Queues),
        (status = 503, description = "Redis or PostgreSQL unavailable", body = crate::error::Problem),
    ))]
pub async fn list_queues(State(state): State<AppState>) -> Result<Json<Queues>, ApiError> {
    let redis_down = |err: conveyor::BrokerError| ApiError::Unavailable {
        code: "redis_unavailable",
        detail: format!("Redis is unavailable: {err}"),
    };
    let keys = state.broker.keys().clone();
    let mut conn = state.broker.connection().await.map_err(redis_down)?;
    let mut names: Vec<String> = conn
        .smembers(keys.queues())
        .await
        .map_err(|err| redis_down(err.into()))?;
    let counts = state.store.count_by_queue_and_status().await?;
    for count in &counts {
        if !names.contains(&count.queue) {
            names.push(count.queue.clone());
        }
    }
    names.sort();

    let mut queues = Vec::new();
    for name in names {
        let mut pipe = redis::pipe();
        for priority in PRIORITY_RANGE {
            pipe.llen(keys.ready(&name, priority));
        }
        pipe.zcard(keys.delayed(&name));
        let depths: Vec<u64> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|err| redis_down(err.into()))?;
        let ready: BTreeMap<i16, u64> = PRIORITY_RANGE.zip(depths.iter().copied()).collect();
        let running = counts
            .iter()
            .filter(|c| c.queue == name && c.status == "running")
            .map(|c| c.count)
            .sum();
        queues.push(QueueView {
            ready_total: ready.values().sum(),
            delayed: depths.last().copied().unwrap_or_default(),
            ready,
            running,
            name,
        });
    }

    let workers: Vec<(String, f64)> = conn
        .zrange_withscores(keys.workers(), 0, -1)
        .await
        .map_err(|err| redis_down(err.into()))?;
    let workers = workers
        .into_iter()
        .map(|(id, score)| WorkerView {
            id,
            last_heartbeat_ms: score as i64,
        })
        .collect();
    Ok(Json(Queues { queues, workers }))
}
