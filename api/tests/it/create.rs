//! `POST /jobs`: validation, idempotency, publishing, uploads, limits.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::Barrier;

use crate::support::{TestApp, assert_problem};

const DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

#[tokio::test]
async fn a_new_job_is_stored_then_published_to_its_ready_lane() {
    let app = TestApp::start().await;
    let response = app
        .client
        .post(app.url("/jobs"))
        .json(&json!({"payload": {"n": 1}, "type": "noop", "queue": "mail", "priority": 7}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let job: Value = response.json().await.expect("json");
    assert_eq!(
        location,
        format!("/jobs/{}", job["id"].as_str().expect("id"))
    );
    for (field, want) in [
        ("status", json!("queued")),
        ("type", json!("noop")),
        ("queue", json!("mail")),
        ("priority", json!(7)),
        ("attempts", json!(0)),
        ("max_attempts", json!(4)),
        ("timeout_seconds", json!(300)),
        ("payload", json!({"n": 1})),
        ("result", Value::Null),
        ("error_message", Value::Null),
    ] {
        assert_eq!(job[field], want, "{field}");
    }
    assert_eq!(app.ready_ids("mail", 7), [job["id"].as_str().expect("id")]);
    let (status, fetched) = app.get(&location).await;
    assert_eq!((status, &fetched["id"]), (200, &job["id"]));
}

#[tokio::test]
async fn defaults_fill_what_the_request_leaves_out() {
    let app = TestApp::start().await;
    let job = app.create(json!({"payload": {}})).await;
    assert_eq!(
        (job["type"].as_str(), job["queue"].as_str()),
        (Some("demo"), Some("default"))
    );
    assert_eq!(job["priority"], 0);
}

#[tokio::test]
async fn a_future_job_goes_to_the_delayed_set() {
    let app = TestApp::start().await;
    let later = app
        .create(json!({"payload": {}, "delay_seconds": 60}))
        .await;
    let at = app
        .create(json!({"payload": {}, "run_at": "2099-01-01T00:00:00Z"}))
        .await;
    let delayed = app.delayed_ids("default");
    assert!(delayed.contains(&later["id"].as_str().expect("id").to_owned()));
    assert!(delayed.contains(&at["id"].as_str().expect("id").to_owned()));
    assert!(app.ready_ids("default", 0).is_empty());
    assert_eq!(at["run_at"], "2099-01-01T00:00:00Z");
}

#[tokio::test]
async fn each_bad_field_is_a_422_naming_it() {
    let app = TestApp::start().await;
    let cases = [
        (json!({}), "payload"),
        (json!({"payload": [1, 2]}), "payload"),
        (json!({"payload": "text"}), "payload"),
        (json!({"payload": {}, "priority": 10}), "priority"),
        (json!({"payload": {}, "priority": -1}), "priority"),
        (json!({"payload": {}, "priority": "high"}), "priority"),
        (json!({"payload": {}, "priority": 1.5}), "priority"),
        (json!({"payload": {}, "max_attempts": 0}), "max_attempts"),
        (json!({"payload": {}, "max_attempts": 101}), "max_attempts"),
        (
            json!({"payload": {}, "timeout_seconds": 0}),
            "timeout_seconds",
        ),
        (
            json!({"payload": {}, "timeout_seconds": 99999999999_i64}),
            "timeout_seconds",
        ),
        (json!({"payload": {}, "queue": "Not Valid"}), "queue"),
        (json!({"payload": {}, "queue": 5}), "queue"),
        (json!({"payload": {}, "type": ""}), "type"),
        (json!({"payload": {}, "type": "x".repeat(65)}), "type"),
        (json!({"payload": {}, "run_at": "tomorrow"}), "run_at"),
        (
            json!({"payload": {}, "run_at": "2030-01-01T00:00:00Z", "delay_seconds": 5}),
            "run_at",
        ),
        (json!({"payload": {}, "delay_seconds": -5}), "delay_seconds"),
        (
            json!({"payload": {}, "idempotency_key": ""}),
            "idempotency_key",
        ),
        (
            json!({"payload": {}, "idempotency_key": "k".repeat(256)}),
            "idempotency_key",
        ),
    ];
    for (body, field) in cases {
        let (status, problem) = app.post_json("/jobs", &body).await;
        assert_problem(status, &problem, 422, "invalid_field");
        assert_eq!(problem["field"], field, "{body} -> {problem}");
    }
    let (status, problem) = app.post_json("/jobs", &json!([1, 2, 3])).await;
    assert_problem(status, &problem, 422, "invalid_field");
    assert_eq!(app.row_count().await, 0, "nothing invalid was written");
}

#[tokio::test]
async fn malformed_json_and_wrong_content_types_are_refused() {
    let app = TestApp::start().await;
    let send = |body: &'static str, content_type: Option<&'static str>| {
        let mut request = app.client.post(app.url("/jobs")).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        async move { crate::support::into_parts(request.send().await.expect("send")).await }
    };
    let (status, body) = send(r#"{"payload": {"#, Some("application/json")).await;
    assert_problem(status, &body, 400, "malformed_json");
    let (status, body) = send(r#"{"payload": {}} trailing"#, Some("application/json")).await;
    assert_problem(status, &body, 400, "malformed_json");
    let (status, body) = send("", Some("application/json")).await;
    assert_problem(status, &body, 400, "malformed_json");
    let (status, body) = send(r#"{"payload": {}}"#, Some("text/plain")).await;
    assert_problem(status, &body, 415, "unsupported_media_type");
    let (status, body) = send(r#"{"payload": {}}"#, None).await;
    assert_problem(status, &body, 415, "unsupported_media_type");
    let (status, _) = send(
        r#"{"payload": {}}"#,
        Some("application/json; charset=utf-8"),
    )
    .await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let app = TestApp::start().await;
    let big = "a".repeat(3 * 1024 * 1024);
    let (status, body) = app
        .post_json("/jobs", &json!({"payload": {"blob": big}}))
        .await;
    assert_problem(status, &body, 413, "payload_too_large");
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(vec![b'a'; 3 * 1024 * 1024]).file_name("big.txt"),
    );
    let (status, body) = app.post_form(form).await;
    assert_problem(status, &body, 413, "payload_too_large");
    assert_eq!(app.row_count().await, 0);
}

#[tokio::test]
async fn an_uploaded_text_file_becomes_a_char_count_job() {
    let app = TestApp::start().await;
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::text("héllo wörld").file_name("a.txt"),
        )
        .text("priority", "3");
    let (status, job) = app.post_form(form).await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["type"], "char_count");
    assert_eq!(job["payload"], json!({"text": "héllo wörld"}));
    assert_eq!(job["priority"], 3);

    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(vec![0xff, 0xfe, 0x00]).file_name("b.bin"),
    );
    let (status, problem) = app.post_form(form).await;
    assert_problem(status, &problem, 422, "invalid_field");
    assert_eq!(problem["field"], "file");

    for (form, field) in [
        (reqwest::multipart::Form::new().text("queue", "x"), "file"),
        // A misspelt part is named, not dropped.
        (reqwest::multipart::Form::new().text("other", "x"), "other"),
    ] {
        let (status, problem) = app.post_form(form).await;
        assert_problem(status, &problem, 422, "invalid_field");
        assert_eq!(problem["field"], field);
    }
}

#[tokio::test]
async fn the_same_key_replays_and_a_different_request_under_it_conflicts() {
    let app = TestApp::start().await;
    let body = json!({"payload": {"order": 1}, "idempotency_key": "order-1"});
    let first = app.create(body.clone()).await;
    let (status, replay) = app.post_json("/jobs", &body).await;
    assert_eq!(status, 200);
    assert_eq!(replay["id"], first["id"]);
    assert_eq!(
        app.ready_ids("default", 0).len(),
        1,
        "a replay is not published again"
    );

    let (status, problem) = app
        .post_json(
            "/jobs",
            &json!({"payload": {"order": 2}, "idempotency_key": "order-1"}),
        )
        .await;
    assert_problem(status, &problem, 409, "idempotency_key_conflict");
    assert_eq!(problem["job_id"], first["id"]);
}

#[tokio::test]
async fn the_idempotency_key_header_works_and_must_agree_with_the_body() {
    let app = TestApp::start().await;
    let send = |key: &'static str, body: Value| {
        let request = app
            .client
            .post(app.url("/jobs"))
            .header("Idempotency-Key", key)
            .json(&body);
        async move { crate::support::into_parts(request.send().await.expect("send")).await }
    };
    let (status, first) = send("hdr-1", json!({"payload": {}})).await;
    assert_eq!(status, 201);
    assert_eq!(first["idempotency_key"], "hdr-1");
    let (status, again) = send("hdr-1", json!({"payload": {}, "idempotency_key": "hdr-1"})).await;
    assert_eq!((status, &again["id"]), (200, &first["id"]));
    let (status, problem) = send("hdr-2", json!({"payload": {}, "idempotency_key": "other"})).await;
    assert_problem(status, &problem, 422, "invalid_field");
    assert_eq!(problem["field"], "idempotency_key");
}

#[tokio::test]
async fn sixteen_identical_concurrent_requests_create_one_job() {
    let app = Arc::new(TestApp::start().await);
    let barrier = Arc::new(Barrier::new(16));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (app, barrier) = (app.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            app.post_json(
                "/jobs",
                &json!({"payload": {"x": 1}, "idempotency_key": "race"}),
            )
            .await
        }));
    }
    let mut statuses = Vec::new();
    let mut ids = Vec::new();
    for task in tasks {
        let (status, job) = task.await.expect("task");
        statuses.push(status);
        ids.push(job["id"].clone());
    }
    statuses.sort();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        15,
        "{statuses:?}"
    );
    ids.dedup();
    assert_eq!(ids.len(), 1);
    assert_eq!(app.row_count().await, 1);
    assert_eq!(app.ready_ids("default", 0).len(), 1);
}

#[tokio::test]
async fn concurrent_single_submissions_are_inserted_together_and_answered_one_by_one() {
    let logs = testkit::LogCapture::default();
    let _guard = logs.install();
    let app = Arc::new(TestApp::start().await);
    // The metric is the process's: under a runner that shares the process
    // between tests, others add to it too, so compare with before.
    let inserted_before = inserts_written(&app).await;
    // 40 keys each sent twice with the same body, 20 sent again with a
    // different body, 40 without a key: 140 requests at once.
    let mut bodies = Vec::new();
    for n in 0..40 {
        let body = json!({"payload": {"n": n}, "idempotency_key": format!("k{n}")});
        bodies.push(("first-or-replay", n, body.clone()));
        bodies.push(("first-or-replay", n, body));
        if n < 20 {
            bodies.push((
                "maybe-conflict",
                n,
                json!({"payload": {"n": -1}, "idempotency_key": format!("k{n}")}),
            ));
        }
        bodies.push(("no-key", n, json!({"payload": {"n": n}})));
    }
    let barrier = Arc::new(Barrier::new(bodies.len()));
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|(kind, n, body)| {
            let (app, barrier) = (app.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let (status, answer) = app.post_json("/jobs", &body).await;
                (kind, n, status, answer)
            })
        })
        .collect();
    let mut per_key: std::collections::HashMap<i64, Vec<(u16, Value)>> = Default::default();
    let mut no_key_created = 0;
    for task in tasks {
        let (kind, n, status, answer) = task.await.expect("task");
        match kind {
            "no-key" => {
                assert_eq!(status, 201, "{answer}");
                assert_eq!(answer["payload"]["n"], n);
                no_key_created += 1;
            }
            _ => per_key.entry(n).or_default().push((status, answer)),
        }
    }
    assert_eq!(no_key_created, 40);
    for (n, answers) in per_key {
        // Whichever body came first created the job; each other request is
        // a replay (same body as the stored one) or a conflict.
        let created: Vec<_> = answers.iter().filter(|(s, _)| *s == 201).collect();
        assert_eq!(created.len(), 1, "key k{n}: {answers:?}");
        let stored = &created[0].1;
        for (status, answer) in &answers {
            match status {
                201 => {}
                200 => assert_eq!(answer["id"], stored["id"], "a replay names the stored job"),
                409 => {
                    assert_eq!(answer["code"], "idempotency_key_conflict");
                    assert_eq!(answer["job_id"], stored["id"]);
                }
                other => panic!("key k{n}: unexpected {other}: {answer}"),
            }
        }
        let conflicts = answers.iter().filter(|(s, _)| *s == 409).count();
        let expected_conflicts = match (n < 20, stored["payload"]["n"] == -1) {
            (false, _) => 0,
            (true, false) => 1,
            (true, true) => 2,
        };
        assert_eq!(conflicts, expected_conflicts, "key k{n}: {answers:?}");
    }
    assert_eq!(app.row_count().await, 80);
    // A job is answered once committed and published; when Redis takes a
    // publish too late (its reply past the client's timeout on a loaded
    // machine), the API answers anyway, says so, and offers the ids again
    // in the background (`publish_committed`, after 0.5 s, 1 s, ...). Four
    // of 80 ids were missing at once in one full run beside the browser
    // tests; should ids ever be missing without that warning, the cause is
    // another, and this fails.
    if app.ready_ids("default", 0).len() < 80 {
        assert!(
            logs.text().contains("\"event\":\"job_enqueue_failed\""),
            "an id missing from Redis without a word from the API"
        );
    }
    let ready = testkit::wait_until(
        "every created job published",
        std::time::Duration::from_secs(10),
        || async {
            let ids = app.ready_ids("default", 0);
            (ids.len() >= 80).then_some(ids)
        },
    )
    .await;
    let distinct: std::collections::HashSet<&String> = ready.iter().collect();
    assert_eq!(
        (ready.len(), distinct.len()),
        (80, 80),
        "each created job published once"
    );

    assert!(
        inserts_written(&app).await - inserted_before >= 140.0,
        "every submission went through the group writer"
    );
}

/// Items the group-commit insert writer has written in this process.
async fn inserts_written(app: &TestApp) -> f64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    let writer = [("writer", "inserts")];
    testkit::prometheus::sample(&text, "conveyor_group_commit_batch_size_sum", &writer)
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_mid_request_does_not_keep_its_job_from_redis() {
    use tokio::io::AsyncWriteExt;
    // PostgreSQL's replies are slow to come back, so the hang-up lands after
    // the job committed and before the API heard so: the window in which a
    // handler's future used to be dropped with its connection, leaving the
    // committed job unpublished until a reconciliation pass.
    let app = TestApp::with(crate::support::Options {
        postgres_proxy: true,
        ..Default::default()
    })
    .await;
    let warm = app.create(json!({"type": "noop", "payload": {}})).await;
    assert_eq!(warm["status"], "queued");
    let proxy = app.postgres_proxy.as_ref().expect("proxy");
    proxy.delay_replies(std::time::Duration::from_millis(200));
    let addr = app.base.trim_start_matches("http://").to_owned();
    let sent = 3;
    for n in 0..sent {
        let body = json!({"type": "noop", "payload": {"n": n}}).to_string();
        let request = format!(
            "POST /jobs HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut socket = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        socket.write_all(request.as_bytes()).await.expect("send");
        testkit::wait_until("the job to be committed", DEADLINE, || async {
            (app.row_count().await == n + 2).then_some(())
        })
        .await;
        // Hang up without reading the answer, as a client whose timeout
        // fired would.
        socket.shutdown().await.expect("shutdown");
        drop(socket);
    }
    // Every accepted job reaches its ready lane as soon as Redis answers,
    // not after a reconciliation pass (no reconciler runs here at all).
    testkit::wait_until("every accepted job to be published", DEADLINE, || async {
        (app.ready_ids("default", 0).len() as i64 == sent + 1).then_some(())
    })
    .await;
}
