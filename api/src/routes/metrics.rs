//! `GET /metrics` (Prometheus text) and the request-metrics middleware.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use conveyor::broker::QueueDepths;
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

/// Reads the depths of the queues workers serve (their labels reserved,
/// so client-chosen names cannot crowd them out) and of up to
/// [`conveyor::metrics::max_label_values`] others (and those the last
/// scrape reported), in a few round trips
/// whatever the size of the set or the keyspace; `conveyor_queues_known`
/// says how many queues there are. Queues whose label is folded share the
/// `_other` series, their depths summed; a queue no longer read (it went
/// idle and left the set) has its series set to 0 rather than left at its
/// last value.
async fn refresh_queue_depths(state: &AppState) -> Result<(), conveyor::BrokerError> {
    let broker = &state.broker;
    conveyor::metrics::queues_known(broker.known_queue_count().await?);
    // One scrape at a time: each reads what the last one reported.
    let mut reported = state.reported_queues.lock().await;
    let mut queues = broker.served_queues().await?;
    conveyor::metrics::reserve_queue_labels(&queues);
    queues.extend(
        broker
            .some_known_queues(conveyor::metrics::max_label_values())
            .await?,
    );
    // Queues reported last time are read again, so one that merely fell
    // out of this scan step keeps its depth (one that is gone reads 0).
    queues.extend(
        reported
            .iter()
            .filter(|label| label.as_str() != conveyor::metrics::OTHER_LABEL)
            .cloned(),
    );
    queues.sort_unstable();
    queues.dedup();
    let depths = broker.queue_depths_of(&queues).await?;
    let mut by_label: BTreeMap<String, QueueDepths> = BTreeMap::new();
    for (queue, depths) in queues.iter().zip(depths) {
        let sum = by_label
            .entry(conveyor::metrics::queue_label(queue))
            .or_insert_with(|| QueueDepths {
                ready: vec![0; depths.ready.len()],
                ..QueueDepths::default()
            });
        for (total, lane) in sum.ready.iter_mut().zip(&depths.ready) {
            *total += lane;
        }
        sum.delayed += depths.delayed;
        sum.processing += depths.processing;
    }
    for gone in reported
        .iter()
        .filter(|label| !by_label.contains_key(*label))
    {
        set_depths(gone, &QueueDepths::default());
    }
    for (label, depths) in &by_label {
        set_depths(label, depths);
    }
    *reported = by_label.into_keys().collect();
    Ok(())
}

fn set_depths(label: &str, depths: &QueueDepths) {
    for priority in PRIORITY_RANGE {
        let depth = usize::try_from(priority)
            .ok()
            .and_then(|lane| depths.ready.get(lane))
            .copied()
            .unwrap_or_default();
        conveyor::metrics::queue_depth(label, "ready", Some(priority), depth);
    }
    conveyor::metrics::queue_depth(label, "delayed", None, depths.delayed);
    conveyor::metrics::queue_depth(label, "processing", None, depths.processing);
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
