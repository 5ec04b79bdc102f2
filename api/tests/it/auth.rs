//! The optional bearer token.

use serde_json::json;

use crate::support::{TestApp, assert_problem};

const TOKEN: &str = "s3cret-token-for-tests";

#[tokio::test]
async fn with_a_token_configured_only_probes_are_open() {
    let app = TestApp::with_token(TOKEN).await;
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

#[tokio::test]
async fn the_bearer_scheme_is_matched_in_any_case() {
    let app = TestApp::with_token(TOKEN).await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let response = app
            .client
            .get(app.url("/jobs"))
            .header("authorization", format!("{scheme} {TOKEN}"))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 200, "{scheme}");
    }
    for wrong in [
        format!("Basic {TOKEN}"),
        format!("Bearer {TOKEN}x"),
        "Bearer s".to_owned(),
        "Bearer".to_owned(),
    ] {
        let response = app
            .client
            .get(app.url("/jobs"))
            .header("authorization", wrong.as_str())
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 401, "{wrong}");
    }
}

#[tokio::test]
async fn a_page_on_another_site_cannot_make_a_browser_create_jobs() {
    let app = TestApp::start().await;
    let host = app.base.trim_start_matches("http://").to_owned();
    let form = || {
        reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::text("hi").file_name("a.txt"),
        )
    };
    for (name, value) in [
        ("origin", "https://evil.example".to_owned()),
        ("origin", "null".to_owned()),
        ("sec-fetch-site", "cross-site".to_owned()),
    ] {
        let response = app
            .client
            .post(app.url("/jobs"))
            .header(name, value.as_str())
            .multipart(form())
            .send()
            .await
            .expect("send");
        let (status, problem) = crate::support::into_parts(response).await;
        assert_problem(status, &problem, 403, "cross_site_request");
        assert_eq!(app.row_count().await, 0, "{name}: {value}");
    }
    // The API's own origin (a page it serves) and clients that are not
    // browsers are served.
    let response = app
        .client
        .post(app.url("/jobs"))
        .header("origin", format!("http://{host}"))
        .header("sec-fetch-site", "same-origin")
        .multipart(form())
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 201);
    let (status, _) = app.get("/jobs").await;
    assert_eq!(status, 200);
}

/// Starts `conveyor-api` on `addr` and returns the log lines it wrote up
/// to `api_started`.
async fn start_up_log(addr: &str, token: Option<&str>) -> Vec<String> {
    use tokio::io::AsyncBufReadExt;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_conveyor-api"));
    command
        .env_clear()
        .env("CONVEYOR_API_ADDR", addr)
        .env("DATABASE_URL", crate::support::CLOSED_DATABASE_URL)
        .env("REDIS_URL", crate::support::CLOSED_REDIS_URL)
        .env("LOG_FORMAT", "json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    if let Some(token) = token {
        command.env("CONVEYOR_API_TOKEN", token);
    }
    let mut child = command.spawn().expect("conveyor-api starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let started = line.contains("\"api_started\"");
            seen.push(line);
            if started {
                break;
            }
        }
    })
    .await
    .expect("api_started is logged");
    let _ = child.kill().await;
    seen
}

#[tokio::test]
async fn listening_publicly_without_a_token_is_warned_of_at_start_up() {
    let warned = |lines: &[String]| lines.iter().any(|line| line.contains("api_unprotected"));
    assert!(warned(&start_up_log("0.0.0.0:0", None).await));
    assert!(!warned(&start_up_log("0.0.0.0:0", Some(TOKEN)).await));
    assert!(!warned(&start_up_log("127.0.0.1:0", None).await));
}
