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
//! - [`auth`]: the optional bearer token, and the cross-site form check.
//! - [`openapi`]: the OpenAPI document and the `/docs` page.
//! - [`serve`]: the server: connection limits, timeouts, shutdown.
//! - [`ui`]: the web dashboard under `/ui`.

pub mod auth;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod routes;
pub mod serve;
pub mod state;
pub mod ui;
pub mod views;

use std::future::Future;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use utoipa_axum::router::OpenApiRouter;

pub use error::ApiError;
pub use state::{AppState, Settings};

/// Every route, with the body limit, authentication, timeouts, the limit
/// on requests in flight and the panic guard applied.
pub fn router(state: AppState) -> Router {
    let limits = state.settings.limits.clone();
    let (protected, protected_doc) = OpenApiRouter::new()
        .merge(routes::jobs::router())
        .merge(routes::attempts::router())
        .merge(routes::bulk::router())
        .merge(routes::schedules::router())
        .merge(routes::list::router())
        .merge(routes::batch::router())
        .merge(routes::summary::router())
        .merge(routes::queues::router())
        .split_for_parts();
    let (workers, workers_doc) = OpenApiRouter::new()
        .merge(routes::remote::router())
        .split_for_parts();
    let (public, public_doc) = OpenApiRouter::new()
        .merge(routes::health::router())
        .merge(routes::metrics::router())
        .split_for_parts();
    let document = openapi::document(
        openapi::Parts {
            protected: protected_doc,
            workers: workers_doc,
            public: public_doc,
        },
        state.settings.api_token.is_some(),
        state.settings.worker_token.is_some() || state.settings.api_token.is_some(),
    );
    let workers = workers.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::require_worker_token,
    ));
    let protected =
        protected
            .merge(openapi::router(document))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                auth::require_token,
            ));
    conveyor::metrics::install();
    let routes = Router::new()
        .merge(protected)
        .merge(workers)
        .merge(public)
        .merge(ui::router(state.clone()))
        .route_layer(axum::middleware::from_fn(routes::metrics::track))
        .layer(axum::middleware::from_fn(auth::refuse_cross_site))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            limits.body_timeout,
        ))
        .with_state(state);
    // Around the whole router, not through `Router::layer`, which would
    // give each route a limit of its own.
    let limited = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(error::from_middleware))
        .load_shed()
        .concurrency_limit(limits.max_in_flight)
        .timeout(limits.request_timeout)
        .service(routes);
    Router::new()
        .fallback_service(limited)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            error::panic_response,
        ))
        // Outermost, so that every answer to a dashboard path (a load-shed
        // 503, a refused cross-site form, a panic) is a page.
        .layer(axum::middleware::from_fn(ui::dashboard_responses))
}

/// Serves the API on `listener` until `shutdown` completes, then gives the
/// requests in flight the shutdown grace period to finish
/// ([`serve::serve`]).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.settings.limits.clone();
    // Long-polling claims end their wait when shutdown starts, rather than
    // holding the grace period for up to their whole wait.
    let workers = state.workers.clone();
    let counting = tokio::spawn(workers.clone().count_ended());
    let shutdown = async move {
        shutdown.await;
        workers.stop_waiting();
    };
    let stopper = state.workers.clone();
    let served = serve::serve(listener, router(state), &limits, shutdown).await;
    // The last second's counts of remote workers' attempts (the wait is
    // ended here too, should serving have stopped on an error).
    stopper.stop_waiting();
    let _ = counting.await;
    served
}
