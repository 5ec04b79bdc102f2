//! Redis down: jobs are still accepted. PostgreSQL down: 503, never a 201.

use serde_json::json;

use testkit::LogCapture;

use crate::support::{Options, TestApp, assert_problem};

#[tokio::test(flavor = "current_thread")]
async fn with_redis_down_a_job_is_accepted_stored_and_a_warning_logged() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let app = TestApp::with(Options {
        redis_down: true,
        ..Options::default()
    })
    .await;
    let (status, job) = app.post_json("/jobs", &json!({"payload": {"k": 1}})).await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(app.row_count().await, 1, "the job is durable in PostgreSQL");
    let text = logs.text();
    let warning = text
        .lines()
        .find(|line| line.contains("job_enqueue_failed"))
        .unwrap_or_else(|| panic!("no enqueue warning in logs:\n{text}"));
    assert!(warning.contains("\"level\":\"WARN\""), "{warning}");
    assert!(warning.contains(job["id"].as_str().expect("id")));
    assert!(!text.contains("\"k\":1"), "payloads are never logged");
}

#[tokio::test]
async fn with_postgres_down_writes_are_503_and_nothing_is_promised() {
    let app = TestApp::with(Options {
        postgres_down: true,
        ..Options::default()
    })
    .await;
    let (status, problem) = app.post_json("/jobs", &json!({"payload": {}})).await;
    assert_problem(status, &problem, 503, "database_unavailable");
    let (status, problem) = app.get("/jobs").await;
    assert_problem(status, &problem, 503, "database_unavailable");
    let (status, problem) = app.get("/jobs/01a20568-a767-77b0-935f-39c0385d3eb6").await;
    assert_problem(status, &problem, 503, "database_unavailable");
}
