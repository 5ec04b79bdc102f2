//! A worker killed mid-job, and a stale worker finishing late.

use std::sync::Arc;
use std::time::Duration;

use conveyor::{Fence, JobStatus, WorkerId};
use serde_json::json;
use tokio::sync::Notify;

use crate::support::{Calls, Harness, id, job, registry_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_job_is_finished_by_another_within_the_recovery_time() {
    let h = Harness::new().await;
    let calls = Calls::default();
    // First attempt hangs (the worker dies during it); later ones finish.
    let mut registry = registry_with(&calls);
    let recorder = calls.clone();
    registry.register(
        "hangs_once",
        move |_p: serde_json::Value, ctx: worker::Context| {
            let calls = recorder.clone();
            async move {
                calls.record(&ctx);
                if ctx.attempt == 1 {
                    std::future::pending::<()>().await;
                }
                Ok::<_, worker::JobError>(json!({"finished_on_attempt": ctx.attempt}))
            }
        },
    );
    let settings = h.settings("doomed");
    let lease = settings.lease;
    let doomed = h.spawn(settings, registry.clone());
    let hanging = h.submit(job("hangs_once", json!({}))).await;
    let running = h
        .wait_for(id(&hanging), JobStatus::Running, Duration::from_secs(10))
        .await;
    assert_eq!(running.worker_id.as_deref(), Some(doomed.id.as_str()));
    // `running` is written by the claim, before the handler starts: wait for
    // the handler itself, or a loaded machine kills the worker before its
    // attempt ran and the count below is one short.
    testkit::wait_until(
        "the first attempt to start",
        Duration::from_secs(10),
        || async { (calls.count(id(&hanging)) == 1).then_some(()) },
    )
    .await;

    let survivor = h.spawn(h.settings("survivor"), registry);
    let killed_at = tokio::time::Instant::now();
    doomed.kill().await;
    let done = h
        .wait_for(id(&hanging), JobStatus::Completed, Duration::from_secs(15))
        .await;
    let recovery = killed_at.elapsed();
    eprintln!("recovered in {recovery:?} with a lease of {lease:?}");
    assert_eq!(
        done.attempts, 2,
        "the lost attempt counts, the rerun is attempt 2"
    );
    assert_eq!(done.result, Some(json!({"finished_on_attempt": 2})));
    assert_eq!(done.worker_id.as_deref(), Some(survivor.id.as_str()));
    // At-least-once: the dead worker's attempt ran (and hung) and the
    // survivor ran it again. One duplicate execution for this fault.
    let duplicates = calls.count(id(&hanging)) - 1;
    eprintln!("killed worker: {duplicates} duplicate execution(s)");
    assert_eq!(duplicates, 1);
    // Within a lease, a heartbeat and a janitor pass (plus scheduling slack).
    assert!(recovery < lease * 4, "recovery took {recovery:?}");
    survivor.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_stale_worker_finishing_late_is_fenced_and_the_new_attempt_stands() {
    let logs = testkit::LogCapture::default();
    let _guard = logs.install();
    let h = Harness::new().await;
    let release = Arc::new(Notify::new());
    let mut registry = worker::builtin_registry();
    let gate = release.clone();
    registry.register(
        "gated",
        move |_p: serde_json::Value, _ctx: worker::Context| {
            let gate = gate.clone();
            async move {
                gate.notified().await;
                Ok::<_, worker::JobError>(json!({"by": "stale"}))
            }
        },
    );
    // Heartbeats far apart, so nothing extends the lease once we expire it:
    // the worker behaves as if paused.
    let mut settings = h.settings("stale");
    settings.heartbeat = Duration::from_secs(60);
    settings.lease = Duration::from_secs(120);
    let stale = h.spawn(settings, registry);
    let gated = h.submit(job("gated", json!({}))).await;
    h.wait_for(id(&gated), JobStatus::Running, Duration::from_secs(10))
        .await;

    // Its lease runs out; a janitor moves the job on; another worker claims
    // it as attempt 2 and completes it.
    h.db.execute(&format!(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = '{}'",
        gated.id
    ))
    .await;
    assert_eq!(h.store.expire_leases(10).await.expect("janitor").len(), 1);
    let successor = WorkerId::new("successor");
    let reclaimed = h
        .store
        .claim(
            id(&gated),
            &successor,
            conveyor::ClaimToken::new(),
            Duration::from_secs(30),
        )
        .await
        .expect("claim")
        .won()
        .expect("successor claims");
    h.store
        .complete(
            &Fence::of(&reclaimed, &successor),
            json!({"by": "successor"}),
        )
        .await
        .expect("complete")
        .won()
        .expect("successor completes");

    // Now the stale worker's handler returns.
    release.notify_one();
    testkit::wait_until(
        "the late write to be fenced",
        Duration::from_secs(10),
        || async {
            logs.text()
                .contains("\"event\":\"job_fenced\"")
                .then_some(())
        },
    )
    .await;
    let after = h.job(id(&gated)).await;
    assert_eq!(after.result, Some(json!({"by": "successor"})));
    assert_eq!(after.attempts, 2);
    assert_eq!(after.worker_id.as_deref(), Some("successor"));
    stale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_whose_pop_reply_was_lost_is_adopted_by_its_worker() {
    use redis::Commands;
    let h = Harness::new().await;
    let worker = h.spawn(h.settings("w"), worker::builtin_registry());
    // What a BRPOPLPUSH whose reply died with the connection leaves behind:
    // the id in this worker's processing list, and no task that knows of it.
    let orphan = h
        .store
        .insert(&job("noop", json!({})))
        .await
        .expect("insert")
        .job()
        .clone();
    let processing = h.keys().processing("default", worker.id.as_str());
    let _: () = h
        .redis_conn()
        .lpush(&processing, orphan.id.to_string())
        .expect("lpush");
    let done = h
        .wait_for(id(&orphan), JobStatus::Completed, Duration::from_secs(10))
        .await;
    assert_eq!(done.attempts, 1);
    // Acknowledged after the outcome commit.
    testkit::wait_until(
        "the orphan acknowledged",
        Duration::from_secs(5),
        || async {
            let left: i64 = h.redis_conn().llen(&processing).expect("llen");
            (left == 0).then_some(())
        },
    )
    .await;
    worker.stop().await;
}
