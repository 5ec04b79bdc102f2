//! `conveyor-bench`: runs the benchmark scenarios against a running API,
//! starting and stopping worker processes itself, and prints each figure as
//! a median of several runs with min and max, beside the machine's own
//! ceilings (pgbench, redis-benchmark) measured in the same run.
//! `scripts/bench.sh` builds the release binaries and starts the stack.
//!
//! # Layout
//! - `scenarios`: submit, submit-batch, drain (+ memory), end-to-end, latency.
//! - `remote`: remote-drain, a backlog drained over the worker protocol.
//! - `reconcile`: the reconciler's pass over a large backlog (on request).
//! - `growth`: how throughput and latency change with workers, table size,
//!   backlog and load (on request); `plot` draws its series as PNGs.
//! - `instructions`: instructions per job of the API and of a worker, under
//!   callgrind (on request).
//! - `ceiling`: pgbench and redis-benchmark.
//! - `stack`: resetting data, worker processes, peak memory.
//! - `stats`: percentiles and medians.

mod ceiling;
mod cpu;
mod growth;
mod instructions;
mod plot;
mod reconcile;
mod remote;
mod scenarios;
mod stack;
mod stats;

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Parser;
use sea_orm::Database;
use serde_json::json;

use crate::stats::Figure;

#[derive(Debug, Clone, Parser)]
#[command(name = "conveyor-bench", about = "Benchmarks a running Conveyor API")]
pub struct Args {
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub api_url: String,
    /// The API's pid, to read its peak memory.
    #[arg(long)]
    pub api_pid: Option<u32>,
    /// Needed for every scenario (not for `--plot-from`).
    #[arg(long, env = "DATABASE_URL", default_value = "")]
    pub database_url: String,
    /// Database pgbench may fill with its own tables (no pgbench ceiling
    /// without it).
    #[arg(long, default_value = "")]
    pub pgbench_url: String,
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// `redis_url` names a Redis Cluster's nodes, separated by commas.
    #[arg(long, env = "CONVEYOR_REDIS_CLUSTER", default_value_t = false, action = clap::ArgAction::Set)]
    pub redis_cluster: bool,
    #[arg(long, env = "CONVEYOR_PREFIX", default_value = "conveyor-bench")]
    pub prefix: String,
    #[arg(long, default_value = "target/release/conveyor-worker")]
    pub worker_bin: PathBuf,
    /// The API binary the `instructions` scenario runs under callgrind.
    #[arg(long, default_value = "target/release/conveyor-api")]
    pub api_bin: PathBuf,
    /// Jobs of the `instructions` scenario's smaller run (the larger has
    /// twice as many).
    #[arg(long, default_value_t = 500)]
    pub cost_jobs: usize,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Jobs each worker runs at once.
    #[arg(long, default_value_t = 100)]
    pub concurrency: usize,
    #[arg(long, default_value = "warn")]
    pub worker_log: String,
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    #[arg(long, default_value_t = 20_000)]
    pub submit_count: usize,
    #[arg(long, default_value_t = 100_000)]
    pub drain_count: usize,
    #[arg(long, default_value_t = 20_000)]
    pub e2e_count: usize,
    #[arg(long, default_value_t = 300)]
    pub latency_count: usize,
    /// Jobs the `remote-drain` scenario drains over the worker protocol.
    #[arg(long, default_value_t = 20_000)]
    pub remote_count: usize,
    /// Waiting jobs for the `reconcile` scenario (not run by default).
    #[arg(long, default_value_t = 1_000_000)]
    pub reconcile_count: usize,
    /// Finished jobs in the table for the `growth` scenario's second part.
    #[arg(long, default_value_t = 5_000_000)]
    pub finished_rows: usize,
    /// Waiting jobs the `growth` scenario drains in its third part.
    #[arg(long, default_value_t = 1_000_000)]
    pub backlog: usize,
    /// How long the `growth` scenario keeps the stack half busy.
    #[arg(long, default_value_t = 20)]
    pub load_seconds: u64,
    /// Where the `growth` scenario's plots are written (PNG).
    #[arg(long, default_value = "target/bench/plots")]
    pub plots_dir: PathBuf,
    /// Only draw the plots of this earlier results file, then stop.
    #[arg(long)]
    pub plot_from: Option<PathBuf>,
    /// Scenarios to run, comma-separated.
    #[arg(
        long,
        default_value = "submit,submit-batch,drain,drain-defaults,end-to-end,latency,remote-drain"
    )]
    pub scenarios: String,
    #[arg(long, default_value = "target/bench/results.json")]
    pub out: PathBuf,
}

/// Targets from issue 19: (figure, kind, value).
const TARGETS: &[(&str, &str, f64)] = &[
    ("submit_requests_per_sec", "at_least", 8_000.0),
    ("submit_batch_jobs_per_sec", "at_least", 50_000.0),
    ("drain_jobs_per_sec", "at_least", 22_000.0),
    ("end_to_end_jobs_per_sec", "at_least", 4_700.0),
    ("latency_submit_to_start_p50_ms", "at_most", 2.0),
    ("latency_submit_to_start_p99_ms", "at_most", 10.0),
    ("api_peak_rss_mb", "at_most", 50.0),
    ("worker_peak_rss_mb", "at_most", 50.0),
];

/// The share of the drain the workers' default settings must keep.
const DEFAULTS_KEEP: f64 = 0.85;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(results) = &args.plot_from {
        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(results)?)?;
        for path in plot::draw(&report, &args.plots_dir)? {
            println!("drew {}", path.display());
        }
        return Ok(());
    }
    if args.database_url.is_empty() {
        anyhow::bail!("--database-url (or DATABASE_URL) is needed to run scenarios");
    }
    let db = Database::connect(args.database_url.as_str()).await?;
    let mut runs: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    // The plotted series: the last run's.
    let mut series = BTreeMap::new();
    for scenario in args.scenarios.split(',').map(str::trim) {
        for run in 1..=args.runs {
            stack::reset(&db, &args).await?;
            let figures = match scenario {
                "growth" => {
                    let grown = growth::growth(&args, &db).await?;
                    series = grown.series;
                    grown.figures
                }
                "submit" => scenarios::submit(&args).await?,
                "submit-batch" => scenarios::submit_batch(&args).await?,
                "drain" => scenarios::drain(&args, &db).await?,
                "drain-defaults" => scenarios::drain_defaults(&args, &db).await?,
                "end-to-end" => scenarios::end_to_end(&args, &db).await?,
                "latency" => scenarios::latency(&args, &db).await?,
                "remote-drain" => remote::remote_drain(&args, &db).await?,
                "reconcile" => reconcile::reconcile(&args, &db).await?,
                "instructions" => instructions::instructions(&args, &db).await?,
                other => anyhow::bail!("unknown scenario {other:?}"),
            };
            let shown: Vec<String> = figures
                .iter()
                .map(|(name, value)| format!("{name}={value:.1}"))
                .collect();
            println!("{scenario} run {run}/{}: {}", args.runs, shown.join(" "));
            for (name, value) in figures {
                runs.entry(name).or_default().push(value);
            }
        }
    }
    stack::reset(&db, &args).await?;

    println!("\nceilings of this machine, measured now:");
    let pgbench = ceiling::pgbench_tps(&args);
    let redis = ceiling::redis_lpush_ops(&args);
    match &pgbench {
        Ok(tps) => println!(
            "  pgbench single-row UPDATE, 32 clients: {tps:.0} tps (one job needs >= 3 commits: ceiling {:.0} jobs/s unbatched)",
            tps / 3.0
        ),
        Err(err) => println!("  pgbench: not measured ({err})"),
    }
    match &redis {
        Ok(ops) => println!(
            "  redis-benchmark LPUSH, 32 clients{}: {ops:.0} ops/s",
            if args.redis_cluster {
                ", across the cluster"
            } else {
                ""
            }
        ),
        Err(err) => println!("  redis-benchmark: not measured ({err})"),
    }

    println!("\nresults: median of {} run(s) (min, max)", args.runs);
    let mut figures = Vec::new();
    for (name, values) in runs {
        let target =
            TARGETS
                .iter()
                .find(|(target, _, _)| *target == name)
                .map(|(_, kind, value)| {
                    (
                        if *kind == "at_least" {
                            "at_least"
                        } else {
                            "at_most"
                        },
                        *value,
                    )
                });
        let unit = if name.ends_with("_ms") {
            "ms"
        } else if name.ends_with("_mb") {
            "MB"
        } else if name.ends_with("_secs") {
            "s"
        } else if name.contains("instructions") {
            "instr"
        } else if name.contains("_cpu_us_per_job") {
            "us"
        } else if name.ends_with("_pct") {
            "%"
        } else {
            "/s"
        };
        let figure = Figure::new(name, unit, values, target);
        println!("{}", figure.line());
        figures.push(figure);
    }
    if let Ok(tps) = &pgbench {
        for figure in figures.iter().filter(|f| f.name.ends_with("jobs_per_sec")) {
            println!(
                "  {:<34} {:.2} x the unbatched ceiling (pgbench tps / 3)",
                figure.name,
                figure.median / (tps / 3.0)
            );
        }
    }

    let median = |name: &str| figures.iter().find(|f| f.name == name).map(|f| f.median);
    if let Some(busy) = median("drain_cpu_us_per_job").filter(|busy| *busy > 0.0) {
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let part = |name: &str| median(&format!("drain_cpu_us_per_job_{name}")).unwrap_or(0.0);
        println!(
            "  the drain's CPU: {busy:.0} us a job on the whole machine (postgres {:.0}, workers {:.0}, \
             redis {:.0}); {cores} cores busy all the time would drain {:.0} jobs/s",
            part("postgres"),
            part("workers"),
            part("redis"),
            cores * 1e6 / busy
        );
    }
    if let (Some(defaults), Some(tuned)) = (
        median("drain_defaults_jobs_per_sec"),
        median("drain_jobs_per_sec"),
    ) {
        let kept = defaults / tuned;
        println!(
            "  the workers' defaults keep {:.0} % of the benchmark settings' drain (target >= 85 %: {})",
            kept * 100.0,
            if kept >= DEFAULTS_KEEP {
                "met"
            } else {
                "MISSED"
            }
        );
    }

    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let report = json!({
        "machine": { "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
        "settings": {
            "redis_cluster": args.redis_cluster,
            "workers": args.workers, "concurrency": args.concurrency, "runs": args.runs,
            "submit_count": args.submit_count, "drain_count": args.drain_count,
            "e2e_count": args.e2e_count, "latency_count": args.latency_count, "worker_log": args.worker_log,
            "finished_rows": args.finished_rows, "backlog": args.backlog, "load_seconds": args.load_seconds,
        },
        "ceilings": {
            "pgbench_single_row_update_tps": pgbench.ok(),
            "redis_lpush_ops_per_sec": redis.ok(),
        },
        "figures": figures,
        "series": series,
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)?;
    println!("\nwritten to {}", args.out.display());
    if !series.is_empty() {
        // The figures are written; a machine without a font still has them.
        match plot::draw(&report, &args.plots_dir) {
            Ok(paths) => {
                for path in paths {
                    println!("drew {}", path.display());
                }
            }
            Err(err) => println!("plots not drawn: {err:#}"),
        }
    }
    Ok(())
}
