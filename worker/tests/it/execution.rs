//! Outcomes: success, permanent failure, retries until exhausted, timeout,
//! panic, unknown type, bad payload, duplicate delivery, cancellation.

use std::time::Duration;

use conveyor::JobStatus;
use redis::Commands;
use serde_json::json;

use crate::support::{Calls, Harness, id, job, registry_with};

const DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_tasks_reach_their_documented_results() {
    let h = Harness::new().await;
    let worker = h.spawn(h.settings("w"), worker::builtin_registry());
    let demo = h.submit(job("demo", json!({"hello": "world"}))).await;
    let chars = h
        .submit(job("char_count", json!({"text": "héllo wörld 🙂"})))
        .await;
    let sleep = h.submit(job("sleep", json!({"ms": 50}))).await;
    let noop = h.submit(job("noop", json!({}))).await;

    let done = h.wait_for(id(&demo), JobStatus::Completed, DEADLINE).await;
    let result = done.result.expect("result");
    assert_eq!(result["processed"], true);
    assert_eq!(
        result["input_size"],
        json!({"hello": "world"}).to_string().len()
    );
    assert!(result["message"].is_string());
    assert_eq!(done.attempts, 1);
    assert!(done.completed_at.is_some() && done.lease_expires_at.is_none());
    let chars = h.wait_for(id(&chars), JobStatus::Completed, DEADLINE).await;
    assert_eq!(chars.result, Some(json!({"characters": 13})));
    let sleep = h.wait_for(id(&sleep), JobStatus::Completed, DEADLINE).await;
    assert_eq!(sleep.result, Some(json!({"slept_ms": 50})));
    let noop = h.wait_for(id(&noop), JobStatus::Completed, DEADLINE).await;
    assert_eq!(noop.result, Some(json!({})));
    worker.stop().await;
    let processing: Vec<String> = h
        .redis_conn()
        .keys(format!("{}:*processing*", h.redis.prefix))
        .expect("keys");
    assert!(
        processing.is_empty(),
        "every id was acknowledged: {processing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_fails_at_once() {
    let h = Harness::new().await;
    let worker = h.spawn(h.settings("w"), worker::builtin_registry());
    let failing = h.submit(job("demo", json!({"fail": true}))).await;
    let failed = h.wait_for(id(&failing), JobStatus::Failed, DEADLINE).await;
    assert_eq!(failed.attempts, 1);
    assert_eq!(
        failed.error_message.as_deref(),
        Some("Forced failure requested by payload")
    );
    assert!(failed.failed_at.is_some());
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_failures_retry_with_growing_delays_until_attempts_run_out() {
    let h = Harness::new().await;
    let calls = Calls::default();
    let mut registry = registry_with(&calls);
    let recorder = calls.clone();
    registry.register(
        "always_flaky",
        move |_p: serde_json::Value, ctx: worker::Context| {
            let calls = recorder.clone();
            async move {
                calls.record(&ctx);
                Err::<serde_json::Value, _>(worker::JobError::retryable("still flaky"))
            }
        },
    );
    let mut settings = h.settings("w");
    settings.retry.base = Duration::from_millis(150);
    settings.retry.max = Duration::from_secs(2);
    let worker = h.spawn(settings, registry);
    let flaky = h.submit(job("always_flaky", json!({}))).await;
    let failed = h.wait_for(id(&flaky), JobStatus::Failed, DEADLINE).await;
    assert_eq!(failed.attempts, 4, "attempts = max_attempts");
    assert_eq!(failed.error_message.as_deref(), Some("still flaky"));

    let runs = calls.all();
    assert_eq!(
        runs.iter()
            .map(|(_, attempt, _)| *attempt)
            .collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    let gaps: Vec<Duration> = runs.windows(2).map(|pair| pair[1].2 - pair[0].2).collect();
    // 150 ms, 300 ms, 600 ms of backoff (no jitter): no retry may start
    // before its delay, whatever the machine's load. Each also arrives late
    // by a promote interval or more on a busy machine (once [347, 347, 650]
    // ms), more than the 150 ms between the first two delays; the first and
    // the last are 450 ms apart.
    for (gap, delay) in gaps.iter().zip([150, 300, 600]) {
        assert!(*gap >= Duration::from_millis(delay), "{gaps:?}");
    }
    assert!(gaps[2] > gaps[0], "delays grow: {gaps:?}");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_transient_failure_passes_through_retrying_to_failed() {
    let h = Harness::new().await;
    let worker = h.spawn(h.settings("w"), worker::builtin_registry());
    let flaky = h.submit(job("demo", json!({"transient_fail": true}))).await;
    let failed = h.wait_for(id(&flaky), JobStatus::Failed, DEADLINE).await;
    assert_eq!(failed.attempts, 4);
    assert_eq!(
        failed.error_message.as_deref(),
        Some("Transient failure requested by payload")
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_over_its_timeout_is_a_retryable_failure() {
    let h = Harness::new().await;
    let worker = h.spawn(h.settings("w"), worker::builtin_registry());
    let mut slow = job("sleep", json!({"ms": 30_000}));
    slow.timeout_seconds = 1;
    slow.max_attempts = 2;
    let slow = h.submit(slow).await;
    let failed = h.wait_for(id(&slow), JobStatus::Failed, DEADLINE).await;
    assert_eq!(failed.attempts, 2, "a timeout is retried");
    assert_eq!(
        failed.error_message.as_deref(),
        Some("attempt timed out after 1 s")
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_caught_and_retried() {
    let h = Harness::new().await;
    let calls = Calls::default();
    let worker = h.spawn(h.settings("w"), registry_with(&calls));
    let mut panicky = job("panics", json!({}));
    panicky.max_attempts = 2;
    let panicky = h.submit(panicky).await;
    let failed = h.wait_for(id(&panicky), JobStatus::Failed, DEADLINE).await;
    assert_eq!(failed.attempts, 2);
    assert_eq!(calls.count(id(&panicky)), 2);
    assert!(
        failed
            .error_message
            .as_deref()
            .unwrap_or_default()
            .starts_with("handler panicked: handler bug"),
        "{:?}",
        failed.error_message
    );
    // The worker survived its handler's panics.
    let after = h.submit(job("noop", json!({}))).await;
    h.wait_for(id(&after), JobStatus::Completed, DEADLINE).await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_types_and_bad_payloads_fail_permanently_with_a_clear_message() {
    let h = Harness::new().await;
    let worker = h.spawn(h.settings("w"), worker::builtin_registry());
    let unknown = h.submit(job("resize_image", json!({}))).await;
    let bad = h.submit(job("sleep", json!({"ms": "soon"}))).await;
    let unknown = h.wait_for(id(&unknown), JobStatus::Failed, DEADLINE).await;
    assert_eq!(unknown.attempts, 1);
    assert!(
        unknown
            .error_message
            .as_deref()
            .unwrap_or_default()
            .starts_with("no handler for task type \"resize_image\"")
    );
    let bad = h.wait_for(id(&bad), JobStatus::Failed, DEADLINE).await;
    assert_eq!(bad.attempts, 1);
    assert!(
        bad.error_message
            .as_deref()
            .unwrap_or_default()
            .starts_with("payload does not fit task type sleep")
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_id_delivered_twice_runs_its_handler_once() {
    let h = Harness::new().await;
    let calls = Calls::default();
    let counted = h
        .store
        .insert(&job("counted", json!({})))
        .await
        .expect("insert")
        .job()
        .clone();
    let ready = h.keys().ready("default", 0);
    let _: () = h
        .redis_conn()
        .lpush(&ready, vec![counted.id.to_string(), counted.id.to_string()])
        .expect("push twice");
    let worker = h.spawn(h.settings("w"), registry_with(&calls));
    h.wait_for(id(&counted), JobStatus::Completed, DEADLINE)
        .await;
    // Both deliveries are acknowledged: the duplicate is skipped, not left.
    let processing = h.keys().processing("default", worker.id.as_str());
    testkit::wait_until("both deliveries acknowledged", DEADLINE, || async {
        let left: i64 = h.redis_conn().llen(&processing).expect("llen");
        let queued: i64 = h.redis_conn().llen(&ready).expect("llen");
        (left == 0 && queued == 0).then_some(())
    })
    .await;
    assert_eq!(calls.count(id(&counted)), 1, "the handler ran once");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceling_a_running_job_that_ignores_it_stops_it_within_a_second() {
    let h = Harness::new().await;
    let worker = h.spawn(h.settings("w"), worker::builtin_registry());
    let long = h.submit(job("sleep", json!({"ms": 60_000}))).await;
    h.wait_for(id(&long), JobStatus::Running, DEADLINE).await;

    let asked = tokio::time::Instant::now();
    assert!(
        h.store
            .request_cancel(id(&long))
            .await
            .expect("request")
            .is_won()
    );
    h.broker.notify_cancel(id(&long)).await.expect("notify");
    let canceled = h
        .wait_for(id(&long), JobStatus::Canceled, Duration::from_secs(2))
        .await;
    let took = asked.elapsed();
    assert!(canceled.canceled_at.is_some());
    assert_eq!(canceled.attempts, 1);
    eprintln!("cancel took {took:?}");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_reaches_the_worker_through_its_heartbeat_too() {
    let h = Harness::new().await;
    let worker = h.spawn(h.settings("w"), worker::builtin_registry());
    let long = h.submit(job("sleep", json!({"ms": 60_000}))).await;
    h.wait_for(id(&long), JobStatus::Running, DEADLINE).await;
    // No notification: only the flag in PostgreSQL.
    assert!(
        h.store
            .request_cancel(id(&long))
            .await
            .expect("request")
            .is_won()
    );
    h.wait_for(id(&long), JobStatus::Canceled, Duration::from_secs(3))
        .await;
    worker.stop().await;
}
