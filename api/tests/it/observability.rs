//! `/metrics` and `/queues` report what happened.

use conveyor::broker::WorkerInfo;
use serde_json::json;

use testkit::prometheus::sample;

use crate::support::TestApp;

#[tokio::test]
async fn metrics_count_jobs_requests_and_queue_depth() {
    let app = TestApp::start().await;
    let queue = format!("obs-{}", &app.redis.prefix[6..]);
    for priority in [0, 0, 4] {
        app.create(json!({"payload": {}, "queue": queue, "priority": priority}))
            .await;
    }
    app.create(json!({"payload": {}, "queue": queue, "delay_seconds": 60}))
        .await;
    let (status, _) = app
        .post_json(
            "/jobs",
            &json!({"payload": {}, "queue": queue, "priority": 99}),
        )
        .await;
    assert_eq!(status, 422);

    let response = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("text");
    let enqueued = sample(
        &text,
        "conveyor_jobs_enqueued_total",
        &[("queue", &queue), ("type", "demo")],
    );
    assert_eq!(enqueued, Some(4.0), "{text}");
    for (lane, priority, want) in [
        ("ready", Some("0"), 2.0),
        ("ready", Some("4"), 1.0),
        ("delayed", None, 1.0),
    ] {
        let mut labels = vec![("queue", queue.as_str()), ("lane", lane)];
        if let Some(priority) = priority {
            labels.push(("priority", priority));
        }
        assert_eq!(
            sample(&text, "conveyor_queue_depth", &labels),
            Some(want),
            "{lane} {priority:?}"
        );
    }
    let created = sample(
        &text,
        "conveyor_http_requests_total",
        &[("route", "/jobs"), ("method", "POST"), ("status", "201")],
    );
    assert!(created.is_some_and(|n| n >= 4.0), "{created:?}");
    let refused = sample(
        &text,
        "conveyor_http_requests_total",
        &[("route", "/jobs"), ("method", "POST"), ("status", "422")],
    );
    assert!(refused.is_some_and(|n| n >= 1.0));
    assert!(text.contains("conveyor_http_request_duration_seconds_bucket"));
    assert!(
        !text.contains(&app.redis.prefix),
        "no ids or prefixes in labels"
    );
}

#[tokio::test]
async fn queues_list_live_workers_with_their_details() {
    let app = TestApp::start().await;
    let broker = crate::support::broker_for(&app.redis, 2);
    let info = WorkerInfo {
        id: "host-a-123-abc".to_owned(),
        host: "host-a".to_owned(),
        pid: 123,
        queues: vec!["critical".to_owned(), "default".to_owned()],
        concurrency: 8,
        started_at: "2026-01-01T00:00:00+00:00".to_owned(),
        running: 3,
        heartbeat: std::time::Duration::from_secs(3),
    };
    broker
        .heartbeat(&info, std::time::Duration::from_secs(30))
        .await
        .expect("heartbeat");
    let (status, body) = app.get("/queues").await;
    assert_eq!(status, 200, "{body}");
    let worker = &body["workers"][0];
    assert_eq!(worker["id"], "host-a-123-abc");
    assert_eq!(worker["host"], "host-a");
    assert_eq!(worker["pid"], 123);
    assert_eq!(worker["queues"], json!(["critical", "default"]));
    assert_eq!(worker["concurrency"], 8);
    assert_eq!(worker["running"], 3);
    assert!(
        worker["last_heartbeat"]
            .as_str()
            .is_some_and(|at| at.starts_with("20"))
    );
}
