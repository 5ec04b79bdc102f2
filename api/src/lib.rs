//! Conveyor's HTTP API: submit, inspect, cancel and retry jobs.
//!
//! Jobs are written to PostgreSQL through [`conveyor::Store`] and, once
//! committed, their ids are published to Redis through [`conveyor::Broker`].
//! Every error is an RFC 9457 problem document with a stable `code`; no
//! request can cause a 500 by its shape.
//!
//! # Layout
//! - [`state`]: what handlers share ([`AppState`]).
//! - [`error`]: [`ApiError`], the one place that picks status codes.
//! - [`extract`]: request body and parameter parsing that fails as problems.
//! - [`views`]: the JSON shapes of responses.
//! - [`routes`]: the handlers, one module per resource.
//! - [`auth`]: the optional bearer token.
//! - [`openapi`]: the OpenAPI document and the `/docs` page.

pub mod auth;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod routes;
pub mod state;
pub mod views;

use std::future::Future;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;

pub use error::ApiError;
pub use state::{AppState, Settings};

/// Every route, with the body limit, authentication and panic guard applied.
pub fn router(state: AppState) -> Router {
    let protected = routes::jobs::router()
        .merge(routes::batch::router())
        .merge(routes::queues::router())
        .merge(openapi::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    conveyor::metrics::install();
    Router::new()
        .merge(protected)
        .merge(routes::health::router())
        .merge(routes::metrics::router())
        .route_layer(axum::middleware::from_fn(routes::metrics::track))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            error::panic_response,
        ))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes, then finishes
/// the requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
