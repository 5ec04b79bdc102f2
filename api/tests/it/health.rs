//! `/health` and `/ready`.

use crate::support::{Options, TestApp, assert_problem};

#[tokio::test]
async fn health_and_readiness_answer_when_all_is_well() {
    let app = TestApp::start().await;
    let (status, body) = app.get("/health").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = app.get("/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["postgres"].as_str(), body["redis"].as_str()),
        (Some("ok"), Some("ok"))
    );
}

#[tokio::test]
async fn readiness_names_the_dependency_that_is_down() {
    let app = TestApp::with(Options {
        redis_down: true,
        ..Options::default()
    })
    .await;
    let (status, problem) = app.get("/ready").await;
    assert_problem(status, &problem, 503, "not_ready");
    let detail = problem["detail"].as_str().expect("detail");
    assert!(
        detail.contains("redis") && !detail.contains("postgres"),
        "{detail}"
    );
    assert_eq!(
        app.get("/health").await.0,
        200,
        "liveness does not depend on Redis"
    );

    let app = TestApp::with(Options {
        postgres_down: true,
        ..Options::default()
    })
    .await;
    let (status, problem) = app.get("/ready").await;
    assert_problem(status, &problem, 503, "not_ready");
    let detail = problem["detail"].as_str().expect("detail");
    assert!(
        detail.contains("postgres") && !detail.contains("redis is"),
        "{detail}"
    );
    // No driver text (hosts, ports, users) for unauthenticated callers.
    assert_eq!(detail, "not ready: postgres is unavailable", "{detail}");
    assert!(!problem.to_string().contains("127.0.0.1"), "{problem}");
}
