//! The six scenarios. Each returns its figures for one run; every loop is
//! bounded by a count and a deadline, and all traffic goes to the API URL
//! given (127.0.0.1 in scripts/bench.sh).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sea_orm::DatabaseConnection;
use serde_json::{Value, json};

use crate::Args;
use crate::cpu::CpuTimes;
use crate::stack::{Tuning, Workers, count, peak_rss_mb};
use crate::stats::{ms, percentile};

/// Longest any scenario may take before it is called a failure.
pub const DEADLINE: Duration = Duration::from_secs(600);
/// Connections used by the submit scenarios.
const CONNECTIONS: usize = 32;
const BATCH_SIZE: usize = 1_000;
const BATCH_CONNECTIONS: usize = 4;

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

pub fn noop() -> Value {
    json!({"type": "noop", "payload": {}})
}

/// POSTs `count` single jobs over `CONNECTIONS` connections; returns the
/// elapsed time and each request's latency.
async fn submit_singles(args: &Args, count: usize) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let client = client();
    let next = Arc::new(AtomicUsize::new(0));
    let url = format!("{}/jobs", args.api_url);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (client, next, url) = (client.clone(), next.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count && started.elapsed() < DEADLINE {
                let sent = Instant::now();
                let response = client.post(&url).json(&noop()).send().await?;
                if response.status() != 201 {
                    bail!("POST /jobs answered {}", response.status());
                }
                latencies.push(sent.elapsed());
            }
            Ok(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(count);
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok((started.elapsed(), latencies))
}

/// POSTs `count` jobs in batches of 1,000 over a few connections.
pub async fn submit_batches(
    args: &Args,
    count: usize,
    connections: usize,
) -> anyhow::Result<Duration> {
    let client = client();
    let batches = count.div_ceil(BATCH_SIZE);
    let next = Arc::new(AtomicUsize::new(0));
    let url = format!("{}/jobs/batch", args.api_url);
    let body = Arc::new(json!({"jobs": vec![noop(); BATCH_SIZE]}));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, next, url, body) = (client.clone(), next.clone(), url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < batches && started.elapsed() < DEADLINE {
                let response = client.post(&url).json(&*body).send().await?;
                if response.status() != 200 {
                    bail!("POST /jobs/batch answered {}", response.status());
                }
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed())
}

/// Completed jobs in the table now (before a run adds `expected` more).
pub async fn completed(db: &DatabaseConnection) -> anyhow::Result<i64> {
    count(
        db,
        "SELECT count(*) AS n FROM jobs WHERE status = 'completed'",
    )
    .await
}

/// Waits until no job is left to run, then checks that `expected` jobs
/// completed beyond the `already` completed before the run. The poll asks only whether one unfinished job is left: a
/// count of finished rows every 50 ms grows with the table and took a
/// backend's worth of PostgreSQL's CPU from the workers it measures. Gives
/// up after [`DEADLINE`], or a millisecond a job when that is longer.
pub async fn wait_completed(
    db: &DatabaseConnection,
    already: i64,
    expected: i64,
    since: Instant,
) -> anyhow::Result<Duration> {
    let deadline = DEADLINE.max(Duration::from_millis(expected.unsigned_abs()));
    loop {
        let unfinished = count(
            db,
            "SELECT count(*) AS n FROM (SELECT 1 FROM jobs \
             WHERE status IN ('queued', 'retrying', 'running') LIMIT 1) AS left_over",
        )
        .await?;
        if unfinished == 0 {
            break;
        }
        if since.elapsed() > deadline {
            bail!("jobs were still unfinished after {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = since.elapsed();
    let done = count(
        db,
        &format!(
            "SELECT count(*) AS n FROM (SELECT 1 FROM jobs WHERE status = 'completed' LIMIT {}) AS done",
            already + expected
        ),
    )
    .await?
        - already;
    if done < expected {
        bail!("only {done} of {expected} jobs completed; the rest ended otherwise");
    }
    Ok(elapsed)
}

/// Scenario 1, submit: requests/s, p50 and p99 latency (workers off).
pub async fn submit(args: &Args) -> anyhow::Result<Vec<(&'static str, f64)>> {
    let (elapsed, mut latencies) = submit_singles(args, args.submit_count).await?;
    Ok(vec![
        (
            "submit_requests_per_sec",
            args.submit_count as f64 / elapsed.as_secs_f64(),
        ),
        ("submit_p50_ms", ms(percentile(&mut latencies, 50.0))),
        ("submit_p99_ms", ms(percentile(&mut latencies, 99.0))),
    ])
}

/// Scenario 2, submit-batch: jobs/s through /jobs/batch (workers off).
pub async fn submit_batch(args: &Args) -> anyhow::Result<Vec<(&'static str, f64)>> {
    let elapsed = submit_batches(args, args.submit_count, BATCH_CONNECTIONS).await?;
    Ok(vec![(
        "submit_batch_jobs_per_sec",
        args.submit_count as f64 / elapsed.as_secs_f64(),
    )])
}

/// Scenario 3, drain: pre-load noop jobs, start the workers, time until all
/// are completed; and scenario 6, memory: peak RSS of the API and of a
/// worker meanwhile.
pub async fn drain(
    args: &Args,
    db: &DatabaseConnection,
) -> anyhow::Result<Vec<(&'static str, f64)>> {
    let (jobs_per_sec, worker_rss, cpu) = timed_drain(args, db, Tuning::Bench).await?;
    let mut figures = vec![
        ("drain_jobs_per_sec", jobs_per_sec),
        ("worker_peak_rss_mb", worker_rss),
    ];
    figures.extend(cpu);
    if let Some(api_rss) = args.api_pid.and_then(peak_rss_mb) {
        figures.push(("api_peak_rss_mb", api_rss));
    }
    Ok(figures)
}

/// The drain again, with the workers as they start by default (their
/// default concurrency, `info` logs in text, read from a pipe): how much of
/// the benchmark's figure a default deployment keeps.
pub async fn drain_defaults(
    args: &Args,
    db: &DatabaseConnection,
) -> anyhow::Result<Vec<(&'static str, f64)>> {
    let (jobs_per_sec, _, _) = timed_drain(args, db, Tuning::Defaults).await?;
    Ok(vec![("drain_defaults_jobs_per_sec", jobs_per_sec)])
}

/// Pre-loads `--drain-count` noop jobs, starts workers tuned as `tuning`
/// says, and waits until every job is completed: jobs/s, the largest
/// peak RSS of a worker, in MB, and the CPU each job cost each process
/// ([`CpuTimes::per_job`]).
pub async fn timed_drain(
    args: &Args,
    db: &DatabaseConnection,
    tuning: Tuning,
) -> anyhow::Result<(f64, f64, Vec<(&'static str, f64)>)> {
    submit_batches(args, args.drain_count, 8)
        .await
        .context("pre-loading")?;
    let loaded = count(db, "SELECT count(*) AS n FROM jobs WHERE status = 'queued'").await?;
    let already = completed(db).await?;
    let started = Instant::now();
    let workers = Workers::start(args, tuning).await?;
    let cpu_before = CpuTimes::now(&workers.pids());
    let elapsed = wait_completed(db, already, loaded, started).await?;
    let cpu = cpu_before.per_job(&CpuTimes::now(&workers.pids()), loaded as f64);
    let worker_rss = workers
        .pids()
        .iter()
        .filter_map(|pid| peak_rss_mb(*pid))
        .fold(0.0, f64::max);
    workers.stop().await;
    Ok((loaded as f64 / elapsed.as_secs_f64(), worker_rss, cpu))
}

/// Scenario 4, end-to-end: workers running while jobs are submitted;
/// sustained jobs/s from the first submission to the last completion.
pub async fn end_to_end(
    args: &Args,
    db: &DatabaseConnection,
) -> anyhow::Result<Vec<(&'static str, f64)>> {
    Ok(vec![(
        "end_to_end_jobs_per_sec",
        timed_end_to_end(args, db).await?,
    )])
}

/// Starts the workers, submits `--e2e-count` single jobs and waits until
/// all completed: jobs/s.
pub async fn timed_end_to_end(args: &Args, db: &DatabaseConnection) -> anyhow::Result<f64> {
    let already = completed(db).await?;
    let workers = Workers::start(args, Tuning::Bench).await?;
    let started = Instant::now();
    submit_singles(args, args.e2e_count).await?;
    let elapsed = wait_completed(db, already, args.e2e_count as i64, started).await?;
    workers.stop().await;
    Ok(args.e2e_count as f64 / elapsed.as_secs_f64())
}

/// Scenario 5, latency: one job at a time on idle workers. Submit-to-start and
/// submit-to-completed from the database's timestamps; the client's view
/// from sending the POST until `/result` answers 200.
pub async fn latency(
    args: &Args,
    db: &DatabaseConnection,
) -> anyhow::Result<Vec<(&'static str, f64)>> {
    let workers = Workers::start(args, Tuning::Bench).await?;
    let client = client();
    let mut observed = Vec::with_capacity(args.latency_count);
    for _ in 0..args.latency_count {
        let sent = Instant::now();
        let response = client
            .post(format!("{}/jobs", args.api_url))
            .json(&noop())
            .send()
            .await?;
        let job: Value = response.json().await?;
        let id = job["id"].as_str().context("no id")?.to_owned();
        loop {
            let result = client
                .get(format!("{}/jobs/{id}/result", args.api_url))
                .send()
                .await?;
            if result.status() == 200 {
                break;
            }
            if sent.elapsed() > Duration::from_secs(10) {
                bail!("job {id} did not complete within 10 s");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        observed.push(sent.elapsed());
        // Idle between jobs, as a lone client would be.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    workers.stop().await;
    Ok(vec![
        (
            "latency_submit_to_start_p50_ms",
            since_submit_ms(db, "started_at", 50.0).await?,
        ),
        (
            "latency_submit_to_start_p99_ms",
            since_submit_ms(db, "started_at", 99.0).await?,
        ),
        (
            "latency_submit_to_completed_p50_ms",
            since_submit_ms(db, "completed_at", 50.0).await?,
        ),
        (
            "latency_submit_to_completed_p99_ms",
            since_submit_ms(db, "completed_at", 99.0).await?,
        ),
        (
            "latency_client_observed_p50_ms",
            ms(percentile(&mut observed, 50.0)),
        ),
        (
            "latency_client_observed_p99_ms",
            ms(percentile(&mut observed, 99.0)),
        ),
    ])
}

/// Percentile `p` (0..=100) over the completed jobs of the time from
/// submission (`created_at`) to `column` (`started_at` or `completed_at`),
/// by the database's timestamps, in ms.
pub async fn since_submit_ms(db: &DatabaseConnection, column: &str, p: f64) -> anyhow::Result<f64> {
    let us = count(
        db,
        &format!(
            "SELECT (percentile_cont({}) WITHIN GROUP (ORDER BY \
             extract(epoch FROM {column} - created_at)) * 1000000)::bigint AS n \
             FROM jobs WHERE status = 'completed'",
            p / 100.0
        ),
    )
    .await?;
    Ok(us as f64 / 1000.0)
}
