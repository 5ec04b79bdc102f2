//! How cost grows (scenario `growth`, on request): the drain and the
//! end-to-end run with 1, 2 and 4 worker processes; a drain of a
//! `--backlog`-job backlog; the drain and end-to-end again with
//! `--finished-rows` finished jobs already in the table; and submit-to-start
//! latency while jobs arrive at half the end-to-end rate just measured. Each
//! part starts from an empty table and a checkpoint. Returns figures for the
//! summary and series for the plots.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::Args;
use crate::scenarios::{self, DEADLINE, timed_drain, wait_completed};
use crate::stack::{self, Tuning, Workers};

/// The worker counts compared.
const WORKER_COUNTS: [usize; 3] = [1, 2, 4];
/// Connections the steady load is sent over.
const LOAD_CONNECTIONS: usize = 8;
/// Submit-to-start percentiles reported under load.
const PERCENTILES: [f64; 6] = [10.0, 50.0, 90.0, 99.0, 99.9, 100.0];

/// One run's figures, and the points of each plotted series.
#[derive(Debug, Default)]
pub struct Growth {
    pub figures: Vec<(&'static str, f64)>,
    pub series: BTreeMap<&'static str, Vec<(f64, f64)>>,
}

impl Growth {
    fn point(&mut self, series: &'static str, x: f64, y: f64) {
        self.series.entry(series).or_default().push((x, y));
    }
}

pub async fn growth(args: &Args, db: &DatabaseConnection) -> anyhow::Result<Growth> {
    if !WORKER_COUNTS.contains(&args.workers) {
        bail!(
            "the growth scenario's other parts run with --workers, which must be one of {WORKER_COUNTS:?}"
        );
    }
    let mut out = Growth::default();
    let mut baseline = (0.0, 0.0);

    for workers in WORKER_COUNTS {
        let these = Args {
            workers,
            ..args.clone()
        };
        stack::reset(db, &these).await?;
        let (drain, _, _) = timed_drain(&these, db, Tuning::Bench).await?;
        stack::reset(db, &these).await?;
        let end_to_end = scenarios::timed_end_to_end(&these, db).await?;
        let (drain_name, end_to_end_name) = match workers {
            1 => ("growth_drain_1_worker", "growth_end_to_end_1_worker"),
            2 => ("growth_drain_2_workers", "growth_end_to_end_2_workers"),
            _ => ("growth_drain_4_workers", "growth_end_to_end_4_workers"),
        };
        println!(
            "  {workers} worker(s): drain {drain:.0} jobs/s, end to end {end_to_end:.0} jobs/s"
        );
        out.figures.push((drain_name, drain));
        out.figures.push((end_to_end_name, end_to_end));
        out.point("drain_by_workers", workers as f64, drain);
        out.point("end_to_end_by_workers", workers as f64, end_to_end);
        if workers == args.workers {
            baseline = (drain, end_to_end);
        }
    }

    // A deep backlog: every waiting job is in the claim's partial index and
    // in the reconciler's scan.
    stack::reset(db, args).await?;
    let backlog = Args {
        drain_count: args.backlog,
        ..args.clone()
    };
    let (drain, _, _) = timed_drain(&backlog, db, Tuning::Bench).await?;
    println!("  a backlog of {}: drain {drain:.0} jobs/s", args.backlog);
    out.figures.push(("growth_drain_of_backlog", drain));
    out.point("drain_by_backlog", args.drain_count as f64, baseline.0);
    out.point("drain_by_backlog", args.backlog as f64, drain);

    // The same with a table full of finished jobs, as after weeks of use
    // with a long retention.
    stack::reset(db, args).await?;
    let started = Instant::now();
    insert_finished(db, args.finished_rows).await?;
    println!(
        "  {} finished rows inserted and analysed in {:.0} s",
        args.finished_rows,
        started.elapsed().as_secs_f64()
    );
    let (drain, _, _) = timed_drain(args, db, Tuning::Bench).await?;
    let end_to_end = scenarios::timed_end_to_end(args, db).await?;
    println!(
        "  with {} finished rows: drain {drain:.0} jobs/s, end to end {end_to_end:.0} jobs/s",
        args.finished_rows
    );
    out.figures.push(("growth_drain_over_finished_rows", drain));
    out.figures
        .push(("growth_end_to_end_over_finished_rows", end_to_end));
    let finished = args.finished_rows as f64;
    out.point("drain_by_finished_rows", 0.0, baseline.0);
    out.point("drain_by_finished_rows", finished, drain);
    out.point("end_to_end_by_finished_rows", 0.0, baseline.1);
    out.point("end_to_end_by_finished_rows", finished, end_to_end);

    // Latency while the stack is half busy.
    stack::reset(db, args).await?;
    let rate = baseline.1 / 2.0;
    let latencies = latency_under_load(args, db, rate).await?;
    println!(
        "  at {rate:.0} jobs/s (half the end-to-end rate): submit to start {}",
        latencies
            .iter()
            .map(|(p, ms)| format!("p{p}={ms:.1} ms"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    out.figures.push(("growth_half_load_rate", rate));
    for (p, ms) in &latencies {
        out.point("submit_to_start_ms_at_half_load", *p, *ms);
        if *p == 50.0 {
            out.figures.push(("growth_half_load_start_p50_ms", *ms));
        } else if *p == 99.0 {
            out.figures.push(("growth_half_load_start_p99_ms", *ms));
        }
    }
    Ok(out)
}

/// Inserts `rows` completed jobs straight into the table (finished within
/// the last day, so retention keeps them), then vacuums and analyses it as
/// autovacuum would have by then, and checkpoints.
async fn insert_finished(db: &DatabaseConnection, rows: usize) -> anyhow::Result<()> {
    const CHUNK: usize = 500_000;
    let mut left = rows;
    while left > 0 {
        let n = left.min(CHUNK);
        db.execute_unprepared(&format!(
            "INSERT INTO jobs (id, type, payload, status, attempts, created_at, updated_at, \
             started_at, completed_at, result) \
             SELECT gen_random_uuid(), 'noop', '{{}}', 'completed', 1, at, at, at, at, '{{}}' \
             FROM (SELECT now() - random() * interval '1 day' AS at \
                   FROM generate_series(1, {n})) AS finished"
        ))
        .await?;
        left -= n;
    }
    db.execute_unprepared("VACUUM ANALYZE jobs").await?;
    // Writing millions of rows leaves a checkpoint due: take it now, not
    // in the middle of what is measured next.
    if let Err(err) = db.execute_unprepared("CHECKPOINT").await {
        eprintln!("no CHECKPOINT after the insert: {err}");
    }
    Ok(())
}

/// Sends jobs at `rate` per second for `--load-seconds` with workers
/// running, then reads each job's submit-to-start time from the database:
/// (percentile, ms) for each of [`PERCENTILES`].
async fn latency_under_load(
    args: &Args,
    db: &DatabaseConnection,
    rate: f64,
) -> anyhow::Result<Vec<(f64, f64)>> {
    if !rate.is_finite() || rate < 1.0 {
        bail!("no end-to-end rate to load the stack with ({rate})");
    }
    let total = (rate * args.load_seconds as f64).round() as usize;
    let workers = Workers::start(args, Tuning::Bench).await?;
    let client = scenarios::client();
    let url = format!("{}/jobs", args.api_url);
    let every = Duration::from_secs_f64(LOAD_CONNECTIONS as f64 / rate);
    let started = Instant::now();
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..LOAD_CONNECTIONS {
        let (client, url, sent) = (client.clone(), url.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            while sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total
                && started.elapsed() < DEADLINE
            {
                ticker.tick().await;
                let response = client.post(&url).json(&scenarios::noop()).send().await?;
                if response.status() != 201 {
                    bail!("POST /jobs answered {}", response.status());
                }
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    wait_completed(db, 0, total as i64, started).await?;
    workers.stop().await;
    let mut latencies = Vec::new();
    for p in PERCENTILES {
        latencies.push((p, scenarios::since_submit_ms(db, "started_at", p).await?));
    }
    Ok(latencies)
}
