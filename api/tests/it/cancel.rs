//! `POST /jobs/{id}/cancel` and `POST /jobs/{id}/retry`.

use std::time::Duration;

use conveyor::{JobId, Store, WorkerId};
use serde_json::json;

use crate::support::{TestApp, assert_problem};

#[tokio::test]
async fn a_waiting_job_is_canceled_and_a_second_cancel_conflicts() {
    let app = TestApp::start().await;
    let job = app
        .create(json!({"payload": {}, "delay_seconds": 60}))
        .await;
    let id = job["id"].as_str().expect("id");
    let (status, canceled) = app.post(&format!("/jobs/{id}/cancel")).await;
    assert_eq!(
        (status, canceled["status"].as_str()),
        (200, Some("canceled"))
    );
    assert!(canceled["canceled_at"].is_string());
    let (status, problem) = app.post(&format!("/jobs/{id}/cancel")).await;
    assert_problem(status, &problem, 409, "job_not_cancelable");
}

#[tokio::test]
async fn a_running_job_is_asked_to_stop_and_workers_are_notified() {
    let app = TestApp::start().await;
    let job = app.create(json!({"payload": {}})).await;
    let id: JobId = job["id"].as_str().expect("id").parse().expect("uuid");
    let store = Store::new(app.db.conn.clone());
    store
        .claim(
            id,
            &WorkerId::new("w1"),
            conveyor::ClaimToken::new(),
            Duration::from_secs(30),
        )
        .await
        .expect("claim")
        .won()
        .expect("claimed");

    let mut notices = crate::support::broker_for(&app.redis, 1)
        .subscribe_cancels()
        .await
        .expect("subscribe");

    let (status, body) = app.post(&format!("/jobs/{id}/cancel")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "running");
    assert_eq!(body["cancel_requested"], true);

    let message = tokio::time::timeout(Duration::from_secs(5), notices.next())
        .await
        .expect("notification within 5 s")
        .expect("message");
    assert_eq!(message, id.to_string());

    // Asking again is still 202: the request stands.
    let (status, _) = app.post(&format!("/jobs/{id}/cancel")).await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn cancel_and_retry_of_an_unknown_or_malformed_id() {
    let app = TestApp::start().await;
    for action in ["cancel", "retry"] {
        let (status, problem) = app
            .post(&format!(
                "/jobs/01a20568-a767-77b0-935f-39c0385d3eb6/{action}"
            ))
            .await;
        assert_problem(status, &problem, 404, "job_not_found");
        let (status, problem) = app.post(&format!("/jobs/xyz/{action}")).await;
        assert_problem(status, &problem, 422, "invalid_field");
    }
}

#[tokio::test]
async fn retry_requeues_failed_and_canceled_jobs_only() {
    let app = TestApp::start().await;
    let job = app
        .create(json!({"payload": {}, "delay_seconds": 60}))
        .await;
    let id = job["id"].as_str().expect("id");
    let (status, problem) = app.post(&format!("/jobs/{id}/retry")).await;
    assert_problem(status, &problem, 409, "job_not_retryable");

    assert_eq!(app.post(&format!("/jobs/{id}/cancel")).await.0, 200);
    let (status, requeued) = app.post(&format!("/jobs/{id}/retry")).await;
    assert_eq!(status, 200, "{requeued}");
    assert_eq!(requeued["status"], "queued");
    assert_eq!(requeued["attempts"], 0);
    assert_eq!(
        app.ready_ids("default", 0),
        [id],
        "requeued jobs are published"
    );
}
