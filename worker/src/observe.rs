//! The worker's small HTTP listener (`CONVEYOR_WORKER_METRICS_ADDR`):
//! `GET /metrics` in Prometheus text and `GET /health`.

use std::future::Future;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;

/// The listener's routes.
pub fn router() -> Router {
    let handle = conveyor::metrics::install();
    Router::new()
        .route("/metrics", get(move || std::future::ready(handle.render())))
        .route(
            "/health",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
}

/// Serves [`router`] on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router())
        .with_graceful_shutdown(shutdown)
        .await
}
