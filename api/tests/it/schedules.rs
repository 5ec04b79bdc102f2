//! `/schedules` over HTTP: create, read, change, pause, resume, trigger,
//! delete; bad input is a 422 naming the field.

use serde_json::{Value, json};

use crate::support::{TestApp, assert_problem, into_parts};

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app.client.request(method, app.url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    into_parts(request.send().await.expect("send")).await
}

fn nightly() -> Value {
    json!({
        "name": "nightly-report",
        "cron": "30 2 * * *",
        "timezone": "Europe/Berlin",
        "job": {"type": "demo", "queue": "default", "payload": {"report": "daily"}, "priority": 0}
    })
}

#[tokio::test]
async fn a_schedule_is_created_read_changed_paused_triggered_and_deleted() {
    let app = TestApp::start().await;
    let (status, created) = app.post_json("/schedules", &nightly()).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["next_tick"].as_str().map(|t| &t[11..16]),
        Some("02:30"),
        "{created}"
    );
    assert!(created["next_fire_at"].is_string());
    assert_eq!(
        (&created["missed"], &created["enabled"]),
        (&json!("skip"), &json!(true))
    );
    assert_eq!(created["job"]["max_attempts"], 4);

    let (status, again) = app.post_json("/schedules", &nightly()).await;
    assert_problem(status, &again, 409, "schedule_exists");

    let (status, shown) = app.get("/schedules/nightly-report").await;
    assert_eq!((status, &shown["cron"]), (200, &json!("30 2 * * *")));
    let (_, listed) = app.get("/schedules").await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));

    let (status, changed) = send(
        &app,
        reqwest::Method::PATCH,
        "/schedules/nightly-report",
        Some(json!({"cron": "0 6 * * MON-FRI", "missed": "once"})),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        changed["next_tick"].as_str().map(|t| &t[11..16]),
        Some("06:00")
    );
    assert_eq!(changed["missed"], "once");

    let (status, paused) = app.post("/schedules/nightly-report/pause").await;
    assert_eq!((status, &paused["enabled"]), (200, &json!(false)));
    let (status, resumed) = app.post("/schedules/nightly-report/resume").await;
    assert_eq!((status, &resumed["enabled"]), (200, &json!(true)));

    let (status, job) = app.post("/schedules/nightly-report/trigger").await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(
        (&job["schedule"], &job["payload"]),
        (&json!("nightly-report"), &json!({"report": "daily"}))
    );
    let (status, page) = app.get("/jobs?schedule=nightly-report").await;
    assert_eq!((status, &page["count"]), (200, &json!(1)), "{page}");
    let (_, none) = app.get("/jobs?schedule=other").await;
    assert_eq!(none["count"], 0);

    let (status, _) = send(
        &app,
        reqwest::Method::DELETE,
        "/schedules/nightly-report",
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, problem) = app.get("/schedules/nightly-report").await;
    assert_problem(status, &problem, 404, "schedule_not_found");
    let (status, problem) = app.post("/schedules/nightly-report/trigger").await;
    assert_problem(status, &problem, 404, "schedule_not_found");
}

#[tokio::test]
async fn bad_schedules_are_refused_naming_the_field() {
    let app = TestApp::start().await;
    let with = |change: Value| {
        let mut body = nightly();
        for (key, value) in change.as_object().expect("object") {
            body[key] = value.clone();
        }
        body
    };
    for (body, field) in [
        (with(json!({"cron": "61 * * * *"})), "cron"),
        (with(json!({"cron": "* * * *"})), "cron"),
        (with(json!({"cron": "every day"})), "cron"),
        (with(json!({"cron": "0 0 31 2 *"})), "cron"),
        (with(json!({"cron": "0 , * * *"})), "cron"),
        (with(json!({"timezone": "Mars/Olympus"})), "timezone"),
        (with(json!({"name": "Nightly Report"})), "name"),
        (with(json!({"job": {"type": "Bad Type"}})), "job.type"),
        (
            with(json!({"job": {"type": "demo", "priority": 12}})),
            "job.priority",
        ),
        (
            with(json!({"job": {"type": "demo", "payload": [1]}})),
            "job.payload",
        ),
        (with(json!({"max_catch_up": 0})), "max_catch_up"),
        (with(json!({"timzone": "UTC"})), "timzone"),
    ] {
        let (status, problem) = app.post_json("/schedules", &body).await;
        assert_problem(status, &problem, 422, "invalid_field");
        if field != "timzone" {
            assert_eq!(problem["field"], field, "{body}: {problem}");
        }
    }
    let (status, problem) = app
        .post_json("/schedules", &with(json!({"missed": "sometimes"})))
        .await;
    assert_eq!(status, 422, "{problem}");
    app.post_json("/schedules", &nightly()).await;
    let (status, problem) = send(
        &app,
        reqwest::Method::PATCH,
        "/schedules/nightly-report",
        Some(json!({"timezone": "Nowhere/Else"})),
    )
    .await;
    assert_problem(status, &problem, 422, "invalid_field");
    assert_eq!(problem["field"], "timezone");
    let (status, problem) = app.get("/schedules/BAD%20NAME").await;
    assert_problem(status, &problem, 422, "invalid_field");
    let (status, problem) = app.get("/jobs?schedule=BAD%20NAME").await;
    assert_problem(status, &problem, 422, "invalid_field");
    // A client's key cannot stand in for a tick's job.
    let (status, problem) = app
        .post_json(
            "/jobs",
            &json!({"type": "demo", "payload": {}, "idempotency_key": "schedule:nightly-report:2026-12-01T01:30:00Z"}),
        )
        .await;
    assert_problem(status, &problem, 422, "invalid_field");
    assert_eq!(problem["field"], "idempotency_key");
}
