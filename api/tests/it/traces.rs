//! Trace context: `POST /jobs` takes a W3C `traceparent`, the job keeps it
//! and `GET /jobs/{id}` shows it; with export on, each job is enqueued by a
//! span of its own under the caller's.

use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use serde_json::{Value, json};

use crate::support::{Options, TestApp};

const GIVEN: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn create_with(app: &TestApp, traceparent: Option<&str>, path: &str, body: Value) -> Value {
    let mut request = app.client.post(app.url(path)).json(&body);
    if let Some(value) = traceparent {
        request = request.header("traceparent", value);
    }
    let response = request.send().await.expect("send");
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.expect("json")
}

async fn shown(app: &TestApp, id: &str) -> String {
    let (status, job) = app.get(&format!("/jobs/{id}")).await;
    assert_eq!(status, 200);
    job["traceparent"].as_str().expect("traceparent").to_owned()
}

fn body() -> Value {
    json!({"type": "noop", "payload": {}})
}

#[tokio::test]
async fn a_given_traceparent_is_kept_and_shown_with_the_job() {
    let app = TestApp::start().await;
    let created = create_with(&app, Some(GIVEN), "/jobs", body()).await;
    assert_eq!(created["traceparent"], GIVEN);
    let id = created["id"].as_str().expect("id");
    assert_eq!(shown(&app, id).await, GIVEN);
}

#[tokio::test]
async fn without_a_valid_traceparent_a_job_starts_a_trace_named_by_its_id() {
    let app = TestApp::start().await;
    for header in [
        None,
        Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        Some("not a trace context"),
    ] {
        let created = create_with(&app, header, "/jobs", body()).await;
        let id = created["id"].as_str().expect("id");
        let simple = id.replace('-', "");
        let traceparent = shown(&app, id).await;
        assert_eq!(
            traceparent,
            format!("00-{simple}-{}-01", &simple[16..]),
            "{header:?}"
        );
    }
}

#[tokio::test]
async fn every_job_of_a_batch_carries_the_requests_traceparent() {
    let app = TestApp::start().await;
    let answer = create_with(
        &app,
        Some(GIVEN),
        "/jobs/batch",
        json!({"jobs": [body(), body()]}),
    )
    .await;
    for item in answer["items"].as_array().expect("items") {
        let id = item["job"]["id"].as_str().expect("id");
        assert_eq!(shown(&app, id).await, GIVEN);
    }
}

#[tokio::test]
async fn with_export_on_each_job_is_enqueued_by_a_span_under_the_callers() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let app = TestApp::with(Options {
        traces: conveyor::trace::Traces::with_provider(&provider),
        ..Options::default()
    })
    .await;
    let given = conveyor::trace::TraceParent::parse(GIVEN).expect("valid");

    let child = create_with(&app, Some(GIVEN), "/jobs", body()).await;
    let root = create_with(&app, None, "/jobs", body()).await;

    let spans = exporter.get_finished_spans().expect("spans");
    assert_eq!(spans.len(), 2, "{spans:?}");
    let (under_caller, own) = (&spans[0], &spans[1]);
    assert_eq!(under_caller.span_kind, SpanKind::Producer);
    assert_eq!(under_caller.name, "enqueue default");
    assert_eq!(under_caller.span_context.trace_id(), given.trace_id());
    assert_eq!(under_caller.parent_span_id, given.span_id());
    // The job carries the enqueue span's context, so its first attempt
    // hangs from that span.
    let carried = conveyor::trace::TraceParent::of_span(&under_caller.span_context);
    assert_eq!(child["traceparent"], carried.to_string());
    // Without a caller's context the enqueue span starts the trace.
    assert_eq!(own.parent_span_id, SpanId::INVALID);
    assert_ne!(own.span_context.trace_id(), TraceId::INVALID);
    let carried = conveyor::trace::TraceParent::of_span(&own.span_context);
    assert_eq!(root["traceparent"], carried.to_string());
}

#[tokio::test]
async fn a_traceparent_of_odd_bytes_or_given_twice_is_ignored_not_refused() {
    let app = TestApp::start().await;
    let odd = reqwest::header::HeaderValue::from_bytes(b"00-\xff\xfe-\x80").expect("obs-text");
    let requests = [
        app.client.post(app.url("/jobs")).header("traceparent", odd),
        app.client
            .post(app.url("/jobs"))
            .header("traceparent", GIVEN)
            .header("traceparent", GIVEN),
    ];
    for request in requests {
        let response = request.json(&body()).send().await.expect("send");
        assert_eq!(response.status().as_u16(), 201);
        let created: Value = response.json().await.expect("json");
        let id = created["id"].as_str().expect("id").replace('-', "");
        assert_eq!(
            created["traceparent"],
            format!("00-{id}-{}-01", &id[16..]),
            "the job starts a trace of its own"
        );
    }
}
