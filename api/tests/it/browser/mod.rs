//! The dashboard in a real browser (see [`harness`]): what a new user
//! does with it, every page at desktop and phone widths, live counts, the
//! login form.

mod harness;

use std::time::Duration;

use api::Settings;
use conveyor::JobId;
use conveyor::broker::{Tally, WorkerInfo};
use serde_json::{Value, json};

use crate::support::{Options, TestApp};
use harness::Browser;

/// A job of queue `queue` under idempotency key `key` that failed twice,
/// each attempt with its own error, as a worker would have left it.
async fn failed_job(app: &TestApp, queue: &str, key: &str) -> JobId {
    let job = app
        .create(
            json!({"type": "charge", "queue": queue, "payload": {"order": 42},
                       "max_attempts": 2, "idempotency_key": key}),
        )
        .await;
    let id: JobId = job["id"].as_str().expect("id").parse().expect("uuid");
    for error in [
        "card declined: insufficient funds",
        "gateway timeout after 30 s",
    ] {
        app.fail_attempt(id, error).await;
    }
    let shown = app.get(&format!("/jobs/{id}")).await.1;
    assert_eq!(shown["status"], "failed", "{shown}");
    id
}

/// The journey the dashboard exists for: a new user finds a failed job by
/// its idempotency key, reads every attempt's error, retries it, and
/// pauses its queue, all by clicking and typing.
#[tokio::test]
async fn a_new_user_finds_a_failed_job_by_its_key_retries_it_and_pauses_its_queue() {
    let app = TestApp::start().await;
    let id = failed_job(&app, "payments", "order-42").await;
    let Some(browser) = Browser::start(&app.base).await else {
        return;
    };

    browser.open("/ui").await;
    browser
        .wait_for_text("the overview", |text| text.contains("Jobs by status"))
        .await;
    browser.click("nav a[href='/ui/jobs']").await;
    browser.wait_for_path(|path| path == "/ui/jobs").await;
    let find = browser.find("#find").await;
    find.send_keys("order-42\u{e007}")
        .await
        .expect("type the key and Enter");
    browser
        .wait_for_path(|path| path == format!("/ui/jobs/{id}"))
        .await;
    let attempts = browser.text("#attempts").await;
    assert!(
        attempts.contains("card declined: insufficient funds"),
        "{attempts}"
    );
    assert!(
        attempts.contains("gateway timeout after 30 s"),
        "{attempts}"
    );
    assert_eq!(browser.text("#job-status").await, "failed");

    browser.click("#job-retry").await;
    browser
        .client
        .accept_alert()
        .await
        .expect("confirm the retry");
    browser
        .wait_for_text("the retry's notice", |text| text.contains("Queued again."))
        .await;
    assert_eq!(browser.text("#job-status").await, "queued");
    let shown = app.get(&format!("/jobs/{id}")).await.1;
    assert_eq!(shown["status"], "queued", "{shown}");

    browser.click("nav a[href='/ui/queues']").await;
    browser.wait_for_path(|path| path == "/ui/queues").await;
    browser.click("#pause-payments").await;
    browser
        .client
        .accept_alert()
        .await
        .expect("confirm the pause");
    browser
        .wait_for_text("the pause's notice", |text| text.contains("Paused."))
        .await;
    assert!(browser.text("#queue-payments").await.contains("paused"));
    let queues = app.get("/queues").await.1;
    let payments = queues["queues"]
        .as_array()
        .and_then(|queues| queues.iter().find(|q| q["name"] == "payments"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(payments["settings"]["paused"], true, "{queues}");
    browser.screenshot("dashboard-queues").await;

    browser.click("#resume-payments").await;
    browser
        .wait_for_text("the resume's notice", |text| text.contains("Resumed."))
        .await;
    let row = browser.text("#queue-payments").await;
    assert!(!row.contains("paused"), "{row}");
    browser.close().await;
}

/// Seeds something for every page: jobs in several states, a schedule, a
/// registered worker.
async fn seed_everything(app: &TestApp) -> JobId {
    let failed = failed_job(app, "payments", "order-7").await;
    for n in 0..3 {
        app.create(json!({"type": "send_email", "queue": "emails", "payload": {"n": n}}))
            .await;
    }
    let (status, schedule) = app
        .post_json(
            "/schedules",
            &json!({"name": "nightly-report", "cron": "0 3 * * *", "timezone": "Europe/Berlin",
                    "job": {"type": "report", "queue": "reports", "payload": {}}}),
        )
        .await;
    assert_eq!(status, 201, "{schedule}");
    let broker = crate::support::broker_for(&app.redis, 1);
    broker
        .heartbeat(
            &WorkerInfo {
                id: "worker-a".to_owned(),
                host: "host-1".to_owned(),
                pid: 4242,
                queues: vec!["payments".to_owned(), "emails".to_owned()],
                concurrency: 16,
                started_at: chrono::Utc::now().to_rfc3339(),
                running: 0,
                heartbeat: Duration::from_secs(3),
            },
            Duration::from_secs(60),
        )
        .await
        .expect("register a worker");
    broker
        .add_tally(
            "seed",
            1,
            &Tally {
                completed: 1_180,
                retried: 14,
                failed: 3,
            },
        )
        .await
        .expect("count some attempts");
    failed
}

/// Every page loads, shows what was seeded, and fits a 390 px phone
/// screen without sideways scrolling of the page itself (wide tables
/// scroll inside their box).
#[tokio::test]
async fn every_page_loads_at_desktop_and_phone_width() {
    let app = TestApp::start().await;
    let failed = seed_everything(&app).await;
    let Some(browser) = Browser::start(&app.base).await else {
        return;
    };
    let pages = [
        ("/ui", "dashboard-overview", "Jobs by status"),
        ("/ui/queues", "dashboard-queues-list", "emails"),
        ("/ui/jobs", "dashboard-jobs", "send_email"),
        (
            &*format!("/ui/jobs/{failed}"),
            "dashboard-job-detail",
            "gateway timeout",
        ),
        (
            "/ui/failed",
            "dashboard-failed",
            "gateway timeout after 30 s",
        ),
        ("/ui/schedules", "dashboard-schedules", "nightly-report"),
        ("/ui/workers", "dashboard-workers", "host-1"),
    ];
    for (path, name, expected) in pages {
        browser.resize(1280, 900).await;
        browser.open(path).await;
        browser
            .wait_for_text(&format!("{path} to show {expected:?}"), |text| {
                text.contains(expected)
            })
            .await;
        browser.screenshot(name).await;
        browser.resize(390, 844).await;
        browser.open(path).await;
        browser
            .wait_for_text(&format!("{path} at phone width"), |text| {
                text.contains(expected)
            })
            .await;
        let overflow = browser
            .eval("return document.documentElement.scrollWidth - document.documentElement.clientWidth;")
            .await;
        assert_eq!(overflow, json!(0), "{path} is wider than a 390 px screen");
    }
    browser.close().await;
}

/// The overview's counts change without a reload, and the page is not
/// reloaded to do it.
#[tokio::test]
async fn counts_change_without_reloading_the_page() {
    let app = TestApp::start().await;
    app.create(json!({"type": "send_email", "payload": {}}))
        .await;
    let Some(browser) = Browser::start(&app.base).await else {
        return;
    };
    browser.open("/ui").await;
    let queued = browser
        .wait_for("#count-queued", |text| text.contains('1'))
        .await;
    assert!(queued.starts_with("queued"), "{queued}");
    // A mark on this page: a reload would lose it.
    browser
        .eval("window.conveyorMark = 'still here'; return null;")
        .await;
    // Where the boxes are: a live update must not move them.
    let boxes = "return ['#count-queued', '#latency', '#workers-alive', 'svg.spark', '#main h2:last-of-type']
        .map(css => { const r = document.querySelector(css).getBoundingClientRect();
                      return [css, r.x, r.y, r.width, r.height]; });";
    let before = browser.eval(boxes).await;
    for n in 0..2 {
        app.create(json!({"type": "send_email", "payload": {"n": n}}))
            .await;
    }
    browser
        .wait_for("#count-queued", |text| text.ends_with('3'))
        .await;
    assert_eq!(
        browser.eval(boxes).await,
        before,
        "a live update moved the layout"
    );
    assert_eq!(
        browser.eval("return window.conveyorMark || null;").await,
        json!("still here"),
        "the page was reloaded"
    );
    browser.close().await;
}

/// Filtering, cancelling a waiting job (with its confirmation) and
/// retrying everything that failed, from the pages.
#[tokio::test]
async fn jobs_are_filtered_canceled_and_retried_in_bulk_from_the_pages() {
    let app = TestApp::start().await;
    let failed = failed_job(&app, "payments", "order-9").await;
    let waiting = app
        .create(json!({"type": "send_email", "queue": "emails", "payload": {}}))
        .await;
    let waiting: JobId = waiting["id"].as_str().expect("id").parse().expect("uuid");
    let Some(browser) = Browser::start(&app.base).await else {
        return;
    };

    browser.open("/ui/jobs").await;
    let status = browser.find("#f-status").await;
    status
        .select_by_value("queued")
        .await
        .expect("choose a status");
    browser.click("#filter-go").await;
    browser
        .wait_for_path(|path| path.starts_with("/ui/jobs?status=queued"))
        .await;
    let list = browser.text("#jobs-list").await;
    assert!(list.contains("1 job matches"), "{list}");
    assert!(
        list.contains("send_email") && !list.contains("charge"),
        "{list}"
    );

    browser.open(&format!("/ui/jobs/{waiting}")).await;
    browser.click("#job-cancel").await;
    browser
        .client
        .accept_alert()
        .await
        .expect("confirm the cancel");
    browser
        .wait_for_text("the cancel's notice", |text| text.contains("Canceled."))
        .await;
    assert_eq!(browser.text("#job-status").await, "canceled");

    browser.open("/ui/failed").await;
    browser.click("#bulk-retry").await;
    browser
        .client
        .accept_alert()
        .await
        .expect("confirm the bulk retry");
    browser
        .wait_for_text("the bulk retry's notice", |text| {
            text.contains("Queued 1 job again.")
        })
        .await;
    let shown = app.get(&format!("/jobs/{failed}")).await.1;
    assert_eq!(shown["status"], "queued", "{shown}");
    browser.close().await;
}

/// With a token, the dashboard asks for it once, and keeps the session in
/// a cookie no script can read.
#[tokio::test]
async fn the_login_form_trades_the_token_for_a_session() {
    let app = TestApp::with(Options {
        settings: Settings {
            api_token: Some("s3cret-token".to_owned()),
            ..Settings::default()
        },
        ..Options::default()
    })
    .await;
    let Some(browser) = Browser::start(&app.base).await else {
        return;
    };
    browser.open("/ui/failed").await;
    browser
        .wait_for_path(|path| path.starts_with("/ui/login"))
        .await;
    browser.screenshot("dashboard-login").await;
    browser
        .find("#token")
        .await
        .send_keys("wrong")
        .await
        .expect("type");
    browser.click("#log-in").await;
    browser
        .wait_for_text("the refusal", |text| text.contains("That is not the token"))
        .await;
    browser
        .find("#token")
        .await
        .send_keys("s3cret-token")
        .await
        .expect("type");
    browser.click("#log-in").await;
    browser.wait_for_path(|path| path == "/ui/failed").await;
    assert_eq!(
        browser.eval("return document.cookie;").await,
        json!(""),
        "HttpOnly cookies only"
    );
    browser.click("button.link").await;
    browser
        .wait_for_path(|path| path.starts_with("/ui/login"))
        .await;
    browser.open("/ui").await;
    browser
        .wait_for_path(|path| path.starts_with("/ui/login"))
        .await;
    browser.close().await;
}

/// The live refresh asks again only after an answer (a slow server is
/// never asked twice at once), and not at all while the tab is hidden.
#[tokio::test]
async fn live_refreshes_never_overlap_and_stop_while_the_tab_is_hidden() {
    let app = TestApp::start().await;
    let Some(browser) = Browser::start(&app.base).await else {
        return;
    };
    browser.open("/ui/queues").await;
    browser
        .wait_for("#live-status", |text| text == "Live")
        .await;
    // Every answer takes 2.5 s, longer than the 2 s between polls: a timer
    // that did not wait for the answer would have two under way.
    browser
        .eval(
            "window.polls = 0; window.inFlight = 0; window.mostInFlight = 0;
             const fetchNow = window.fetch;
             window.fetch = async (...args) => {
               window.polls++; window.inFlight++;
               window.mostInFlight = Math.max(window.mostInFlight, window.inFlight);
               await new Promise(done => setTimeout(done, 2500));
               try { return await fetchNow(...args); } finally { window.inFlight--; }
             };
             return null;",
        )
        .await;
    let polls = || async {
        browser
            .eval("return window.polls;")
            .await
            .as_u64()
            .unwrap_or(0)
    };
    let deadline = tokio::time::Instant::now() + harness::PATIENCE;
    while polls().await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the page stopped polling"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(browser.eval("return window.mostInFlight;").await, json!(1));

    // Hidden: the poll under way ends, and no other starts.
    browser
        .eval(
            "Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
             document.dispatchEvent(new Event('visibilitychange'));
             return null;",
        )
        .await;
    browser
        .wait_for("#live-status", |text| text == "Paused while hidden")
        .await;
    let deadline = tokio::time::Instant::now() + harness::PATIENCE;
    while browser.eval("return window.inFlight;").await != json!(0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the last poll never ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hidden_at = polls().await;
    // Longer than two poll periods: a poll would have started by now.
    browser
        .eval("return new Promise(done => setTimeout(() => done(null), 5000));")
        .await;
    assert_eq!(polls().await, hidden_at, "polled while hidden");

    // Shown again: polling resumes at once.
    browser
        .eval(
            "Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});
             document.dispatchEvent(new Event('visibilitychange'));
             return null;",
        )
        .await;
    let deadline = tokio::time::Instant::now() + harness::PATIENCE;
    while polls().await == hidden_at {
        assert!(
            tokio::time::Instant::now() < deadline,
            "polling did not resume"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.close().await;
}

/// Without a mouse: Tab reaches the skip link first, then every control in
/// order, and Enter presses a button (here: pausing a queue).
#[tokio::test]
async fn a_queue_is_paused_with_the_keyboard_alone() {
    let app = TestApp::start().await;
    app.create(json!({"type": "send_email", "queue": "emails", "payload": {}}))
        .await;
    let Some(browser) = Browser::start(&app.base).await else {
        return;
    };
    browser.open("/ui/queues").await;
    browser
        .wait_for("#queue-emails", |text| text.contains("emails"))
        .await;
    let focused = "return document.activeElement ? (document.activeElement.id || document.activeElement.textContent.trim()) : null;";
    let body = browser.find("body").await;
    body.send_keys("\u{e004}").await.expect("Tab");
    assert_eq!(browser.eval(focused).await, json!("Skip to content"));
    // On through the page until the pause button has the focus.
    let mut reached = false;
    for _ in 0..40 {
        let active = browser.client.active_element().await.expect("focus");
        if browser.eval(focused).await == json!("pause-emails") {
            active.send_keys("\u{e007}").await.expect("Enter");
            reached = true;
            break;
        }
        active.send_keys("\u{e004}").await.expect("Tab");
    }
    assert!(reached, "Tab never reached the pause button");
    browser
        .client
        .accept_alert()
        .await
        .expect("confirm the pause");
    browser
        .wait_for_text("the pause's notice", |text| text.contains("Paused."))
        .await;
    assert!(browser.text("#queue-emails").await.contains("paused"));
    // Focus is visible: the stylesheet outlines controls focused from the
    // keyboard.
    let outlined = browser
        .eval(
            "return [...document.styleSheets].flatMap(sheet => [...sheet.cssRules])
                .some(rule => rule.selectorText === ':focus-visible' && rule.style.outline.includes('solid'));",
        )
        .await;
    assert_eq!(outlined, json!(true));
    browser.close().await;
}
