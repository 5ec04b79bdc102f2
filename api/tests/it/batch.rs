//! `POST /jobs/batch`.

use serde_json::json;

use crate::support::{TestApp, assert_problem};

#[tokio::test]
async fn a_batch_answers_each_item_in_order_and_publishes_the_new_ones() {
    let app = TestApp::start().await;
    let earlier = app
        .create(json!({"payload": {"n": 0}, "idempotency_key": "seen-before"}))
        .await;
    let (status, body) = app
        .post_json(
            "/jobs/batch",
            &json!({"jobs": [
                {"type": "noop", "payload": {"n": 1}},
                {"payload": {"n": 2}, "priority": 42},
                {"payload": {"n": 0}, "idempotency_key": "seen-before"},
                {"payload": {"n": 9}, "idempotency_key": "seen-before"},
                {"payload": {"n": 3}, "idempotency_key": "fresh", "priority": 5},
                {"payload": {"n": 3}, "idempotency_key": "fresh", "priority": 5},
                "not an object",
                {"payload": {"n": 4}, "delay_seconds": 60}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let items = body["items"].as_array().expect("items");
    let statuses: Vec<u64> = items
        .iter()
        .map(|item| item["status"].as_u64().expect("status"))
        .collect();
    assert_eq!(statuses, [201, 422, 200, 409, 201, 200, 422, 201]);
    assert_eq!(items[1]["error"]["field"], "jobs[1].priority");
    assert_eq!(items[1]["error"]["code"], "invalid_field");
    assert_eq!(items[2]["job"]["id"], earlier["id"]);
    assert_eq!(items[3]["error"]["code"], "idempotency_key_conflict");
    assert_eq!(
        items[5]["job"]["id"], items[4]["job"]["id"],
        "a key repeated in a batch is one job"
    );
    assert_eq!(
        (
            body["created"].as_u64(),
            body["replayed"].as_u64(),
            body["rejected"].as_u64()
        ),
        (Some(3), Some(2), Some(3))
    );
    assert_eq!(
        app.row_count().await,
        4,
        "the earlier job and three new ones"
    );
    assert_eq!(
        app.ready_ids("default", 0),
        [
            earlier["id"].as_str().expect("id"),
            items[0]["job"]["id"].as_str().expect("id")
        ],
        "the earlier job, then the batch's only new priority-0 job"
    );
    assert_eq!(
        app.ready_ids("default", 5),
        [items[4]["job"]["id"].as_str().expect("id")]
    );
    assert_eq!(
        app.delayed_ids("default"),
        [items[7]["job"]["id"].as_str().expect("id")]
    );
}

#[tokio::test]
async fn a_batch_must_hold_one_to_a_thousand_jobs() {
    let app = TestApp::start().await;
    let (status, problem) = app.post_json("/jobs/batch", &json!({"jobs": []})).await;
    assert_problem(status, &problem, 422, "invalid_field");
    let many: Vec<_> = (0..1001).map(|n| json!({"payload": {"n": n}})).collect();
    let (status, problem) = app.post_json("/jobs/batch", &json!({"jobs": many})).await;
    assert_problem(status, &problem, 422, "invalid_field");
    assert_eq!(problem["field"], "jobs");
    let (status, problem) = app.post_json("/jobs/batch", &json!([1, 2])).await;
    assert_problem(status, &problem, 422, "invalid_field");
    let thousand: Vec<_> = (0..1000)
        .map(|n| json!({"type": "noop", "payload": {"n": n}}))
        .collect();
    let (status, body) = app
        .post_json("/jobs/batch", &json!({"jobs": thousand}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["created"], 1000);
    assert_eq!(app.row_count().await, 1000);
    assert_eq!(app.ready_ids("default", 0).len(), 1000);
}
