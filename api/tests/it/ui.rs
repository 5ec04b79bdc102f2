//! The dashboard over plain HTTP: what a browser test cannot easily
//! show — cookies' flags, forms from elsewhere, read-only refusals, bad
//! input as pages with 4xx statuses, and escaping.

use api::Settings;
use reqwest::header;
use reqwest::redirect::Policy;
use serde_json::json;

use crate::support::{Options, TestApp};

/// A client that does not follow redirects (so they can be checked).
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

/// The value of `name` among a response's `Set-Cookie` headers, with the
/// whole header.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<(String, String)> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with(&format!("{name}=")))
        .map(|value| {
            let pair = value.split(';').next().unwrap_or_default();
            (
                pair.split_once('=')
                    .map(|(_, v)| v.to_owned())
                    .unwrap_or_default(),
                value.to_owned(),
            )
        })
}

/// A page's form token: the cookie set with it, and the field in it.
async fn form_token(app: &TestApp, path: &str, cookie: Option<&str>) -> (String, String) {
    let mut request = client().get(app.url(path));
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = request.send().await.expect("page");
    let cookie = set_cookie(&response, "conveyor_csrf")
        .map(|(value, _)| value)
        .expect("a form-token cookie");
    let html = response.text().await.expect("html");
    let field = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned();
    (cookie, field)
}

/// `GET path`, not following redirects.
async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    client().get(app.url(path)).send().await.expect("page")
}

/// A dashboard form post with `cookie` and the urlencoded `body`.
async fn post_form(
    app: &TestApp,
    path: &str,
    cookie: impl AsRef<str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    client()
        .post(app.url(path))
        .header(header::COOKIE, cookie.as_ref())
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("post")
}

async fn queue_paused(app: &TestApp, queue: &str) -> bool {
    let queues = app.get("/queues").await.1;
    queues["queues"]
        .as_array()
        .and_then(|queues| queues.iter().find(|q| q["name"] == queue))
        .is_some_and(|q| q["settings"]["paused"] == true)
}

#[tokio::test]
async fn every_page_is_html_and_unknown_ones_are_404_pages() {
    let app = TestApp::start().await;
    app.create(json!({"type": "send_email", "queue": "emails", "payload": {}}))
        .await;
    for path in [
        "/ui",
        "/ui/queues",
        "/ui/jobs",
        "/ui/failed",
        "/ui/schedules",
        "/ui/workers",
    ] {
        let response = get(&app, path).await;
        assert_eq!(response.status(), 200, "{path}");
        let kind = response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap_or_default()
            .to_owned();
        assert!(kind.starts_with("text/html"), "{path}: {kind}");
    }
    for path in [
        "/ui/nothing",
        "/ui/jobs/01a22990-50cf-7603-bba8-793292da3f6a",
    ] {
        let response = get(&app, path).await;
        assert_eq!(response.status(), 404, "{path}");
        assert!(
            response
                .text()
                .await
                .unwrap_or_default()
                .contains("<h1>404"),
            "{path}"
        );
    }
    // A method the route does not take: answered by the API's fallback,
    // shown as a page.
    let get_logout = get(&app, "/ui/logout").await;
    assert_eq!(get_logout.status(), 405);
    assert!(
        get_logout
            .text()
            .await
            .unwrap_or_default()
            .contains("<h1>405")
    );
    let slash = get(&app, "/ui/jobs/?status=failed").await;
    assert_eq!(slash.status(), 308);
    assert_eq!(slash.headers()[header::LOCATION], "/ui/jobs?status=failed");
    let style = get(&app, "/ui/assets/style.css").await;
    let etag = style.headers()[header::ETAG].clone();
    let again = client()
        .get(app.url("/ui/assets/style.css"))
        .header(header::IF_NONE_MATCH, etag)
        .send()
        .await
        .expect("css");
    assert_eq!(again.status(), 304);
    let weak = client()
        .get(app.url("/ui/assets/style.css"))
        .header(
            header::IF_NONE_MATCH,
            format!(
                "W/{}",
                again.headers()[header::ETAG].to_str().unwrap_or_default()
            ),
        )
        .send()
        .await
        .expect("css");
    assert_eq!(weak.status(), 304, "a weak validator matches");
    let icon = get(&app, "/ui/assets/icon.svg").await;
    assert_eq!(icon.status(), 200);
}

/// Jobs no worker will take are pointed out: the queue is marked and the
/// overview says how many queues are in that state.
#[tokio::test]
async fn a_queue_with_ready_jobs_and_no_worker_is_marked() {
    let app = TestApp::start().await;
    app.create(json!({"type": "send_email", "queue": "orphans", "payload": {}}))
        .await;
    let page = |path: &'static str| {
        let request = client().get(app.url(path));
        async move {
            request
                .send()
                .await
                .expect("page")
                .text()
                .await
                .expect("html")
        }
    };
    let queues = page("/ui/queues").await;
    assert!(queues.contains("no worker"), "{queues}");
    let overview = page("/ui").await;
    assert!(
        overview.contains("1 queue has jobs ready and no worker serving it"),
        "{overview}"
    );
}

#[tokio::test]
async fn bad_input_is_a_4xx_page_never_a_500() {
    let app = TestApp::start().await;
    let cases = [
        ("/ui/jobs?status=bogus", 422),
        ("/ui/jobs?queue=NO%20SPACES", 422),
        ("/ui/jobs?type=%00", 422),
        ("/ui/jobs?schedule=%2F%2F", 422),
        ("/ui/jobs?after=garbage", 422),
        ("/ui/failed?after=1_zz", 422),
        ("/ui/jobs/not-a-uuid", 422),
        ("/ui/jobs/%FF", 422),
        ("/ui/find?q=nobody-has-this-key", 404),
        ("/ui/find?q=%00%01", 404),
        (&*format!("/ui/find?q={}", "k".repeat(5000)), 404),
        // A filter given twice is refused, not dropped.
        ("/ui/jobs?status=failed&status=queued", 400),
        ("/ui/failed?queue=a&queue=b", 400),
        ("/ui/find?q=a&q=b", 400),
    ];
    for (path, expected) in cases {
        let response = get(&app, path).await;
        assert_eq!(response.status(), expected, "{path}");
    }
    // A form in another encoding is 415, as the JSON API answers a body
    // of the wrong type.
    let (token, _) = form_token(&app, "/ui", None).await;
    let json_form = client()
        .post(app.url("/ui/queues/emails/pause"))
        .header(header::COOKIE, format!("conveyor_csrf={token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(format!("{{\"csrf\": \"{token}\"}}"))
        .send()
        .await
        .expect("post");
    assert_eq!(json_form.status(), 415);
    // Actions with bad paths or fields.
    // The overview has no form; the cookie's token is the field's.
    let (field, _) = form_token(&app, "/ui", None).await;
    let cookie = format!("conveyor_csrf={field}");
    for (path, body, expected) in [
        (
            "/ui/queues/NOT%20A%20QUEUE/pause",
            format!("csrf={field}"),
            422,
        ),
        ("/ui/jobs/not-a-uuid/retry", format!("csrf={field}"), 422),
        (
            "/ui/jobs/01a22990-50cf-7603-bba8-793292da3f6a/retry",
            format!("csrf={field}"),
            404,
        ),
        ("/ui/schedules/nope/trigger", format!("csrf={field}"), 404),
        ("/ui/jobs/retry", format!("csrf={field}"), 422),
        (
            "/ui/jobs/retry",
            format!("csrf={field}&status=running"),
            422,
        ),
        (
            "/ui/jobs/cancel",
            format!("csrf={field}&status=completed"),
            422,
        ),
        ("/ui/jobs/cancel", format!("csrf={field}&queue=%FF"), 422),
        (
            "/ui/jobs/cancel",
            format!("csrf={field}&queue=a&queue=b"),
            400,
        ),
    ] {
        let response = post_form(&app, path, &cookie, body.clone()).await;
        assert_eq!(response.status(), expected, "{path} {body}");
    }
}

#[tokio::test]
async fn what_jobs_carry_is_shown_escaped() {
    let app = TestApp::start().await;
    let job = app
        .create(
            json!({"type": "send_email", "payload": {"html": "<script>alert(1)</script>"},
                       "idempotency_key": "<img src=x onerror=alert(2)>"}),
        )
        .await;
    let id = job["id"].as_str().expect("id");
    let html = get(&app, &format!("/ui/jobs/{id}"))
        .await
        .text()
        .await
        .expect("html");
    assert!(!html.contains("<script>alert"), "payload not escaped");
    assert!(!html.contains("<img src=x"), "key not escaped");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    let found = get(&app, "/ui/find?q=%3Cimg%20src%3Dx%20onerror%3Dalert(2)%3E").await;
    assert_eq!(found.status(), 303);
    assert_eq!(
        found.headers()[header::LOCATION],
        format!("/ui/jobs/{id}").as_str()
    );
}

#[tokio::test]
async fn a_form_without_this_browsers_token_changes_nothing() {
    let app = TestApp::start().await;
    app.create(json!({"type": "send_email", "queue": "emails", "payload": {}}))
        .await;
    let (cookie, field) = form_token(&app, "/ui/queues", None).await;
    assert_eq!(cookie, field, "the page's field is the cookie's token");
    let post = |cookie: Option<String>, body: String| {
        let mut request = client()
            .post(app.url("/ui/queues/emails/pause"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body);
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        request.send()
    };
    // No cookie, no field, another token, an empty one, another site.
    for (cookie, body) in [
        (None, format!("csrf={field}")),
        (Some(format!("conveyor_csrf={cookie}")), String::new()),
        (
            Some(format!("conveyor_csrf={cookie}")),
            format!("csrf={}", "0".repeat(64)),
        ),
        (Some("conveyor_csrf=".to_owned()), "csrf=".to_owned()),
    ] {
        let response = post(cookie.clone(), body.clone()).await.expect("post");
        assert_eq!(response.status(), 403, "{cookie:?} {body}");
    }
    let cross_site = client()
        .post(app.url("/ui/queues/emails/pause"))
        .header(header::COOKIE, format!("conveyor_csrf={cookie}"))
        .header("sec-fetch-site", "cross-site")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("csrf={field}"))
        .send()
        .await
        .expect("post");
    assert_eq!(cross_site.status(), 403);
    let kind = cross_site.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        kind.starts_with("text/html"),
        "refused before the dashboard, still a page: {kind}"
    );
    assert!(!queue_paused(&app, "emails").await);

    let response = post(
        Some(format!("conveyor_csrf={cookie}")),
        format!("csrf={field}"),
    )
    .await
    .expect("post");
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()[header::LOCATION],
        "/ui/queues?done=paused"
    );
    assert!(queue_paused(&app, "emails").await);
}

#[tokio::test]
async fn a_read_only_dashboard_shows_no_actions_and_refuses_them() {
    let app = TestApp::with(Options {
        settings: Settings {
            ui_read_only: true,
            ..Settings::default()
        },
        ..Options::default()
    })
    .await;
    app.create(json!({"type": "send_email", "queue": "emails", "payload": {}}))
        .await;
    let html = get(&app, "/ui/queues").await.text().await.expect("html");
    assert!(
        html.contains("read-only") && html.contains("emails"),
        "{html}"
    );
    assert!(!html.contains("/pause\""), "a pause form is shown: {html}");
    let (cookie, field) = form_token(&app, "/ui/queues", None).await;
    let response = post_form(
        &app,
        "/ui/queues/emails/pause",
        format!("conveyor_csrf={cookie}"),
        format!("csrf={field}"),
    )
    .await;
    assert_eq!(response.status(), 403);
    assert!(
        response
            .text()
            .await
            .unwrap_or_default()
            .contains("read_only")
    );
    assert!(!queue_paused(&app, "emails").await);
}

#[tokio::test]
async fn with_a_token_the_dashboard_needs_a_session_cookie_from_the_login_form() {
    let app = TestApp::with_token("s3cret-token").await;
    let response = get(&app, "/ui/failed?queue=a").await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()[header::LOCATION],
        "/ui/login?next=%2Fui%2Ffailed%3Fqueue%3Da"
    );
    // The bearer token is for the API; the dashboard wants its cookie.
    let bearer = client()
        .get(app.url("/ui"))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .expect("page");
    assert_eq!(bearer.status(), 303);

    let (csrf, field) = form_token(&app, "/ui/login", None).await;
    let log_in = |token: &str, next: &str| {
        client()
            .post(app.url("/ui/login"))
            .header(header::COOKIE, format!("conveyor_csrf={csrf}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!("csrf={field}&token={token}&next={next}"))
            .send()
    };
    let wrong = log_in("nope", "%2Fui").await.expect("login");
    assert_eq!(wrong.status(), 401);
    assert!(set_cookie(&wrong, "conveyor_session").is_none());

    let right = log_in("s3cret-token", "%2F%2Fevil.example")
        .await
        .expect("login");
    assert_eq!(right.status(), 303);
    assert_eq!(
        right.headers()[header::LOCATION],
        "/ui",
        "never to another site"
    );
    let (session, whole) = set_cookie(&right, "conveyor_session").expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(whole.contains(flag), "{whole}");
    }
    assert!(!whole.contains("Secure"), "plain HTTP: {whole}");
    assert!(
        !session.contains("s3cret"),
        "the token is not in the cookie"
    );
    let page = client()
        .get(app.url("/ui/failed"))
        .header(header::COOKIE, format!("conveyor_session={session}"))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200);

    // Behind an HTTPS proxy the cookie is Secure.
    let proxied = client()
        .post(app.url("/ui/login"))
        .header(header::COOKIE, format!("conveyor_csrf={csrf}"))
        .header("x-forwarded-proto", "https")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("csrf={field}&token=s3cret-token"))
        .send()
        .await
        .expect("login");
    let (_, whole) = set_cookie(&proxied, "conveyor_session").expect("a session cookie");
    assert!(whole.contains("; Secure"), "{whole}");

    // A forged or stale session, and a post without one.
    for forged in ["", "1.abc", "99999999999.00", &format!("{session}0")] {
        let page = client()
            .get(app.url("/ui"))
            .header(header::COOKIE, format!("conveyor_session={forged}"))
            .send()
            .await
            .expect("page");
        assert_eq!(page.status(), 303, "{forged:?}");
    }
    let post = post_form(
        &app,
        "/ui/queues/default/pause",
        format!("conveyor_csrf={csrf}"),
        format!("csrf={field}"),
    )
    .await;
    assert_eq!(post.status(), 401);
}

#[tokio::test]
async fn pages_forbid_framing_and_foreign_code() {
    let app = TestApp::start().await;
    for path in ["/ui", "/ui/nothing", "/ui/assets/ui.js"] {
        let response = get(&app, path).await;
        let headers = response.headers();
        let csp = headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap_or_default();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{path}: {csp}"
        );
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY", "{path}");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
    }
}

#[tokio::test]
async fn a_live_refresh_gets_the_live_regions_without_the_payload() {
    let app = TestApp::start().await;
    let job = app
        .create(json!({"type": "send_email", "payload": {"marker": "payload-marker"}}))
        .await;
    let path = format!("/ui/jobs/{}", job["id"].as_str().expect("id"));
    let full = get(&app, &path).await.text().await.expect("html");
    assert!(
        full.contains("payload-marker") && full.contains("<nav"),
        "{full}"
    );
    let live = client()
        .get(app.url(&path))
        .header("x-conveyor-live", "1")
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(
        live.contains("id=\"job-detail\"") && live.contains("data-now="),
        "{live}"
    );
    assert!(
        !live.contains("payload-marker") && !live.contains("<nav"),
        "{live}"
    );
}

#[tokio::test]
async fn guessing_the_token_is_stopped_after_twenty_tries_a_minute() {
    let app = TestApp::with_token("s3cret-token").await;
    let (csrf, field) = form_token(&app, "/ui/login", None).await;
    let log_in = |token: &'static str| {
        client()
            .post(app.url("/ui/login"))
            .header(header::COOKIE, format!("conveyor_csrf={csrf}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!("csrf={field}&token={token}"))
            .send()
    };
    for _ in 0..api::ui::login::MAX_FAILED_LOGINS_PER_MINUTE {
        assert_eq!(log_in("guess").await.expect("login").status(), 401);
    }
    assert_eq!(log_in("guess").await.expect("login").status(), 429);
    // The right token too, for the rest of the minute; the API is not
    // affected.
    assert_eq!(log_in("s3cret-token").await.expect("login").status(), 429);
    let api = client()
        .get(app.url("/queues"))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .expect("api");
    assert_eq!(api.status(), 200);
}

/// A job's attempts read as they happened: a failed attempt that was
/// retried says so, and a manual retry (attempts count from 1 again) is
/// marked between the runs.
#[tokio::test]
async fn attempts_show_retries_and_the_runs_a_manual_retry_starts() {
    use conveyor::JobId;
    let app = TestApp::start().await;
    let job = app
        .create(json!({"type": "charge", "payload": {}, "max_attempts": 2}))
        .await;
    let id: JobId = job["id"].as_str().expect("id").parse().expect("uuid");
    app.fail_attempt(id, "first run, first try").await;
    app.fail_attempt(id, "first run, last try").await;
    let (status, _) = app.post(&format!("/jobs/{id}/retry")).await;
    assert_eq!(status, 200);
    app.fail_attempt(id, "second run, first try").await;
    let html = get(&app, &format!("/ui/jobs/{id}"))
        .await
        .text()
        .await
        .expect("html");
    assert_eq!(html.matches("then retried").count(), 2, "{html}");
    assert_eq!(html.matches("queued again by hand").count(), 1, "{html}");
    let order: Vec<usize> = [
        "second run, first try",
        "queued again by hand",
        "first run, last try",
        "first run, first try",
    ]
    .iter()
    .map(|text| html.find(text).unwrap_or(usize::MAX))
    .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "newest first, runs apart: {order:?}"
    );
}
