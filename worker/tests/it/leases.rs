//! Leases belong to attempts, not to workers: a worker renews only what its
//! tasks run, and stops a handler whose attempt was taken from it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use conveyor::{ClaimToken, Fence, JobStatus, WorkerId};
use serde_json::json;
use testkit::wait_until;

use crate::support::{Harness, id, job};

const DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_row_that_no_task_holds_is_not_kept_alive_by_its_workers_heartbeat() {
    let h = Harness::new().await;
    let settings = h.settings("w");
    let me = settings.worker_id.clone();
    let worker = h.spawn(settings, worker::builtin_registry());
    // A row that names the live worker but that none of its tasks runs:
    // what a refused outcome write or a lost claim reply leaves behind.
    let orphan = h.insert_unpublished(job("noop", json!({}))).await;
    h.db.execute(&format!(
        "UPDATE jobs SET status = 'running', attempts = 1, worker_id = '{me}', \
         claim_token = gen_random_uuid(), started_at = now(), \
         lease_expires_at = now() + interval '1 second' WHERE id = '{}'",
        orphan.id
    ))
    .await;
    // Its lease runs out; the janitor sends it back and it runs to the end.
    let done = h
        .wait_for(id(&orphan), JobStatus::Completed, DEADLINE)
        .await;
    assert_eq!(
        done.attempts, 2,
        "the orphaned attempt counted, then a new one"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_postgres_cannot_store_fails_the_job_instead_of_leaving_it_running() {
    let h = Harness::new().await;
    let mut registry = worker::builtin_registry();
    registry.register(
        "nul_result",
        |_payload: serde_json::Value, _ctx: worker::Context| async move {
            Ok::<_, worker::JobError>(json!({"text": "a\u{0}b"}))
        },
    );
    let worker = h.spawn(h.settings("w"), registry);
    let submitted = h.submit(job("nul_result", json!({}))).await;
    let failed = h
        .wait_for(id(&submitted), JobStatus::Failed, DEADLINE)
        .await;
    let error = failed.error_message.unwrap_or_default();
    assert!(
        error.contains("result could not be stored"),
        "the error says why: {error}"
    );
    assert_eq!(
        failed.attempts, 1,
        "failed at once: it would fail every time"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_message_with_a_nul_character_is_stored() {
    let h = Harness::new().await;
    let mut registry = worker::builtin_registry();
    registry.register(
        "nul_error",
        |_payload: serde_json::Value, _ctx: worker::Context| async move {
            Err::<serde_json::Value, _>(worker::JobError::permanent("bad\u{0}byte"))
        },
    );
    let worker = h.spawn(h.settings("w"), registry);
    let submitted = h.submit(job("nul_error", json!({}))).await;
    let failed = h
        .wait_for(id(&submitted), JobStatus::Failed, DEADLINE)
        .await;
    assert_eq!(failed.error_message.as_deref(), Some("bad\u{FFFD}byte"));
    worker.stop().await;
}

/// What the lease rescuer does to an attempt whose lease expired.
async fn lose_lease(h: &Harness, job: &conveyor::Job) {
    h.db.execute(&format!(
        "UPDATE jobs SET status = 'retrying', claim_token = NULL, lease_expires_at = NULL, \
         run_at = now(), updated_at = now() WHERE id = '{}' AND status = 'running'",
        job.id
    ))
    .await;
}

/// Handler runs of `stubborn`: a flag per run, set when the run's future
/// is dropped (the handler was stopped).
#[derive(Clone, Default)]
struct Runs(Arc<std::sync::Mutex<Vec<Arc<AtomicBool>>>>);

impl Runs {
    fn started(&self) -> usize {
        self.0.lock().expect("lock").len()
    }

    fn stopped(&self, run: usize) -> bool {
        self.0.lock().expect("lock")[run].load(Ordering::SeqCst)
    }

    /// `stubborn`: ignores cancellation and would run for a minute.
    fn registry(&self) -> worker::Registry {
        let mut registry = worker::builtin_registry();
        let runs = self.clone();
        registry.register(
            "stubborn",
            move |_payload: serde_json::Value, _ctx: worker::Context| {
                let flag = Arc::new(AtomicBool::new(false));
                runs.0.lock().expect("lock").push(flag.clone());
                async move {
                    let _guard = DropFlag(flag);
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    Ok::<_, worker::JobError>(json!({}))
                }
            },
        );
        registry
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_running_two_attempts_of_one_job_stops_the_stale_one() {
    let h = Harness::new().await;
    let runs = Runs::default();
    let mut settings = h.settings("w");
    settings.shutdown_grace = Duration::from_millis(100);
    let worker = h.spawn(settings, runs.registry());
    let submitted = h.submit(job("stubborn", json!({}))).await;
    wait_until("the first run", DEADLINE, || async {
        (runs.started() == 1).then_some(())
    })
    .await;
    // The worker stalled past its lease; the job moved on and came back to
    // the same worker, which claims it again while the first run goes on.
    lose_lease(&h, &submitted).await;
    let retrying = h.job(id(&submitted)).await;
    h.broker
        .publish(std::slice::from_ref(&retrying))
        .await
        .expect("publish");
    wait_until("the second run", DEADLINE, || async {
        (runs.started() == 2).then_some(())
    })
    .await;
    wait_until("the stale run to be stopped", DEADLINE, || async {
        runs.stopped(0).then_some(())
    })
    .await;
    assert!(!runs.stopped(1), "the current attempt runs on");
    assert_eq!(h.job(id(&submitted)).await.attempts, 2);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cut_off_from_postgres_stops_its_handlers_after_a_lease() {
    let h = Harness::new().await;
    let runs = Runs::default();
    let proxy = testkit::Proxy::start(testkit::proxy::target_of(&h.db.url)).await;
    let store = conveyor::Store::connect(&proxy.url_through(&h.db.url), 4)
        .await
        .expect("pool");
    let broker = crate::support::broker_for(&h.redis, 4);
    let mut settings = h.settings("w");
    settings.shutdown_grace = Duration::from_millis(100);
    let lease = settings.lease;
    let worker = h.spawn_with(store, broker, settings, runs.registry());
    h.submit(job("stubborn", json!({}))).await;
    wait_until("the run", DEADLINE, || async {
        (runs.started() == 1).then_some(())
    })
    .await;
    // No renewal gets through any more; after a lease another worker may
    // run the job, so this one must stop it, whatever PostgreSQL says.
    let cut_at = tokio::time::Instant::now();
    proxy.cut();
    wait_until("the handler to be stopped", DEADLINE, || async {
        runs.stopped(0).then_some(())
    })
    .await;
    assert!(
        cut_at.elapsed() >= lease / 2,
        "stopped only once the lease could have run out"
    );
    proxy.restore();
    worker.stop().await;
}

/// Sets its flag when dropped: the handler's future was aborted.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_loses_a_lease_stops_the_handler_and_writes_nothing() {
    let h = Harness::new().await;
    let started = Arc::new(AtomicBool::new(false));
    let stopped = Arc::new(AtomicBool::new(false));
    let mut registry = worker::builtin_registry();
    let (started_flag, stopped_flag) = (started.clone(), stopped.clone());
    registry.register(
        "stubborn",
        move |_payload: serde_json::Value, _ctx: worker::Context| {
            let (started, stopped) = (started_flag.clone(), stopped_flag.clone());
            async move {
                let _guard = DropFlag(stopped);
                started.store(true, Ordering::SeqCst);
                // Ignores cancellation; would run for a minute.
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok::<_, worker::JobError>(json!({"by": "stale"}))
            }
        },
    );
    let settings = h.settings("w");
    let me = settings.worker_id.clone();
    let worker = h.spawn(settings, registry);
    let submitted = h.submit(job("stubborn", json!({}))).await;
    wait_until("the handler to start", DEADLINE, || async {
        started.load(Ordering::SeqCst).then_some(())
    })
    .await;

    // The worker stalls past its lease, the lease rescuer moves the job on
    // (done here in one statement, as the rescuer does, so that the live
    // worker's heartbeat cannot renew the lease in between), and another
    // worker claims it.
    lose_lease(&h, &submitted).await;
    let successor = WorkerId::new("successor");
    let reclaimed = h
        .store
        .claim(
            id(&submitted),
            &successor,
            ClaimToken::new(),
            Duration::from_secs(60),
        )
        .await
        .expect("claim")
        .won()
        .expect("successor claims");

    // The stale worker's next heartbeat finds its attempt gone: it aborts
    // the handler, writes nothing and drops the id.
    wait_until("the stale handler to be stopped", DEADLINE, || async {
        stopped.load(Ordering::SeqCst).then_some(())
    })
    .await;
    let processing = h.keys().processing("default", me.as_str());
    wait_until("the stale worker to drop the id", DEADLINE, || async {
        let mut conn = h.redis_conn();
        let held: Vec<String> =
            redis::Commands::lrange(&mut conn, &processing, 0, -1).expect("lrange");
        held.is_empty().then_some(())
    })
    .await;
    assert_eq!(
        h.job(id(&submitted)).await,
        reclaimed,
        "nothing was written"
    );
    let done = h
        .store
        .complete(
            &Fence::of(&reclaimed, &successor),
            json!({"by": "successor"}),
        )
        .await
        .expect("ran")
        .won()
        .expect("the successor's outcome stands");
    assert_eq!(done.result, Some(json!({"by": "successor"})));
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_refused_once_is_retried_instead_of_left_running() {
    let h = Harness::new().await;
    // PostgreSQL refuses the first attempt's completion once (as a trigger,
    // a check or a statement timeout might), not for an unstorable value.
    h.db.execute(
        "CREATE FUNCTION refuse_first() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.status = 'completed' AND OLD.attempts = 1 THEN \
         RAISE EXCEPTION 'refused once'; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER refuse_first BEFORE UPDATE ON jobs \
         FOR EACH ROW EXECUTE FUNCTION refuse_first();",
    )
    .await;
    let worker = h.spawn(h.settings("w"), worker::builtin_registry());
    let submitted = h.submit(job("noop", json!({}))).await;
    let done = h
        .wait_for(id(&submitted), JobStatus::Completed, DEADLINE)
        .await;
    assert_eq!(done.attempts, 2, "the refused attempt was retried at once");
    worker.stop().await;
}
