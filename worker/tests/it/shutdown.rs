//! Graceful shutdown puts back what it cannot finish, without counting it.

use std::time::Duration;

use conveyor::JobStatus;
use redis::Commands;
use serde_json::json;

use crate::support::{Calls, Harness, id, job, registry_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_puts_back_a_long_job_which_later_completes_elsewhere() {
    let h = Harness::new().await;
    let calls = Calls::default();
    let mut registry = registry_with(&calls);
    let recorder = calls.clone();
    registry.register(
        "long_first_time",
        move |_p: serde_json::Value, ctx: worker::Context| {
            let calls = recorder.clone();
            async move {
                let first = calls.count(ctx.job_id) == 0;
                calls.record(&ctx);
                if first {
                    tokio::time::sleep(Duration::from_secs(600)).await;
                }
                Ok::<_, worker::JobError>(json!({}))
            }
        },
    );
    let mut settings = h.settings("leaving");
    settings.shutdown_grace = Duration::from_millis(300);
    let leaving = h.spawn(settings, registry.clone());
    let long = h.submit(job("long_first_time", json!({}))).await;
    h.wait_for(id(&long), JobStatus::Running, Duration::from_secs(10))
        .await;

    leaving.stop().await;
    let put_back = h.job(id(&long)).await;
    assert_eq!(put_back.status, JobStatus::Retrying);
    assert_eq!(
        put_back.attempts, 0,
        "the interrupted attempt is not counted"
    );
    let ready: Vec<String> = h
        .redis_conn()
        .lrange(h.keys().ready("default", 0), 0, -1)
        .expect("lrange");
    assert_eq!(
        ready,
        [long.id.to_string()],
        "its id is back on the ready lane"
    );
    let workers: Vec<String> = h
        .redis_conn()
        .zrange(h.keys().workers(), 0, -1)
        .expect("zrange");
    assert!(workers.is_empty(), "the worker deregistered: {workers:?}");

    let next = h.spawn(h.settings("next"), registry);
    let done = h
        .wait_for(id(&long), JobStatus::Completed, Duration::from_secs(10))
        .await;
    assert_eq!(
        done.attempts, 1,
        "attempts are not inflated by the shutdown"
    );
    // The interrupted run is a duplicate execution (not a counted attempt).
    let duplicates = calls.count(id(&long)) - 1;
    eprintln!("graceful shutdown past its grace: {duplicates} duplicate execution(s)");
    assert_eq!(duplicates, 1);
    next.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_that_finish_within_the_grace_period_complete_normally() {
    let h = Harness::new().await;
    let worker = h.spawn(h.settings("w"), worker::builtin_registry());
    let short = h.submit(job("sleep", json!({"ms": 400}))).await;
    h.wait_for(id(&short), JobStatus::Running, Duration::from_secs(10))
        .await;
    worker.stop().await;
    let done = h.job(id(&short)).await;
    assert_eq!(done.status, JobStatus::Completed);
}
