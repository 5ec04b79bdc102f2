//! The worker protocol: `POST /jobs/claim`, `/jobs/heartbeat`,
//! `/jobs/{id}/complete` and `/jobs/{id}/fail`, driven as a worker in
//! another language would drive them.

use std::sync::Arc;
use std::time::Duration;

use api::Settings;
use conveyor::maintenance::{Maintenance, lease_rescuer::LeaseRescuer};
use conveyor::outage::Outages;
use serde_json::{Value, json};
use testkit::wait_until;

use crate::support::{Options, TestApp, assert_problem};

/// Remote workers' settings for tests: short leases, quick retries.
pub fn quick(lease: Duration) -> conveyor::remote::Settings {
    conveyor::remote::Settings {
        lease,
        retry: conveyor::retry::RetryPolicy {
            base: Duration::from_millis(10),
            max: Duration::from_millis(20),
            jitter: 0.0,
        },
        ..conveyor::remote::Settings::default()
    }
}

pub async fn app_with(remote: conveyor::remote::Settings) -> TestApp {
    TestApp::with(Options {
        remote: Some(remote),
        ..Options::default()
    })
    .await
}

async fn claim(app: &TestApp, body: Value) -> (u16, Value) {
    app.post_json("/jobs/claim", &body).await
}

/// Claims one job for `worker` from `default`, which must be there.
async fn claim_one(app: &TestApp, worker: &str) -> Value {
    let (status, claimed) = claim(app, json!({"worker": worker})).await;
    assert_eq!(status, 200, "{claimed}");
    let jobs = claimed["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 1, "{claimed}");
    jobs[0].clone()
}

async fn job(app: &TestApp, id: &Value) -> Value {
    let (status, job) = app
        .get(&format!("/jobs/{}", id.as_str().expect("id")))
        .await;
    assert_eq!(status, 200, "{job}");
    job
}

async fn complete(app: &TestApp, claimed: &Value, worker: &str, result: Value) -> (u16, Value) {
    app.post_json(
        &format!("/jobs/{}/complete", claimed["id"].as_str().expect("id")),
        &json!({"worker": worker, "token": claimed["token"], "result": result}),
    )
    .await
}

async fn fail(app: &TestApp, claimed: &Value, worker: &str, retry: bool) -> (u16, Value) {
    app.post_json(
        &format!("/jobs/{}/fail", claimed["id"].as_str().expect("id")),
        &json!({"worker": worker, "token": claimed["token"], "error": "boom", "retry": retry}),
    )
    .await
}

async fn heartbeat(app: &TestApp, worker: &str, held: &[&Value]) -> Vec<Value> {
    let jobs: Vec<Value> = held
        .iter()
        .map(|claimed| json!({"id": claimed["id"], "token": claimed["token"]}))
        .collect();
    let (status, answer) = app
        .post_json("/jobs/heartbeat", &json!({"worker": worker, "jobs": jobs}))
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["jobs"].as_array().expect("jobs").clone()
}

/// Runs the lease rescuer (only) every 50 ms until the returned sender
/// is dropped, as the `conveyor-worker` processes of a deployment would.
pub fn run_rescuer(app: &TestApp) -> tokio::sync::oneshot::Sender<()> {
    let settings = conveyor::maintenance::Settings {
        me: conveyor::WorkerId::new("rescuer"),
        queues: vec!["default".to_owned()],
        lease: Duration::from_secs(1),
        tick: Duration::from_millis(50),
        promote_interval: Duration::from_millis(50),
        reconcile_interval: Duration::from_secs(3600),
        epoch_check_interval: Duration::from_secs(3600),
        retention: conveyor::maintenance::retention::Retention::default(),
        retention_interval: Duration::from_secs(3600),
        schedule_interval: Duration::from_secs(3600),
    };
    let maintenance = Maintenance::new(
        conveyor::Store::new(app.db.conn.clone()),
        crate::support::broker_for(&app.redis, 2),
        settings,
        Arc::new(Outages::default()),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(maintenance.run(vec![Arc::new(LeaseRescuer)], async move {
        let _ = stopped.await;
    }));
    stop
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_job_completes_once_and_a_repeated_report_writes_nothing() {
    let app = app_with(quick(Duration::from_secs(30))).await;
    let created = app
        .create(json!({"type": "resize", "payload": {"n": 1}}))
        .await;
    let claimed = claim_one(&app, "py-1").await;
    assert_eq!(claimed["id"], created["id"]);
    assert_eq!(claimed["type"], "resize");
    assert_eq!(claimed["payload"], json!({"n": 1}));
    assert_eq!(claimed["attempt"], 1);
    assert!(claimed["token"].is_string() && claimed["lease_expires_at"].is_string());
    assert!(
        claimed["traceparent"]
            .as_str()
            .expect("traceparent")
            .starts_with("00-")
    );
    let running = job(&app, &claimed["id"]).await;
    assert_eq!(running["status"], "running");
    assert_eq!(running["worker_id"], "remote:py-1", "a remote worker's id");

    let (status, reported) = complete(&app, &claimed, "py-1", json!({"ok": true})).await;
    assert_eq!(status, 200, "{reported}");
    assert_eq!(reported["status"], "completed");
    assert_eq!(reported["repeated"], false);
    // Its answer lost, the worker sends it again: answered alike, not
    // written twice.
    let (status, again) = complete(&app, &claimed, "py-1", json!({"ok": "other"})).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["repeated"], true);
    let done = job(&app, &claimed["id"]).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["result"], json!({"ok": true}));
    assert_eq!(done["attempts"], 1);
    // A failure report for the completed attempt is refused.
    let (status, problem) = fail(&app, &claimed, "py-1", true).await;
    assert_problem(status, &problem, 409, "attempt_lost");

    // Nothing left behind in Redis: no id in the worker's list, none ready.
    let keys = conveyor::Keys::new(&app.redis.prefix);
    let mut conn = app.redis_conn();
    let listed: Vec<String> =
        redis::Commands::lrange(&mut conn, keys.processing("default", "remote:py-1"), 0, -1)
            .expect("lrange");
    assert!(listed.is_empty(), "{listed:?}");
    assert!(app.ready_ids("default", 0).is_empty());
    // An empty queue answers 204 at once without a wait.
    let (status, _) = claim(&app, json!({"worker": "py-1"})).await;
    assert_eq!(status, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_callers_racing_for_jobs_get_each_job_once() {
    let app = Arc::new(app_with(quick(Duration::from_secs(30))).await);
    let mut ids = std::collections::BTreeSet::new();
    for n in 0..30 {
        let created = app.create(json!({"payload": {"n": n}})).await;
        ids.insert(created["id"].as_str().expect("id").to_owned());
    }
    // Every id delivered twice, as a republish racing a delivery would.
    let keys = conveyor::Keys::new(&app.redis.prefix);
    let mut conn = app.redis_conn();
    for id in &ids {
        let _: i64 =
            redis::Commands::lpush(&mut conn, keys.ready("default", 0), id).expect("lpush");
    }
    let start = Arc::new(tokio::sync::Barrier::new(2));
    let racers: Vec<_> = ["racer-a", "racer-b"]
        .into_iter()
        .map(|worker| {
            let (app, start) = (app.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let mut got = Vec::new();
                loop {
                    let (status, claimed) = claim(&app, json!({"worker": worker, "max": 4})).await;
                    match status {
                        204 => return got,
                        200 => {
                            for job in claimed["jobs"].as_array().expect("jobs") {
                                got.push(job.clone());
                            }
                        }
                        other => panic!("claim answered {other}: {claimed}"),
                    }
                }
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for racer in racers {
        claimed.extend(racer.await.expect("racer"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for job in &claimed {
        assert!(
            seen.insert(job["id"].as_str().expect("id").to_owned()),
            "claimed twice: {job}"
        );
        assert_eq!(job["attempt"], 1, "{job}");
    }
    assert_eq!(seen, ids, "every job claimed, once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_token_after_a_lease_loss_changes_nothing() {
    let app = app_with(quick(Duration::from_millis(400))).await;
    let _rescuer = run_rescuer(&app);
    app.create(json!({"payload": {}})).await;
    let stale = claim_one(&app, "slow").await;
    // `slow` stalls: no heartbeat; the lease runs out and the job is
    // handed to `fast`.
    let fresh = wait_until(
        "the job to be claimable again",
        Duration::from_secs(10),
        || async {
            let (status, claimed) = claim(&app, json!({"worker": "fast", "wait_ms": 200})).await;
            (status == 200).then(|| claimed["jobs"][0].clone())
        },
    )
    .await;
    assert_eq!(fresh["id"], stale["id"]);
    assert_eq!(fresh["attempt"], 2);
    assert_ne!(fresh["token"], stale["token"]);

    // `slow` wakes up: its heartbeat says the attempt is lost, its reports
    // are refused and change nothing.
    let states = heartbeat(&app, "slow", &[&stale]).await;
    assert_eq!(states[0]["state"], "lost", "{states:?}");
    let (status, problem) = complete(&app, &stale, "slow", json!("stale")).await;
    assert_problem(status, &problem, 409, "attempt_lost");
    let (status, problem) = fail(&app, &stale, "slow", false).await;
    assert_problem(status, &problem, 409, "attempt_lost");
    // A token of the current attempt under another worker's name is no
    // better.
    let (status, problem) = complete(&app, &fresh, "slow", json!("stolen")).await;
    assert_problem(status, &problem, 409, "attempt_lost");
    let running = job(&app, &fresh["id"]).await;
    assert_eq!(running["status"], "running");
    assert_eq!(running["worker_id"], "remote:fast");

    let (status, _) = complete(&app, &fresh, "fast", json!("fresh")).await;
    assert_eq!(status, 200);
    let done = job(&app, &fresh["id"]).await;
    assert_eq!(done["result"], "fresh");
    assert_eq!(done["attempts"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_job_past_its_lease_and_a_silent_caller_loses_it() {
    let app = app_with(quick(Duration::from_secs(1))).await;
    let _rescuer = run_rescuer(&app);
    app.create(json!({"payload": {}})).await;
    let claimed = claim_one(&app, "beating").await;
    // Two and a half leases, a beat every tenth of one.
    let until = tokio::time::Instant::now() + Duration::from_millis(2500);
    while tokio::time::Instant::now() < until {
        let states = heartbeat(&app, "beating", &[&claimed]).await;
        assert_eq!(states[0]["state"], "running", "{states:?}");
        assert!(states[0]["lease_expires_at"].is_string());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(job(&app, &claimed["id"]).await["status"], "running");

    // Killed mid-job: it never calls again. The rescuer takes the job back
    // once the lease runs out, and it runs again, as for a Rust worker.
    let rescued = wait_until(
        "the rescuer to take the job back",
        Duration::from_secs(10),
        || async {
            let job = job(&app, &claimed["id"]).await;
            (job["status"] != "running").then_some(job)
        },
    )
    .await;
    assert_eq!(rescued["status"], "retrying", "{rescued}");
    assert_eq!(
        rescued["error_message"],
        conveyor::store::LEASE_EXPIRED_ERROR
    );
    let (status, again) = claim(&app, json!({"worker": "next", "wait_ms": 5000})).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["jobs"][0]["attempt"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_wakes_when_a_job_arrives() {
    // A poll round longer than the test's deadline: only the new job's
    // push can end the wait in time.
    let app = app_with(conveyor::remote::Settings {
        poll_interval: Duration::from_secs(25),
        ..quick(Duration::from_secs(30))
    })
    .await;
    let base = app.base.clone();
    let waiting = tokio::spawn(async move {
        let response = reqwest::Client::new()
            .post(format!("{base}/jobs/claim"))
            .json(&json!({"worker": "poller", "wait_ms": 25000}))
            .send()
            .await
            .expect("claim");
        let answered = tokio::time::Instant::now();
        let status = response.status().as_u16();
        (
            status,
            response.json::<Value>().await.expect("json"),
            answered,
        )
    });
    // The poller is registered before it blocks.
    let keys = conveyor::Keys::new(&app.redis.prefix);
    wait_until(
        "the poller to register",
        Duration::from_secs(10),
        || async {
            let mut conn = app.redis_conn();
            let score: Option<f64> =
                redis::Commands::zscore(&mut conn, keys.workers(), "remote:poller")
                    .expect("zscore");
            score.map(|_| ())
        },
    )
    .await;
    let created = app.create(json!({"payload": {}})).await;
    let pushed = tokio::time::Instant::now();
    let (status, claimed, answered) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the long-poll answered before its poll round ended")
        .expect("task");
    assert_eq!(status, 200, "{claimed}");
    assert_eq!(claimed["jobs"][0]["id"], created["id"]);
    // Reported, not asserted: timing belongs to benchmarks.
    println!(
        "long-poll wake-up after the create answered: {:?}",
        answered.saturating_duration_since(pushed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_hangs_up_has_its_claim_put_back_uncounted() {
    let app = app_with(quick(Duration::from_secs(30))).await;
    // A long-poll whose client gives up before any job comes.
    let hung_up = reqwest::Client::new()
        .post(app.url("/jobs/claim"))
        .timeout(Duration::from_millis(300))
        .json(&json!({"worker": "gone", "wait_ms": 5000}))
        .send()
        .await;
    assert!(hung_up.is_err(), "the client timed out");
    // The job arrives while the abandoned claim may still be blocked: it
    // is put back, and the next caller gets it as its first attempt.
    let created = app.create(json!({"payload": {}})).await;
    let (status, claimed) = claim(&app, json!({"worker": "present", "wait_ms": 10000})).await;
    assert_eq!(status, 200, "{claimed}");
    assert_eq!(claimed["jobs"][0]["id"], created["id"]);
    assert_eq!(claimed["jobs"][0]["attempt"], 1, "{claimed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_ends_the_attempt_at_the_next_heartbeat() {
    let app = app_with(quick(Duration::from_secs(30))).await;
    app.create(json!({"payload": {}})).await;
    let claimed = claim_one(&app, "w").await;
    let id = claimed["id"].as_str().expect("id");
    let (status, _) = app.post(&format!("/jobs/{id}/cancel")).await;
    assert_eq!(status, 202);
    let states = heartbeat(&app, "w", &[&claimed]).await;
    assert_eq!(states[0]["state"], "canceled", "{states:?}");
    assert_eq!(job(&app, &claimed["id"]).await["status"], "canceled");
    let (status, problem) = complete(&app, &claimed, "w", json!(1)).await;
    assert_problem(status, &problem, 409, "attempt_lost");
    // Told once; after that the attempt is simply not the worker's.
    let states = heartbeat(&app, "w", &[&claimed]).await;
    assert_eq!(states[0]["state"], "lost", "{states:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_past_its_timeout_is_ended_by_the_heartbeat() {
    let app = app_with(quick(Duration::from_secs(30))).await;
    app.create(json!({"payload": {}, "timeout_seconds": 1}))
        .await;
    let claimed = claim_one(&app, "w").await;
    let deadline: chrono::DateTime<chrono::Utc> = claimed["deadline"]
        .as_str()
        .expect("deadline")
        .parse()
        .expect("time");
    let states = heartbeat(&app, "w", &[&claimed]).await;
    assert_eq!(states[0]["state"], "running");
    wait_until("the deadline to pass", Duration::from_secs(5), || async {
        (chrono::Utc::now() > deadline + chrono::Duration::milliseconds(50)).then_some(())
    })
    .await;
    let states = heartbeat(&app, "w", &[&claimed]).await;
    assert_eq!(states[0]["state"], "timed_out", "{states:?}");
    let after = job(&app, &claimed["id"]).await;
    assert_eq!(after["status"], "retrying", "{after}");
    assert_eq!(after["error_message"], "attempt timed out after 1 s");
    let (status, problem) = complete(&app, &claimed, "w", json!(1)).await;
    assert_problem(status, &problem, 409, "attempt_lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_retry_with_backoff_until_the_last_attempt() {
    let app = app_with(quick(Duration::from_secs(30))).await;
    app.create(json!({"payload": {}, "max_attempts": 2})).await;
    let first = claim_one(&app, "w").await;
    let (status, reported) = fail(&app, &first, "w", true).await;
    assert_eq!(status, 200, "{reported}");
    assert_eq!(reported["status"], "retrying");
    assert!(reported["retry_at"].is_string());
    // Repeated: answered alike, nothing written.
    let (status, again) = fail(&app, &first, "w", true).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["repeated"], true);
    // Due after the backoff; the claim itself promotes it (no
    // `conveyor-worker` serves this queue here).
    let (status, claimed) = claim(&app, json!({"worker": "w", "wait_ms": 5000})).await;
    assert_eq!(status, 200, "{claimed}");
    let second = claimed["jobs"][0].clone();
    assert_eq!(second["attempt"], 2);
    let (status, reported) = fail(&app, &second, "w", true).await;
    assert_eq!(status, 200, "{reported}");
    assert_eq!(reported["status"], "failed", "the last attempt");
    let failed = job(&app, &second["id"]).await;
    assert_eq!(failed["error_message"], "boom");

    // A permanent failure ends the job at once.
    app.create(json!({"payload": {}, "max_attempts": 5})).await;
    let claimed = claim_one(&app, "w").await;
    let (status, reported) = fail(&app, &claimed, "w", false).await;
    assert_eq!(status, 200, "{reported}");
    assert_eq!(reported["status"], "failed");
    assert_eq!(reported["attempt"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_are_taken_in_the_order_given_and_paused_ones_skipped() {
    let app = app_with(quick(Duration::from_secs(30))).await;
    let low = app.create(json!({"payload": {}, "queue": "low"})).await;
    let high = app
        .create(json!({"payload": {}, "queue": "high", "priority": 0}))
        .await;
    let urgent = app
        .create(json!({"payload": {}, "queue": "high", "priority": 9}))
        .await;
    let (status, claimed) = claim(
        &app,
        json!({"worker": "w", "queues": ["high", "low"], "max": 3}),
    )
    .await;
    assert_eq!(status, 200, "{claimed}");
    let order: Vec<&Value> = claimed["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|job| &job["id"])
        .collect();
    assert_eq!(order, [&urgent["id"], &high["id"], &low["id"]]);

    let paused = app
        .client
        .patch(app.url("/queues/paused"))
        .json(&json!({"paused": true}))
        .send()
        .await
        .expect("patch");
    assert_eq!(paused.status(), 200);
    app.create(json!({"payload": {}, "queue": "paused"})).await;
    let (status, _) = claim(
        &app,
        json!({"worker": "w", "queues": ["paused"], "wait_ms": 300}),
    )
    .await;
    assert_eq!(status, 204, "a paused queue gives nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_protocol_input_is_a_422_naming_the_field() {
    let app = app_with(quick(Duration::from_secs(30))).await;
    app.create(json!({"payload": {}})).await;
    let token = uuid::Uuid::new_v4();
    let id = uuid::Uuid::new_v4();
    for (path, body, field) in [
        ("/jobs/claim", json!({}), "worker"),
        ("/jobs/claim", json!({"worker": ""}), "worker"),
        ("/jobs/claim", json!({"worker": "a b"}), "worker"),
        ("/jobs/claim", json!({"worker": "x".repeat(129)}), "worker"),
        ("/jobs/claim", json!({"worker": "w\u{0}"}), "worker"),
        (
            "/jobs/claim",
            json!({"worker": "w", "queues": []}),
            "queues",
        ),
        (
            "/jobs/claim",
            json!({"worker": "w", "queues": ["a", "a"]}),
            "queues[1]",
        ),
        (
            "/jobs/claim",
            json!({"worker": "w", "queues": ["Bad!"]}),
            "queues[0]",
        ),
        ("/jobs/claim", json!({"worker": "w", "max": 0}), "max"),
        ("/jobs/claim", json!({"worker": "w", "max": 101}), "max"),
        ("/jobs/claim", json!({"worker": "w", "max": 1.5}), "max"),
        (
            "/jobs/claim",
            json!({"worker": "w", "wait_ms": -1}),
            "wait_ms",
        ),
        (
            "/jobs/claim",
            json!({"worker": "w", "wait_ms": 30001}),
            "wait_ms",
        ),
        (
            "/jobs/heartbeat",
            json!({"worker": "w", "jobs": [{"id": id, "token": "nope"}]}),
            "jobs[0].token",
        ),
        (
            "/jobs/heartbeat",
            json!({"worker": "w", "jobs": [{"id": id, "token": token}, {"id": id, "token": token}]}),
            "jobs[1].id",
        ),
        (
            &format!("/jobs/{id}/complete"),
            json!({"worker": "w"}),
            "token",
        ),
        (
            &format!("/jobs/{id}/complete"),
            json!({"worker": "w", "token": token, "result": ["\u{0}"]}),
            "result",
        ),
        (
            &format!("/jobs/{id}/fail"),
            json!({"worker": "w", "token": token, "error": ""}),
            "error",
        ),
        (
            &format!("/jobs/{id}/fail"),
            json!({"worker": "w", "token": token}),
            "error",
        ),
        (
            &format!("/jobs/{id}/fail"),
            json!({"worker": "w", "token": token, "error": "e", "retry": "yes"}),
            "retry",
        ),
        (
            &format!("/jobs/{id}/release"),
            json!({"worker": "w"}),
            "token",
        ),
        (
            &format!("/jobs/{id}/release"),
            json!({"worker": "w w", "token": token}),
            "worker",
        ),
    ] {
        let (status, problem) = app.post_json(path, &body).await;
        assert_problem(status, &problem, 422, "invalid_field");
        assert_eq!(problem["field"], field, "{path} {body}: {problem}");
    }
    let (status, problem) = app
        .post_json(
            "/jobs/nope/complete",
            &json!({"worker": "w", "token": token}),
        )
        .await;
    assert_problem(status, &problem, 422, "invalid_field");
    let (status, problem) = app
        .post_json(
            &format!("/jobs/{id}/complete"),
            &json!({"worker": "w", "token": token}),
        )
        .await;
    assert_problem(status, &problem, 404, "job_not_found");
    // None of it claimed anything.
    assert_eq!(app.ready_ids("default", 0).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_that_cannot_be_stored_costs_no_lease() {
    let app = app_with(quick(Duration::from_secs(30))).await;
    app.create(json!({"payload": {}})).await;
    app.create(json!({"payload": {}})).await;
    let (status, claimed) = claim(&app, json!({"worker": "w", "max": 2})).await;
    assert_eq!(status, 200, "{claimed}");
    let jobs = claimed["jobs"].as_array().expect("jobs");
    let (status, answer) = app
        .post_json(
            "/jobs/heartbeat",
            &json!({"worker": "w", "jobs": [
                {"id": jobs[0]["id"], "token": jobs[0]["token"], "progress": {"a": "\u{0}"}},
                {"id": jobs[1]["id"], "token": jobs[1]["token"], "progress": {"done": 1}},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let states = answer["jobs"].as_array().expect("jobs");
    assert!(
        states.iter().all(|state| state["state"] == "running"),
        "both leases renewed: {answer}"
    );
    assert!(
        states[0]["progress_refused"]
            .as_str()
            .is_some_and(|why| why.contains("NUL")),
        "{answer}"
    );
    assert!(states[1].get("progress_refused").is_none(), "{answer}");
    assert_eq!(
        job(&app, &jobs[1]["id"]).await["progress"],
        json!({"done": 1})
    );
    assert_eq!(job(&app, &jobs[0]["id"]).await["progress"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_worker_token_only_workers_can_claim() {
    let app = TestApp::with(Options {
        settings: Settings {
            api_token: Some("submitter-token-0123456789".to_owned()),
            worker_token: Some("worker-token-0123456789ab".to_owned()),
            ..Settings::default()
        },
        ..Options::default()
    })
    .await;
    let post = |path: &str, token: &str, body: Value| {
        app.client
            .post(app.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let created = post(
        "/jobs",
        "submitter-token-0123456789",
        json!({"payload": {}}),
    )
    .await
    .expect("send");
    assert_eq!(created.status(), 201);
    let refused = post(
        "/jobs/claim",
        "submitter-token-0123456789",
        json!({"worker": "w"}),
    )
    .await
    .expect("send");
    assert_eq!(refused.status(), 401, "a submitter cannot claim");
    let refused = post("/jobs", "worker-token-0123456789ab", json!({"payload": {}}))
        .await
        .expect("send");
    assert_eq!(refused.status(), 401, "a worker cannot submit");
    let claimed = post(
        "/jobs/claim",
        "worker-token-0123456789ab",
        json!({"worker": "w"}),
    )
    .await
    .expect("send");
    assert_eq!(claimed.status(), 200);
    let claimed: Value = claimed.json().await.expect("json");
    let job = &claimed["jobs"][0];
    let id = job["id"].as_str().expect("id");
    let beat = json!({"worker": "w", "jobs": [{"id": job["id"], "token": job["token"]}]});
    let report = json!({"worker": "w", "token": job["token"], "error": "e"});
    for (path, body) in [
        ("/jobs/heartbeat".to_owned(), &beat),
        (format!("/jobs/{id}/complete"), &report),
        (format!("/jobs/{id}/fail"), &report),
    ] {
        let refused = post(&path, "submitter-token-0123456789", body.clone())
            .await
            .expect("send");
        assert_eq!(refused.status(), 401, "{path} refuses the API token");
    }
    let beat = post("/jobs/heartbeat", "worker-token-0123456789ab", beat)
        .await
        .expect("send");
    assert_eq!(beat.status(), 200);
    let failed = post(
        &format!("/jobs/{id}/fail"),
        "worker-token-0123456789ab",
        report,
    )
    .await
    .expect("send");
    assert_eq!(failed.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_left_in_a_workers_list_by_a_cut_off_claim_is_adopted_by_its_next_claim() {
    let app = app_with(quick(Duration::from_secs(30))).await;
    let created = app.create(json!({"payload": {}})).await;
    // A claim that moved the id into `w`'s list and died before claiming
    // it (the API killed, PostgreSQL unreachable).
    let keys = conveyor::Keys::new(&app.redis.prefix);
    let mut conn = app.redis_conn();
    let moved: Option<String> = redis::Commands::rpoplpush(
        &mut conn,
        keys.ready("default", 0),
        keys.processing("default", "remote:w"),
    )
    .expect("rpoplpush");
    assert_eq!(moved.as_deref(), created["id"].as_str());
    // Nobody else can take it: it is in no lane.
    let (status, _) = claim(&app, json!({"worker": "other"})).await;
    assert_eq!(status, 204);
    // `w`'s next claim takes it up, and it leaves the list.
    let claimed = claim_one(&app, "w").await;
    assert_eq!(claimed["id"], created["id"]);
    assert_eq!(claimed["attempt"], 1);
    let listed: Vec<String> =
        redis::Commands::lrange(&mut conn, keys.processing("default", "remote:w"), 0, -1)
            .expect("lrange");
    assert!(listed.is_empty(), "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_delivered_twice_in_one_claim_is_given_once() {
    let app = app_with(quick(Duration::from_secs(30))).await;
    let x = app.create(json!({"payload": {"n": "x"}})).await;
    let y = app.create(json!({"payload": {"n": "y"}})).await;
    // The lane pops x, y, x: one sweep takes all three, and the batch
    // claim wins x and y.
    let keys = conveyor::Keys::new(&app.redis.prefix);
    let mut conn = app.redis_conn();
    let _: i64 = redis::Commands::lpush(
        &mut conn,
        keys.ready("default", 0),
        x["id"].as_str().expect("id"),
    )
    .expect("lpush");
    let (status, claimed) = claim(&app, json!({"worker": "w", "max": 3})).await;
    assert_eq!(status, 200, "{claimed}");
    let ids: Vec<&Value> = claimed["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|job| &job["id"])
        .collect();
    assert_eq!(ids, [&x["id"], &y["id"]], "each job once: {claimed}");
    // And the duplicate left nothing behind.
    let listed: Vec<String> =
        redis::Commands::lrange(&mut conn, keys.processing("default", "remote:w"), 0, -1)
            .expect("lrange");
    assert!(listed.is_empty(), "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_one_report_sent_at_once_are_written_once() {
    let app = Arc::new(app_with(quick(Duration::from_secs(30))).await);
    app.create(json!({"payload": {}})).await;
    let claimed = claim_one(&app, "w").await;
    let start = Arc::new(tokio::sync::Barrier::new(8));
    let copies: Vec<_> = (0..8)
        .map(|_| {
            let (app, claimed, start) = (app.clone(), claimed.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                complete(&app, &claimed, "w", json!({"ok": true})).await
            })
        })
        .collect();
    let mut written = 0;
    for copy in copies {
        let (status, reported) = copy.await.expect("copy");
        assert_eq!(status, 200, "{reported}");
        assert_eq!(reported["status"], "completed");
        if reported["repeated"] == false {
            written += 1;
        }
    }
    assert_eq!(written, 1, "one copy wrote, the others found it written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_ended_by_remote_workers_count_in_the_dashboards_throughput() {
    let app = app_with(quick(Duration::from_secs(30))).await;
    app.create(json!({"payload": {}})).await;
    app.create(json!({"payload": {}, "max_attempts": 1})).await;
    let (status, claimed) = claim(&app, json!({"worker": "w", "max": 2})).await;
    assert_eq!(status, 200, "{claimed}");
    let jobs = claimed["jobs"].as_array().expect("jobs");
    assert_eq!(complete(&app, &jobs[0], "w", json!(1)).await.0, 200);
    assert_eq!(fail(&app, &jobs[1], "w", true).await.0, 200);
    // Repeated: counted once.
    assert_eq!(complete(&app, &jobs[0], "w", json!(1)).await.0, 200);
    let broker = crate::support::broker_for(&app.redis, 1);
    let counted = wait_until(
        "the counts to reach Redis",
        Duration::from_secs(10),
        || async {
            let minutes = broker.recent_tally().await.ok()?;
            let (completed, failed) = minutes.iter().fold((0, 0), |(c, f), minute| {
                (c + minute.tally.completed, f + minute.tally.failed)
            });
            (completed + failed >= 2).then_some((completed, failed))
        },
    )
    .await;
    assert_eq!(
        counted,
        (1, 1),
        "one completed, one failed (its only attempt)"
    );
}
