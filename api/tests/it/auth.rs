//! The optional bearer token.

use api::Settings;
use serde_json::json;

use crate::support::{Options, TestApp, assert_problem};

const TOKEN: &str = "s3cret-token-for-tests";

#[tokio::test]
async fn with_a_token_configured_only_probes_are_open() {
    let app = TestApp::with(Options {
        settings: Settings {
            api_token: Some(TOKEN.to_owned()),
            ..Settings::default()
        },
        ..Options::default()
    })
    .await;
    let (status, problem) = app.post_json("/jobs", &json!({"payload": {}})).await;
    assert_problem(status, &problem, 401, "unauthorized");
    let wrong = app
        .client
        .get(app.url("/jobs"))
        .bearer_auth("s3cret-token-for-testz")
        .send()
        .await
        .expect("send");
    assert_eq!(wrong.status(), 401);
    assert_eq!(wrong.headers()["www-authenticate"], "Bearer");
    let right = app
        .client
        .post(app.url("/jobs"))
        .bearer_auth(TOKEN)
        .json(&json!({"payload": {}}))
        .send()
        .await
        .expect("send");
    assert_eq!(right.status(), 201);
    for open in ["/health", "/ready"] {
        assert_eq!(app.get(open).await.0, 200, "{open}");
    }
    assert_eq!(app.get("/openapi.json").await.0, 401);
}
