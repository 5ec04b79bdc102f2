//! Attempt spans: the first attempt's is a child of the job's trace
//! context, each later one starts a trace linked to it, and a handler sees
//! its attempt's context.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use conveyor::JobStatus;
use conveyor::trace::{TraceParent, Traces};
use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::json;

use crate::support::{Harness, id, job};

const GIVEN: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// An in-memory exporter, and its provider (dropping the provider shuts
/// its tracers down).
fn in_memory() -> (InMemorySpanExporter, SdkTracerProvider) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    (exporter, provider)
}

/// The attempt spans exported so far, by attempt.
fn attempt_spans(exporter: &InMemorySpanExporter) -> Vec<SpanData> {
    let mut spans: Vec<SpanData> = exporter
        .get_finished_spans()
        .expect("spans")
        .into_iter()
        .filter(|span| span.span_kind == SpanKind::Consumer)
        .collect();
    let attempt = |span: &SpanData| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == "conveyor.job.attempt")
            .map(|kv| kv.value.to_string())
    };
    spans.sort_by_key(attempt);
    spans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_attempt_is_a_child_of_the_jobs_context_and_later_ones_link_to_it() {
    let h = Harness::new().await;
    let (exporter, provider) = in_memory();
    let seen: Arc<Mutex<Vec<TraceParent>>> = Arc::default();
    let mut registry = worker::builtin_registry();
    let handed = seen.clone();
    registry.register(
        "flaky",
        move |_payload: serde_json::Value, ctx: worker::Context| {
            let handed = handed.clone();
            async move {
                handed.lock().expect("lock").push(ctx.traceparent);
                if ctx.attempt < 2 {
                    Err(worker::JobError::retryable("not yet"))
                } else {
                    Ok(json!({}))
                }
            }
        },
    );
    let worker = h.spawn_traced(h.settings("w"), registry, Traces::with_provider(&provider));
    let given = TraceParent::parse(GIVEN).expect("valid");
    let mut new = job("flaky", json!({}));
    new.traceparent = Some(given);
    let created = h.submit(new).await;
    h.wait_for(id(&created), JobStatus::Completed, Duration::from_secs(10))
        .await;
    worker.stop().await;

    let spans = attempt_spans(&exporter);
    assert_eq!(spans.len(), 2, "{spans:?}");
    let (first, second) = (&spans[0], &spans[1]);
    assert_eq!(first.name, "process default");
    assert_eq!(first.span_context.trace_id(), given.trace_id());
    assert_eq!(first.parent_span_id, given.span_id());
    assert!(
        matches!(first.status, Status::Error { .. }),
        "{:?}",
        first.status
    );

    assert_ne!(second.span_context.trace_id(), given.trace_id());
    assert_eq!(second.parent_span_id, SpanId::INVALID);
    let links: Vec<_> = second
        .links
        .iter()
        .map(|link| link.span_context.clone())
        .collect();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].trace_id(), given.trace_id());
    assert_eq!(links[0].span_id(), given.span_id());
    assert_eq!(second.status, Status::Ok);

    // Each attempt's handler saw its own span's context.
    let handed = seen.lock().expect("lock").clone();
    assert_eq!(
        handed,
        vec![
            TraceParent::of_span(&first.span_context),
            TraceParent::of_span(&second.span_context)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_export_off_a_handler_sees_the_jobs_own_context() {
    let h = Harness::new().await;
    let seen: Arc<Mutex<Vec<TraceParent>>> = Arc::default();
    let mut registry = worker::builtin_registry();
    let handed = seen.clone();
    registry.register(
        "look",
        move |_payload: serde_json::Value, ctx: worker::Context| {
            let handed = handed.clone();
            async move {
                handed.lock().expect("lock").push(ctx.traceparent);
                Ok::<_, worker::JobError>(json!({}))
            }
        },
    );
    let worker = h.spawn(h.settings("w"), registry);
    let created = h.submit(job("look", json!({}))).await;
    h.wait_for(id(&created), JobStatus::Completed, Duration::from_secs(10))
        .await;
    worker.stop().await;
    assert_eq!(
        seen.lock().expect("lock").clone(),
        vec![TraceParent::for_job(id(&created))]
    );
}
