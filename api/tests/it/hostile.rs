//! Inputs that once answered 500 (or worse, committed a row that could not
//! be read back): each is a 4xx problem naming its field now, and nothing
//! is stored.

use serde_json::{Value, json};

use crate::support::{TestApp, assert_problem};

async fn assert_refused(app: &TestApp, body: Value, field: &str) {
    let (status, problem) = app.post_json("/jobs", &body).await;
    assert_problem(status, &problem, 422, "invalid_field");
    assert_eq!(problem["field"], field, "{problem}");
    assert_eq!(app.row_count().await, 0, "nothing stored for {body}");
}

#[tokio::test]
async fn a_nul_character_in_the_payload_is_refused_naming_the_payload() {
    let app = TestApp::start().await;
    assert_refused(&app, json!({"payload": {"text": "a\u{0}b"}}), "payload").await;
    assert_refused(
        &app,
        json!({"payload": {"deep": [1, {"x": "\u{0}"}]}}),
        "payload",
    )
    .await;
    assert_refused(&app, json!({"payload": {"k\u{0}ey": 1}}), "payload").await;
    let (_, problem) = app
        .post_json("/jobs", &json!({"payload": {"deep": [1, {"x": "\u{0}"}]}}))
        .await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("payload.deep[1].x"),
        "the detail says where: {problem}"
    );
}

#[tokio::test]
async fn a_nul_character_in_an_idempotency_key_is_refused() {
    let app = TestApp::start().await;
    assert_refused(
        &app,
        json!({"payload": {}, "idempotency_key": "a\u{0}b"}),
        "idempotency_key",
    )
    .await;
    assert_refused(
        &app,
        json!({"payload": {}, "idempotency_key": "tab\there"}),
        "idempotency_key",
    )
    .await;
}

#[tokio::test]
async fn an_uploaded_file_with_a_nul_character_is_refused() {
    let app = TestApp::start().await;
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"before\0after".to_vec()).file_name("a.txt"),
    );
    let (status, problem) = app.post_form(form).await;
    assert_problem(status, &problem, 422, "invalid_field");
    assert_eq!(problem["field"], "payload", "{problem}");
    assert_eq!(app.row_count().await, 0);
}

#[tokio::test]
async fn run_at_outside_years_1_to_9999_in_utc_or_on_a_leap_second_is_refused() {
    let app = TestApp::start().await;
    for run_at in [
        "0000-01-01T00:00:00Z",
        "0000-12-31T23:59:59Z",
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+00:01",
        // A leap second: PostgreSQL would store the next second instead.
        "9999-12-31T23:59:60Z",
        "2030-06-30T23:59:60Z",
    ] {
        assert_refused(&app, json!({"payload": {}, "run_at": run_at}), "run_at").await;
    }
    // The edges themselves are fine, to the last nanosecond (stored to the
    // microsecond, truncated rather than rounded into year 10000).
    for run_at in [
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59.9999999Z",
    ] {
        let job = app.create(json!({"payload": {}, "run_at": run_at})).await;
        let (status, read) = app
            .get(&format!("/jobs/{}", job["id"].as_str().expect("id")))
            .await;
        assert_eq!((status, &read["run_at"]), (200, &job["run_at"]), "{run_at}");
    }
}

#[tokio::test]
async fn list_filters_that_cannot_name_a_queue_or_type_are_refused() {
    let app = TestApp::start().await;
    for (query, field) in [
        ("queue=%00", "queue"),
        ("type=%00", "type"),
        ("queue=UPPER", "queue"),
        ("type=a%20b", "type"),
    ] {
        let (status, problem) = app.get(&format!("/jobs?{query}")).await;
        assert_problem(status, &problem, 422, "invalid_field");
        assert_eq!(problem["field"], field, "{query}: {problem}");
    }
}

#[tokio::test]
async fn numbers_at_the_edge_of_the_float_range_read_back_exactly() {
    let app = TestApp::start().await;
    let payload = json!({
        "max": f64::MAX,
        "min": f64::MIN,
        "tiny": f64::MIN_POSITIVE,
        "subnormal": 5e-324,
        "big_int": u64::MAX,
        "small_int": i64::MIN,
        "third": 1.0 / 3.0,
    });
    let job = app.create(json!({"payload": payload})).await;
    assert_eq!(job["payload"], payload);
    let id = job["id"].as_str().expect("id");
    let (status, read) = app.get(&format!("/jobs/{id}")).await;
    assert_eq!((status, &read["payload"]), (200, &payload));
    let (status, list) = app.get("/jobs").await;
    assert_eq!(
        (status, &list["items"][0]["payload"]),
        (200, &payload),
        "{list}"
    );
    // A literal past the range is not JSON a client can mean: refused whole.
    let response = app
        .client
        .post(app.url("/jobs"))
        .header("content-type", "application/json")
        .body(r#"{"payload": {"x": 1e400}}"#)
        .send()
        .await
        .expect("send");
    let (status, problem) = crate::support::into_parts(response).await;
    assert_problem(status, &problem, 400, "malformed_json");
}

#[tokio::test]
async fn a_bad_item_in_a_batch_is_answered_alone() {
    let app = TestApp::start().await;
    let (status, body) = app
        .post_json(
            "/jobs/batch",
            &json!({"jobs": [
                {"payload": {"n": 1}},
                {"payload": {"text": "\u{0}"}},
                {"payload": {"n": 3}, "run_at": "0000-01-01T00:00:00Z"},
                {"payload": {"n": 4}},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let statuses: Vec<u64> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["status"].as_u64().expect("status"))
        .collect();
    assert_eq!(statuses, [201, 422, 422, 201], "{body}");
    assert_eq!(
        body["items"][1]["error"]["field"], "jobs[1].payload",
        "{body}"
    );
    assert_eq!(
        body["items"][2]["error"]["field"], "jobs[2].run_at",
        "{body}"
    );
    assert_eq!(app.row_count().await, 2);
}

#[tokio::test]
async fn a_row_postgres_refuses_is_a_422_alone_and_in_a_batch() {
    let app = TestApp::start().await;
    // A constraint validation does not know of, standing in for any value
    // it lets through but the table refuses.
    app.db
        .execute("ALTER TABLE jobs ADD CONSTRAINT test_refuse CHECK (NOT payload ? 'refuse')")
        .await;
    let (status, problem) = app
        .post_json("/jobs", &json!({"payload": {"refuse": 1}}))
        .await;
    assert_problem(status, &problem, 422, "invalid_field");
    let (status, body) = app
        .post_json(
            "/jobs/batch",
            &json!({"jobs": [{"payload": {"n": 1}}, {"payload": {"refuse": 1}}, {"payload": {"n": 3}}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let statuses: Vec<u64> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["status"].as_u64().expect("status"))
        .collect();
    assert_eq!(statuses, [201, 422, 201], "{body}");
    assert_eq!(body["items"][1]["error"]["field"], "jobs[1]", "{body}");
    assert_eq!(app.row_count().await, 2);
}

#[tokio::test]
async fn a_deadlock_or_resource_shortage_is_a_503_not_a_500() {
    let app = TestApp::start().await;
    // Stands in for a deadlock or serialization failure (class 40) and for
    // too few resources (class 53): refusals for the moment.
    app.db
        .execute(
            "CREATE SEQUENCE test_refusals; \
             CREATE FUNCTION test_refuse_now() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN \
               PERFORM nextval('test_refusals'); \
               IF NEW.payload ? 'deadlock' THEN RAISE EXCEPTION 'test' USING ERRCODE = '40P01'; END IF; \
               IF NEW.payload ? 'full' THEN RAISE EXCEPTION 'test' USING ERRCODE = '53100'; END IF; \
               RETURN NEW; \
             END $$; \
             CREATE TRIGGER test_refuse_now BEFORE INSERT ON jobs \
             FOR EACH ROW EXECUTE FUNCTION test_refuse_now();",
        )
        .await;
    for payload in [json!({"deadlock": 1}), json!({"full": 1})] {
        // Alone, the refusal is named; a single submission's group commit
        // answers it as the outage it is treated as (nothing is retried
        // row by row under pressure).
        let (status, problem) = app
            .post_json("/jobs/batch", &json!({"jobs": [{"payload": payload}]}))
            .await;
        assert_problem(status, &problem, 503, "database_busy");
        let refusals = || app.db.count("SELECT last_value AS n FROM test_refusals");
        let before = refusals().await;
        let (status, problem) = app.post_json("/jobs", &json!({"payload": payload})).await;
        assert_problem(status, &problem, 503, "database_unavailable");
        assert_eq!(
            refusals().await - before,
            1,
            "refused once, as a batch: not tried again alone under pressure"
        );
    }
    assert_eq!(app.row_count().await, 0);
}
