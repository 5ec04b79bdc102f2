//! Liveness and readiness.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;

use crate::error::ApiError;
use crate::state::AppState;
use crate::views::{Health, Readiness};

/// How long readiness waits for each dependency.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
}

/// The process is up and serving requests.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
    })
}

/// PostgreSQL and Redis both answer; 503 names the one that does not.
#[utoipa::path(get, path = "/ready", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "A dependency is down", body = crate::error::Problem),
    ))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    let (postgres, redis) = tokio::join!(
        tokio::time::timeout(CHECK_TIMEOUT, state.store.ping()),
        tokio::time::timeout(CHECK_TIMEOUT, state.broker.ping()),
    );
    let postgres = describe(
        postgres
            .map_err(|_| "timed out".to_owned())
            .and_then(|r| r.map_err(|e| e.to_string())),
    );
    let redis = describe(
        redis
            .map_err(|_| "timed out".to_owned())
            .and_then(|r| r.map_err(|e| e.to_string())),
    );
    let mut failed = Vec::new();
    if postgres != "ok" {
        failed.push(format!("postgres: {postgres}"));
    }
    if redis != "ok" {
        failed.push(format!("redis: {redis}"));
    }
    if failed.is_empty() {
        Ok(Json(Readiness {
            status: "ready".to_owned(),
            postgres,
            redis,
        }))
    } else {
        Err(ApiError::Unavailable {
            code: "not_ready",
            detail: format!("not ready: {}", failed.join("; ")),
        })
    }
}

fn describe(outcome: Result<(), String>) -> String {
    match outcome {
        Ok(()) => "ok".to_owned(),
        Err(err) => format!("unavailable ({err})"),
    }
}
