//! Operating queues and jobs over HTTP: queue settings, pause and resume,
//! attempt history, progress, bulk actions, and the created-at filters.

use std::time::Duration;

use conveyor::{ClaimToken, Fence, JobId, Store, WorkerId};
use serde_json::{Value, json};

use crate::support::{TestApp, assert_problem, into_parts};

async fn patch(app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    let response = app
        .client
        .patch(app.url(path))
        .json(body)
        .send()
        .await
        .expect("send");
    into_parts(response).await
}

#[tokio::test]
async fn queues_are_listed_with_their_settings_and_can_be_paused_configured_and_resumed() {
    let app = TestApp::start().await;
    app.create(json!({"payload": {}, "queue": "mail"})).await;

    let (status, listed) = app.get("/queues").await;
    assert_eq!(status, 200, "{listed}");
    let mail = listed["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .find(|queue| queue["name"] == "mail")
        .expect("mail listed")
        .clone();
    assert_eq!(mail["settings"]["paused"], false);
    assert_eq!(mail["settings"]["concurrency_limit"], Value::Null);
    assert_eq!(mail["ready_total"], 1);

    let (status, paused) = app.post("/queues/mail/pause").await;
    assert_eq!((status, &paused["paused"]), (200, &json!(true)), "{paused}");

    let (status, set) = patch(
        &app,
        "/queues/mail",
        &json!({"concurrency_limit": 3, "rate_limit": 2.5, "retain_completed_secs": 0}),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(
        (
            &set["paused"],
            &set["concurrency_limit"],
            &set["rate_limit"],
            &set["retain_completed_secs"]
        ),
        (&json!(true), &json!(3), &json!(2.5), &json!(0))
    );
    let (status, burst) = patch(&app, "/queues/mail", &json!({"rate_burst": 1e6})).await;
    assert_eq!(
        (status, &burst["rate_burst"]),
        (200, &json!(1_000_000)),
        "{burst}"
    );
    let (_, cleared) = patch(&app, "/queues/mail", &json!({"concurrency_limit": null})).await;
    assert_eq!(
        (&cleared["concurrency_limit"], &cleared["rate_limit"]),
        (&Value::Null, &json!(2.5))
    );

    // A queue configured before it has any job is listed too.
    let (status, _) = app.post("/queues/reports/pause").await;
    assert_eq!(status, 200);
    let (_, listed) = app.get("/queues").await;
    let names: Vec<&str> = listed["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .filter_map(|queue| queue["name"].as_str())
        .collect();
    assert!(names.contains(&"reports"), "{names:?}");

    let (status, resumed) = app.post("/queues/mail/resume").await;
    assert_eq!((status, &resumed["paused"]), (200, &json!(false)));
}

#[tokio::test]
async fn bad_queue_settings_are_refused_naming_the_field() {
    let app = TestApp::start().await;
    let cases = [
        (json!({"concurrency_limit": 0}), "concurrency_limit"),
        (json!({"concurrency_limit": 1.5}), "concurrency_limit"),
        (json!({"concurrency_limit": "3"}), "concurrency_limit"),
        (json!({"rate_limit": -1}), "rate_limit"),
        (json!({"rate_limit": 1e300}), "rate_limit"),
        (json!({"rate_limit": 1e-17}), "rate_limit"),
        (json!({"rate_burst": 99999999999_i64}), "rate_burst"),
        (json!({"retain_failed_secs": -5}), "retain_failed_secs"),
        (json!({"paused": "yes"}), "paused"),
        (json!({"pasued": true}), "pasued"),
    ];
    for (body, field) in cases {
        let (status, problem) = patch(&app, "/queues/mail", &body).await;
        assert_problem(status, &problem, 422, "invalid_field");
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
    let (status, problem) = patch(&app, "/queues/mail", &json!([1])).await;
    assert_eq!(status, 422, "{problem}");
    let (status, problem) = app.post("/queues/Not%20A%20Queue/pause").await;
    assert_problem(status, &problem, 422, "invalid_field");
    assert_eq!(problem["field"], "queue");
    let (status, problem) = app.post("/queues/%FF/pause").await;
    assert_problem(status, &problem, 422, "invalid_field");
}

#[tokio::test]
async fn attempts_and_progress_are_shown_and_a_retry_keeps_the_history() {
    let app = TestApp::start().await;
    let job = app.create(json!({"payload": {}, "max_attempts": 1})).await;
    let id: JobId = job["id"].as_str().expect("id").parse().expect("uuid");
    let (status, none) = app.get(&format!("/jobs/{id}/attempts")).await;
    assert_eq!(
        (status, none["items"].as_array().map(Vec::len)),
        (200, Some(0))
    );

    let store = Store::new(app.db.conn.clone());
    let worker = WorkerId::new("w1");
    let token = ClaimToken::new();
    let running = store
        .claim(id, &worker, token, Duration::from_secs(30))
        .await
        .expect("claim")
        .won()
        .expect("claimed");
    store
        .heartbeat_reporting(
            &worker,
            &[(id, token, Some(json!({"pct": 40})))],
            Duration::from_secs(30),
        )
        .await
        .expect("beat");
    let (_, shown) = app.get(&format!("/jobs/{id}")).await;
    assert_eq!(shown["progress"], json!({"pct": 40}));
    let (_, attempts) = app.get(&format!("/jobs/{id}/attempts")).await;
    assert_eq!(attempts["items"][0]["outcome"], "running", "{attempts}");
    assert_eq!(attempts["items"][0]["ended_at"], Value::Null);

    store
        .fail(&Fence::of(&running, &worker), "bad input")
        .await
        .expect("fail");
    let (status, _) = app.post(&format!("/jobs/{id}/retry")).await;
    assert_eq!(status, 200);
    let (_, attempts) = app.get(&format!("/jobs/{id}/attempts")).await;
    let items = attempts["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{attempts}");
    assert_eq!(
        (
            &items[0]["attempt"],
            &items[0]["outcome"],
            &items[0]["error"],
            &items[0]["worker_id"]
        ),
        (
            &json!(1),
            &json!("failed"),
            &json!("bad input"),
            &json!("w1")
        )
    );
    assert!(items[0]["duration_ms"].as_i64().is_some_and(|ms| ms >= 0));

    let unknown = JobId::new();
    let (status, problem) = app.get(&format!("/jobs/{unknown}/attempts")).await;
    assert_problem(status, &problem, 404, "job_not_found");
    let (status, problem) = app.get("/jobs/nope/attempts").await;
    assert_problem(status, &problem, 422, "invalid_field");
}

#[tokio::test]
async fn bulk_actions_change_matching_jobs_up_to_the_limit_and_say_how_many() {
    let app = TestApp::start().await;
    for _ in 0..3 {
        app.create(json!({"payload": {}, "queue": "a"})).await;
    }
    app.create(json!({"payload": {}, "queue": "b"})).await;

    let (status, done) = app
        .post_json("/jobs/cancel", &json!({"queue": "a", "limit": 2}))
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        (&done["changed"], &done["canceled"], &done["more"]),
        (&json!(2), &json!(2), &json!(true))
    );
    let (_, done) = app.post_json("/jobs/cancel", &json!({"queue": "a"})).await;
    assert_eq!(
        (&done["changed"], &done["more"]),
        (&json!(1), &json!(false))
    );
    assert!(app.ready_ids("a", 0).is_empty(), "canceled ids leave Redis");
    assert_eq!(app.ready_ids("b", 0).len(), 1, "queue b untouched");

    let (status, done) = app
        .post_json("/jobs/retry", &json!({"status": "canceled"}))
        .await;
    assert_eq!((status, &done["changed"]), (200, &json!(3)), "{done}");
    assert_eq!(app.ready_ids("a", 0).len(), 3, "retried jobs are published");

    // Created-at filters: nothing was created before 2000.
    let (_, done) = app
        .post_json(
            "/jobs/cancel",
            &json!({"created_before": "2000-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(done["changed"], 0, "{done}");
    let (status, page) = app
        .get("/jobs?created_after=2000-01-01T00:00:00Z&queue=a")
        .await;
    assert_eq!((status, &page["count"]), (200, &json!(3)), "{page}");
    let (_, page) = app
        .get("/jobs?created_before=2000-01-01T00:00:00%2B02:00")
        .await;
    assert_eq!(page["count"], 0, "{page}");

    for (body, field) in [
        (json!({"stauts": "failed"}), None),
        (json!({}), None),
        (json!({"limit": 5}), None),
        (json!({"status": "completed"}), Some("status")),
        (json!({"queue": "a", "limit": 0}), Some("limit")),
        (json!({"queue": "a", "limit": 10001}), Some("limit")),
        (json!({"created_after": "yesterday"}), Some("created_after")),
        (json!({"queue": "Bad Queue"}), Some("queue")),
    ] {
        let (status, problem) = app.post_json("/jobs/retry", &body).await;
        assert_problem(status, &problem, 422, "invalid_field");
        if let Some(field) = field {
            assert_eq!(problem["field"], field, "{body}: {problem}");
        }
    }
    for instant in [
        "2016-12-31T23:59:60Z",
        "0000-06-01T00:00:00Z",
        "9999-12-31T23:00:00-05:00",
    ] {
        let (status, problem) = app.get(&format!("/jobs?created_before={instant}")).await;
        assert_problem(status, &problem, 422, "invalid_field");
        assert_eq!(problem["field"], "created_before", "{instant}");
    }
    let (status, problem) = app.get("/jobs?created_before=soon").await;
    assert_problem(status, &problem, 422, "invalid_field");
    assert_eq!(problem["field"], "created_before");
}
