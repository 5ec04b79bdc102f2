//! `GET /metrics` (Prometheus text) and the request-metrics middleware.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use conveyor::job::PRIORITY_RANGE;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// Metrics in the Prometheus text format. Queue depths are read from Redis
/// at scrape time; if Redis is down the last values are served.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text exposition format",
        body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    if let Err(err) = refresh_queue_depths(&state).await {
        tracing::debug!(error = %err, "queue depths not refreshed");
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        conveyor::metrics::install().render(),
    )
        .into_response()
}

async fn refresh_queue_depths(state: &AppState) -> Result<(), conveyor::BrokerError> {
    let broker = &state.broker;
    for queue in broker.known_queues().await? {
        let depths = broker.queue_depths(&queue).await?;
        for (priority, depth) in PRIORITY_RANGE.zip(depths.ready.iter().copied()) {
            conveyor::metrics::queue_depth(&queue, "ready", Some(priority), depth);
        }
        conveyor::metrics::queue_depth(&queue, "delayed", None, depths.delayed);
        conveyor::metrics::queue_depth(&queue, "processing", None, depths.processing);
    }
    Ok(())
}

/// Counts every routed request by its route template, method and status.
pub async fn track(matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let route = matched.map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method: &'static str = match request.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    let started = Instant::now();
    let response = next.run(request).await;
    conveyor::metrics::http_request(
        &route,
        method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
