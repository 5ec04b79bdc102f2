//! Liveness and readiness.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::state::AppState;
use crate::views::{Health, Readiness};

/// How long readiness waits for each dependency.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
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
    // The causes go to the log, not to callers, who need not be
    // authenticated: error texts can name hosts, users and versions.
    let postgres = describe("postgres", postgres.map(|r| r.map_err(|e| e.to_string())));
    let redis = describe("redis", redis.map(|r| r.map_err(|e| e.to_string())));
    let failed: Vec<String> = [("postgres", &postgres), ("redis", &redis)]
        .into_iter()
        .filter(|(_, state)| state.as_str() != "ok")
        .map(|(name, state)| format!("{name} is {state}"))
        .collect();
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

/// `ok`, `unavailable` or `timed out`; the error itself is logged.
fn describe(
    dependency: &str,
    outcome: Result<Result<(), String>, tokio::time::error::Elapsed>,
) -> String {
    match outcome {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(err)) => {
            tracing::warn!(event = "not_ready", dependency, error = %err, "readiness check failed");
            "unavailable".to_owned()
        }
        Err(_) => {
            tracing::warn!(event = "not_ready", dependency, "readiness check timed out");
            "timed out".to_owned()
        }
    }
}
