//! `GET /jobs/{id}`, `GET /jobs`, `GET /jobs/{id}/result`, `GET /jobs/summary`.

use serde_json::json;

use crate::support::{TestApp, assert_problem};

#[tokio::test]
async fn a_job_is_found_by_id_and_bad_ids_are_told_apart() {
    let app = TestApp::start().await;
    let job = app.create(json!({"payload": {}})).await;
    let (status, found) = app
        .get(&format!("/jobs/{}", job["id"].as_str().expect("id")))
        .await;
    assert_eq!((status, &found), (200, &job));
    let (status, problem) = app.get("/jobs/01a20568-a767-77b0-935f-39c0385d3eb6").await;
    assert_problem(status, &problem, 404, "job_not_found");
    let (status, problem) = app.get("/jobs/not-a-uuid").await;
    assert_problem(status, &problem, 422, "invalid_field");
    assert_eq!(problem["field"], "id");
}

#[tokio::test]
async fn listing_is_newest_first_filtered_and_paged() {
    let app = TestApp::start().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let queue = if n % 2 == 0 { "even" } else { "odd" };
        let job = app
            .create(json!({"payload": {"n": n}, "queue": queue, "type": format!("t{}", n % 2)}))
            .await;
        ids.push(job["id"].clone());
    }
    let canceled = ids[1].as_str().expect("id").to_owned();
    assert_eq!(app.post(&format!("/jobs/{canceled}/cancel")).await.0, 200);

    let (status, page) = app.get("/jobs").await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            page["limit"].as_u64(),
            page["offset"].as_u64(),
            page["count"].as_u64()
        ),
        (Some(20), Some(0), Some(5))
    );
    let listed: Vec<_> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|j| j["id"].clone())
        .collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first);

    let (_, page) = app.get("/jobs?limit=2&offset=1").await;
    let listed: Vec<_> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|j| j["id"].clone())
        .collect();
    assert_eq!(listed, newest_first[1..3]);
    assert_eq!(
        page["count"], 5,
        "count is every match, not the page: {page}"
    );
    assert_eq!(page["count_accuracy"], "exact");

    let (_, page) = app.get("/jobs?status=canceled").await;
    assert_eq!(page["count"], 1);
    assert_eq!(page["items"][0]["id"], canceled.as_str());
    let (_, page) = app.get("/jobs?queue=even").await;
    assert_eq!(page["count"], 3);
    let (_, page) = app.get("/jobs?type=t1&status=queued").await;
    assert_eq!(page["count"], 1);
}

#[tokio::test]
async fn bad_list_parameters_are_422_naming_them() {
    let app = TestApp::start().await;
    for (query, field) in [
        ("status=bogus", "status"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        ("offset=1.5", "offset"),
        ("after=nonsense", "after"),
        ("after=1_zz", "after"),
        // An empty value is not a value.
        ("status=", "status"),
        ("queue=", "queue"),
        ("type=", "type"),
        ("limit=", "limit"),
        ("offset=", "offset"),
        ("after=", "after"),
    ] {
        let (status, problem) = app.get(&format!("/jobs?{query}")).await;
        assert_problem(status, &problem, 422, "invalid_field");
        assert_eq!(problem["field"], field, "{query}");
    }
}

#[tokio::test]
async fn cursor_pages_visit_every_match_once_newest_first() {
    let app = TestApp::start().await;
    let mut created = Vec::new();
    for n in 0..7 {
        let queue = if n == 3 { "other" } else { "walk" };
        let job = app
            .create(json!({"payload": {"n": n}, "queue": queue}))
            .await;
        if queue == "walk" {
            created.push(job["id"].clone());
        }
    }
    created.reverse();
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut path = "/jobs?queue=walk&limit=4".to_owned();
    loop {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["count"], 6, "the total on every page: {page}");
        let items = page["items"].as_array().expect("items");
        sizes.push(items.len());
        seen.extend(items.iter().map(|job| job["id"].clone()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/jobs?queue=walk&limit=4&after={cursor}"),
            None => break,
        }
    }
    assert_eq!(sizes, [4, 2]);
    assert_eq!(seen, created);
    // Any cursor of the documented form is served, even one from 31,000
    // years ahead (the newest jobs are all after it).
    let far = format!("/jobs?after=999999999999999999_{}", "f".repeat(32));
    let (status, page) = app.get(&far).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"].as_array().map(Vec::len), Some(7), "{page}");
}

#[tokio::test]
async fn an_offset_past_the_cap_is_422_pointing_to_the_cursor() {
    let app = TestApp::start().await;
    let (status, page) = app.get("/jobs?offset=10000").await;
    assert_eq!(status, 200, "{page}");
    let (status, problem) = app.get("/jobs?offset=10001").await;
    assert_problem(status, &problem, 422, "invalid_field");
    assert_eq!(problem["field"], "offset");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("after"),
        "{problem}"
    );
}

#[tokio::test]
async fn result_is_202_until_done_then_200_or_409() {
    let app = TestApp::start().await;
    let job = app.create(json!({"payload": {}})).await;
    let id = job["id"].as_str().expect("id");
    let (status, body) = app.get(&format!("/jobs/{id}/result")).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("queued")));

    app.db
        .execute(&format!("UPDATE jobs SET status = 'completed', result = '{{\"n\": 7}}', completed_at = now() WHERE id = '{id}'"))
        .await;
    let (status, body) = app.get(&format!("/jobs/{id}/result")).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"], json!({"n": 7}));

    app.db
        .execute(&format!("UPDATE jobs SET status = 'failed', error_message = 'it broke', attempts = 4, failed_at = now() WHERE id = '{id}'"))
        .await;
    let (status, problem) = app.get(&format!("/jobs/{id}/result")).await;
    assert_problem(status, &problem, 409, "job_failed");
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("it broke")
    );

    let (status, problem) = app
        .get("/jobs/01a20568-a767-77b0-935f-39c0385d3eb6/result")
        .await;
    assert_problem(status, &problem, 404, "job_not_found");
}

#[tokio::test]
async fn summary_counts_every_status_overall_and_per_queue() {
    let app = TestApp::start().await;
    for queue in ["a", "a", "b"] {
        app.create(json!({"payload": {}, "queue": queue})).await;
    }
    app.db
        .execute("UPDATE jobs SET status = 'canceled', canceled_at = now() WHERE id = (SELECT id FROM jobs WHERE queue = 'b')")
        .await;
    let (status, summary) = app.get("/jobs/summary").await;
    assert_eq!(status, 200);
    assert_eq!(summary["total"], 3);
    assert_eq!(summary["by_status"]["queued"], 2);
    assert_eq!(summary["by_status"]["canceled"], 1);
    assert_eq!(summary["by_status"]["running"], 0);
    assert_eq!(summary["by_queue"]["a"]["queued"], 2);
    assert_eq!(summary["by_queue"]["b"]["canceled"], 1);
    assert_eq!(summary["accuracy"], "exact");
}

#[tokio::test]
async fn queues_report_backlog_per_lane() {
    let app = TestApp::start().await;
    for priority in [0, 5, 5] {
        app.create(json!({"payload": {}, "priority": priority}))
            .await;
    }
    app.create(json!({"payload": {}, "delay_seconds": 30}))
        .await;
    let (status, body) = app.get("/queues").await;
    assert_eq!(status, 200, "{body}");
    let queue = &body["queues"][0];
    assert_eq!(queue["name"], "default");
    assert_eq!(queue["ready"]["0"], 1);
    assert_eq!(queue["ready"]["5"], 2);
    assert_eq!(queue["ready_total"], 3);
    assert_eq!(queue["delayed"], 1);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems_too() {
    let app = TestApp::start().await;
    let (status, problem) = app.get("/nowhere").await;
    assert_problem(status, &problem, 404, "route_not_found");
    let response = app
        .client
        .delete(app.url("/jobs"))
        .send()
        .await
        .expect("send");
    let (status, problem) = crate::support::into_parts(response).await;
    assert_problem(status, &problem, 405, "method_not_allowed");
}
