//! `recover-stuck`, and the reconciler making Redis agree with PostgreSQL.

use std::collections::HashMap;
use std::time::Duration;

use conveyor::maintenance::reconciler::reconcile_once;
use conveyor::store::StuckAction;
use conveyor::{Fence, JobStatus, WorkerId};
use redis::Commands;
use serde_json::json;
use worker::recover::{self, Line, Options};

use crate::support::{Calls, Harness, id, job, registry_with};

const TEN_MINUTES: Duration = Duration::from_secs(600);

/// A job claimed by a worker that then hung, `minutes` ago.
async fn running_for(h: &Harness, minutes: u32) -> conveyor::Job {
    let inserted = h.insert_unpublished(job("demo", json!({}))).await;
    let hung = WorkerId::new("hung-worker");
    h.store
        .claim(
            id(&inserted),
            &hung,
            conveyor::ClaimToken::new(),
            Duration::from_secs(3600),
        )
        .await
        .expect("claim")
        .won()
        .expect("claimed");
    h.db.execute(&format!(
        "UPDATE jobs SET started_at = now() - interval '{minutes} minutes' WHERE id = '{}'",
        inserted.id
    ))
    .await;
    h.job(id(&inserted)).await
}

fn options(action: StuckAction, dry_run: bool) -> Options {
    Options {
        older_than: TEN_MINUTES,
        action,
        dry_run,
    }
}

#[tokio::test]
async fn stuck_jobs_are_failed_and_recent_ones_left_alone() {
    let h = Harness::new().await;
    let stuck = running_for(&h, 20).await;
    let recent = running_for(&h, 2).await;
    let report = recover::recover_stuck(&h.store, &h.broker, options(StuckAction::Fail, false))
        .await
        .expect("recover");
    assert_eq!(report.recovered_ids(), [stuck.id.to_string()]);
    assert_eq!(
        report.summary(false),
        format!("recovered 1 job(s): {}", stuck.id)
    );
    let failed = h.job(id(&stuck)).await;
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(
        failed.error_message.as_deref(),
        Some("Job timed out while running")
    );
    assert!(failed.failed_at.is_some() && failed.lease_expires_at.is_none());
    assert_eq!(
        h.job(id(&recent)).await,
        recent,
        "a recent running job is untouched"
    );
}

#[tokio::test]
async fn a_job_that_finishes_between_read_and_write_is_left_alone() {
    let h = Harness::new().await;
    let stuck = running_for(&h, 20).await;
    let seen = h
        .store
        .running_longer_than(TEN_MINUTES)
        .await
        .expect("read");
    assert_eq!(seen.len(), 1);
    // The hung worker wakes up and completes it before the write.
    h.store
        .complete(
            &Fence::of(&stuck, &WorkerId::new("hung-worker")),
            json!({"late": "but fine"}),
        )
        .await
        .expect("complete")
        .won()
        .expect("completed");
    let outcome = h
        .store
        .recover_stuck(&seen[0], StuckAction::Fail)
        .await
        .expect("recover");
    assert!(!outcome.is_won());
    let after = h.job(id(&stuck)).await;
    assert_eq!(after.status, JobStatus::Completed);
    assert_eq!(after.result, Some(json!({"late": "but fine"})));
    // The same holds for a job reclaimed (new attempt) meanwhile.
    let other = running_for(&h, 20).await;
    let seen = h
        .store
        .running_longer_than(TEN_MINUTES)
        .await
        .expect("read");
    h.db.execute(&format!(
        "UPDATE jobs SET attempts = 2, started_at = now() WHERE id = '{}'",
        other.id
    ))
    .await;
    assert!(
        !h.store
            .recover_stuck(&seen[0], StuckAction::Fail)
            .await
            .expect("recover")
            .is_won()
    );
    assert_eq!(h.job(id(&other)).await.status, JobStatus::Running);
}

#[tokio::test]
async fn requeue_sends_stuck_jobs_back_to_work_unless_attempts_are_used_up() {
    let h = Harness::new().await;
    let stuck = running_for(&h, 30).await;
    let exhausted = running_for(&h, 30).await;
    h.db.execute(&format!(
        "UPDATE jobs SET max_attempts = 1 WHERE id = '{}'",
        exhausted.id
    ))
    .await;
    let report = recover::recover_stuck(&h.store, &h.broker, options(StuckAction::Requeue, false))
        .await
        .expect("recover");
    assert_eq!(report.recovered_ids().len(), 2);
    assert!(report.publish_error.is_none());
    let requeued = h.job(id(&stuck)).await;
    assert_eq!(requeued.status, JobStatus::Retrying);
    assert!(requeued.run_at <= chrono::Utc::now());
    let ready: Vec<String> = h
        .redis_conn()
        .lrange(h.keys().ready("default", 0), 0, -1)
        .expect("lrange");
    assert_eq!(ready, [stuck.id.to_string()], "a requeued job is published");
    assert_eq!(h.job(id(&exhausted)).await.status, JobStatus::Failed);
    assert!(
        report
            .lines
            .iter()
            .any(|line| line.render().starts_with("requeued"))
    );
}

#[tokio::test]
async fn dry_run_lists_and_changes_nothing() {
    let h = Harness::new().await;
    let stuck = running_for(&h, 20).await;
    let report = recover::recover_stuck(&h.store, &h.broker, options(StuckAction::Fail, true))
        .await
        .expect("recover");
    assert!(matches!(report.lines.as_slice(), [Line::WouldRecover(job)] if job.id == stuck.id));
    assert_eq!(
        report.summary(true),
        format!("dry run: would recover 1 job(s): {}", stuck.id)
    );
    assert_eq!(h.job(id(&stuck)).await, stuck);
}

async fn cli(h: &Harness, database_url: &str, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_conveyor-worker"))
        .arg("recover-stuck")
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("REDIS_URL", &h.redis.url)
        .env("CONVEYOR_PREFIX", &h.redis.prefix)
        .env("RUST_LOG", "error")
        .env_remove("RUST_BACKTRACE")
        .output()
        .await
        .expect("run conveyor-worker")
}

#[tokio::test]
async fn the_command_prints_each_job_and_a_summary_and_exits_by_outcome() {
    let h = Harness::new().await;
    let stuck = running_for(&h, 20).await;

    let dry = cli(&h, &h.db.url, &["--timeout-minutes", "10", "--dry-run"]).await;
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(
        stdout.contains(&format!("stuck     {}", stuck.id)),
        "{stdout}"
    );
    assert!(
        stdout.contains("dry run: would recover 1 job(s)"),
        "{stdout}"
    );
    assert_eq!(h.job(id(&stuck)).await.status, JobStatus::Running);

    let real = cli(&h, &h.db.url, &["--timeout-minutes", "10"]).await;
    let stdout = String::from_utf8_lossy(&real.stdout);
    assert!(real.status.success());
    assert!(
        stdout.contains(&format!("failed    {}", stuck.id)),
        "{stdout}"
    );
    assert!(
        stdout
            .trim_end()
            .ends_with(&format!("recovered 1 job(s): {}", stuck.id)),
        "{stdout}"
    );
    assert_eq!(h.job(id(&stuck)).await.status, JobStatus::Failed);

    let again = cli(&h, &h.db.url, &[]).await;
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("recovered 0 job(s)"));

    for bad in [
        &["--timeout-minutes", "0"][..],
        &["--timeout-minutes", "soon"],
        &["--bogus"],
    ] {
        let out = cli(&h, &h.db.url, bad).await;
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(!out.stderr.is_empty());
    }

    let down = cli(&h, "postgres://postgres@127.0.0.1:9/nowhere", &[]).await;
    assert_eq!(down.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(
        stderr.starts_with("error: could not recover stuck jobs: PostgreSQL"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_loses_every_key_each_waiting_job_still_runs_exactly_once() {
    let h = Harness::new().await;
    let calls = Calls::default();
    let mut jobs = Vec::new();
    for n in 0..500 {
        let mut new = job("counted", json!({"n": n}));
        new.priority = (n % 10) as i16;
        jobs.push(h.submit(new).await);
    }
    assert!(!h.redis.keys().is_empty());
    h.redis
        .delete_all()
        .expect("delete every key of the prefix");
    assert!(h.redis.keys().is_empty(), "Redis lost everything");

    let a = h.spawn(h.settings("a"), registry_with(&calls));
    let b = h.spawn(h.settings("b"), registry_with(&calls));
    let started = tokio::time::Instant::now();
    testkit::wait_until(
        "all 500 jobs to complete",
        Duration::from_secs(60),
        || async {
            let summary = h.store.count_by_queue_and_status().await.expect("count");
            let completed: i64 = summary
                .iter()
                .filter(|c| c.status == "completed")
                .map(|c| c.count)
                .sum();
            (completed == 500).then_some(())
        },
    )
    .await;
    eprintln!("recovered 500 jobs in {:?}", started.elapsed());
    a.stop().await;
    b.stop().await;
    let mut runs: HashMap<conveyor::JobId, usize> = HashMap::new();
    for (job_id, _, _) in calls.all() {
        *runs.entry(job_id).or_default() += 1;
    }
    let duplicates: usize = runs.values().map(|n| n.saturating_sub(1)).sum();
    eprintln!("Redis lost every key: {duplicates} duplicate execution(s) over 500 jobs");
    for job in &jobs {
        assert_eq!(runs.get(&id(job)), Some(&1), "job {} ran once", job.id);
        assert_eq!(h.job(id(job)).await.attempts, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_committed_but_never_published_still_runs() {
    let h = Harness::new().await;
    let worker = h.spawn(h.settings("w"), worker::builtin_registry());
    // Let the reconciler set the epoch, so this is the quiet-period path.
    testkit::wait_until("the epoch key", Duration::from_secs(10), || async {
        h.broker.epoch_exists().await.ok().filter(|exists| *exists)
    })
    .await;
    // The API committed this job and crashed before publishing it.
    let orphan = h.insert_unpublished(job("noop", json!({}))).await;
    h.wait_for(id(&orphan), JobStatus::Completed, Duration::from_secs(15))
        .await;
    worker.stop().await;
}

#[tokio::test]
async fn reconciling_a_large_healthy_backlog_adds_no_duplicates() {
    let h = Harness::new().await;
    h.db.execute(
        "INSERT INTO jobs (id, type, payload, priority) \
         SELECT gen_random_uuid(), 'noop', '{}'::jsonb, n % 10 FROM generate_series(1, 20000) AS n",
    )
    .await;
    let backlog = h
        .store
        .waiting_page(Duration::ZERO, None, 50_000)
        .await
        .expect("read backlog");
    assert_eq!(backlog.len(), 20_000);
    for chunk in backlog.chunks(1_000) {
        h.broker.publish_waiting(chunk).await.expect("publish");
    }
    let maintenance = h.maintenance().await;
    let depth = |h: &Harness| -> i64 {
        let mut conn = h.redis_conn();
        h.keys()
            .ready_lanes("default")
            .iter()
            .map(|lane| conn.llen::<_, i64>(lane).expect("llen"))
            .sum()
    };
    assert_eq!(depth(&h), 20_000);
    // A running process renews the lead every tick while a pass runs; a
    // pass over 20,000 jobs on a busy machine (or a cluster) outlasts one
    // lease, so the test campaigns the same way.
    let stop = tokio_util::sync::CancellationToken::new();
    let campaign = tokio::spawn(conveyor::maintenance::leader::campaign(
        maintenance.clone(),
        stop.clone(),
    ));
    // No workers; several passes, the first as if Redis had been reset (no
    // epoch yet), none with a quiet period: the harshest case.
    for pass in 0..3 {
        let report = reconcile_once(&maintenance, Duration::ZERO)
            .await
            .expect("reconcile");
        assert_eq!(report.checked, 20_000);
        assert_eq!(report.republished, 0, "pass {pass} republished held ids");
        assert_eq!(report.redis_was_reset, pass == 0);
        assert_eq!(depth(&h), 20_000, "pass {pass} grew the lists");
    }
    stop.cancel();
    campaign.await.expect("campaign task");
}
