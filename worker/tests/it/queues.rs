//! Operable queues with real workers: a pause holds across restarts and
//! Redis data loss, limits hold across three workers, progress shows while
//! a job runs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conveyor::store::{Change, QueueChange};
use conveyor::{Client, JobStatus};
use serde_json::json;
use testkit::wait_until;

use crate::support::{Harness, id, job};

const DEADLINE: Duration = Duration::from_secs(15);

fn in_queue(queue: &str, task_type: &str, payload: serde_json::Value) -> conveyor::NewJob {
    let mut new = job(task_type, payload);
    new.queue = queue.to_owned();
    new
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_holds_across_worker_restarts_and_redis_data_loss_until_resumed() {
    let h = Harness::new().await;
    let client = Client::new(h.store.clone(), h.broker.clone());
    let mut settings = h.settings("w");
    settings.queues = vec!["default".to_owned(), "probe".to_owned()];
    let worker = h.spawn(settings.clone(), worker::builtin_registry());

    // A job already running when the pause commits finishes.
    let running = h.submit(job("sleep", json!({"ms": 300}))).await;
    h.wait_for(id(&running), JobStatus::Running, DEADLINE).await;
    client.pause_queue("default").await.expect("pause");
    h.wait_for(id(&running), JobStatus::Completed, DEADLINE)
        .await;

    // A paused queue accepts jobs; a probe in another queue shows the
    // worker fetching past it.
    let held = h.submit(job("noop", json!({}))).await;
    let probe = h.submit(in_queue("probe", "noop", json!({}))).await;
    h.wait_for(id(&probe), JobStatus::Completed, DEADLINE).await;
    assert_eq!(h.job(id(&held)).await.status, JobStatus::Queued);

    // Redis loses everything and the worker restarts: the pause is in
    // PostgreSQL. The reconciler puts the held id back in its lane.
    worker.stop().await;
    h.redis.delete_all().expect("wipe redis");
    let worker = h.spawn(settings, worker::builtin_registry());
    let lane = h.keys().ready("default", 0);
    let held_id = held.id.to_string();
    wait_until("the held id back in its lane", DEADLINE, || async {
        let ids: Vec<String> = redis::Commands::lrange(&mut h.redis_conn(), &lane, 0, -1).ok()?;
        ids.contains(&held_id).then_some(())
    })
    .await;
    let probe = h.submit(in_queue("probe", "noop", json!({}))).await;
    h.wait_for(id(&probe), JobStatus::Completed, DEADLINE).await;
    assert_eq!(h.job(id(&held)).await.status, JobStatus::Queued);
    assert!(
        h.store
            .attempts(id(&held))
            .await
            .expect("history")
            .is_empty()
    );

    client.resume_queue("default").await.expect("resume");
    h.wait_for(id(&held), JobStatus::Completed, DEADLINE).await;
    worker.stop().await;
}

/// A handler that counts how many of its runs overlap and when each began.
#[derive(Clone, Default)]
struct Overlap {
    now: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    starts: Arc<Mutex<Vec<tokio::time::Instant>>>,
}

impl Overlap {
    fn registry(&self) -> worker::Registry {
        let mut registry = worker::builtin_registry();
        let overlap = self.clone();
        registry.register(
            "tracked",
            move |_p: serde_json::Value, _ctx: worker::Context| {
                let overlap = overlap.clone();
                async move {
                    overlap
                        .starts
                        .lock()
                        .expect("lock")
                        .push(tokio::time::Instant::now());
                    let now = overlap.now.fetch_add(1, Ordering::SeqCst) + 1;
                    overlap.most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(60)).await;
                    overlap.now.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, worker::JobError>(json!({}))
                }
            },
        );
        registry
    }
}

/// Configures the default queue with `change` (read by each worker before
/// it fetches), runs `count` tracked jobs on three workers of four slots,
/// and returns what they saw.
async fn run_on_three_workers(change: QueueChange, count: usize) -> Overlap {
    let h = Harness::new().await;
    let client = Client::new(h.store.clone(), h.broker.clone());
    client
        .configure_queue("default", &change)
        .await
        .expect("configure");
    let overlap = Overlap::default();
    let workers: Vec<_> = (0..3)
        .map(|n| h.spawn(h.settings(&format!("w{n}")), overlap.registry()))
        .collect();
    let mut jobs = Vec::new();
    for _ in 0..count {
        jobs.push(h.submit(job("tracked", json!({}))).await);
    }
    for job in &jobs {
        h.wait_for(id(job), JobStatus::Completed, DEADLINE).await;
    }
    for worker in workers {
        worker.stop().await;
    }
    overlap
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_limit_holds_across_three_workers() {
    let change = QueueChange {
        concurrency_limit: Change::Set(2),
        ..QueueChange::default()
    };
    let overlap = run_on_three_workers(change, 16).await;
    let most = overlap.most.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&most),
        "at most 2 at once across 3 workers of 4 slots, saw {most}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_across_three_workers() {
    // 4 starts per second, bursts of 1.
    let change = QueueChange {
        rate_limit: Change::Set(4.0),
        rate_burst: Change::Set(1),
        ..QueueChange::default()
    };
    let overlap = run_on_three_workers(change, 8).await;
    let starts = overlap.starts.lock().expect("lock").clone();
    assert_eq!(starts.len(), 8);
    let span = starts.iter().max().copied().expect("starts")
        - starts.iter().min().copied().expect("starts");
    // Eight starts at four per second after a burst of one take 1.75 s by
    // Redis's clock; the first start may be recorded late (a worker's first
    // claim opens its connections), so allow it most of a second.
    assert!(
        span >= Duration::from_millis(1_000),
        "8 starts within {span:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_shows_while_the_job_runs_and_bad_reports_are_refused() {
    let h = Harness::new().await;
    let release = Arc::new(tokio::sync::Notify::new());
    let mut registry = worker::builtin_registry();
    let gate = release.clone();
    registry.register(
        "reports",
        move |_p: serde_json::Value, ctx: worker::Context| {
            let gate = gate.clone();
            async move {
                let nul = ctx.progress(json!({"bad": "a\u{0}b"}));
                let huge = ctx.progress("x".repeat(worker::handler::MAX_PROGRESS_BYTES + 1));
                let mut deep = json!(1);
                for _ in 0..100 {
                    deep = json!([deep]);
                }
                let deep = ctx.progress(deep);
                for step in 1..=3 {
                    ctx.progress(json!({"step": step, "of": 3}))
                        .map_err(worker::JobError::permanent)?;
                }
                gate.notified().await;
                Ok::<_, worker::JobError>(json!({
                    "nul_refused": matches!(nul, Err(worker::ProgressError::Unstorable)),
                    "huge_refused": matches!(huge, Err(worker::ProgressError::TooLarge { .. })),
                    "deep_refused": matches!(deep, Err(worker::ProgressError::TooDeep)),
                }))
            }
        },
    );
    let worker = h.spawn(h.settings("w"), registry);
    let reporting = h.submit(job("reports", json!({}))).await;
    wait_until("the progress report", DEADLINE, || async {
        let job = h.job(id(&reporting)).await;
        (job.progress == Some(json!({"step": 3, "of": 3}))).then_some(())
    })
    .await;
    release.notify_one();
    let done = h
        .wait_for(id(&reporting), JobStatus::Completed, DEADLINE)
        .await;
    assert_eq!(
        done.result,
        Some(json!({"nul_refused": true, "huge_refused": true, "deep_refused": true}))
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_jobs_table_bounded_under_a_steady_load() {
    let h = Harness::new().await;
    let mut settings = h.settings("w");
    settings.retention = conveyor::maintenance::retention::Retention {
        completed_secs: 1,
        failed_secs: 1,
        canceled_secs: 1,
    };
    settings.retention_interval = Duration::from_millis(200);
    let worker = h.spawn(settings, worker::builtin_registry());

    // 50 jobs a second for 6 seconds: 300 jobs, each kept about a second
    // after it completes.
    let total = 300;
    let mut most = 0;
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    for _ in 0..total / 5 {
        ticker.tick().await;
        for _ in 0..5 {
            h.submit(job("noop", json!({}))).await;
        }
        most = most.max(h.db.count("SELECT count(*) AS n FROM jobs").await);
    }
    assert!(
        most < total * 6 / 10,
        "the table held {most} of {total} jobs at once; retention keeps about 60"
    );
    wait_until("every job pruned", DEADLINE, || async {
        (h.db.count("SELECT count(*) AS n FROM jobs").await == 0).then_some(())
    })
    .await;
    assert_eq!(
        h.db.count("SELECT count(*) AS n FROM job_attempts").await,
        0
    );
    worker.stop().await;
}
