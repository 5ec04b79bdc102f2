//! Instructions per job (scenario `instructions`, on request): the API and
//! one worker each run under `valgrind --tool=callgrind`, which counts the
//! instructions a process executes; unlike a timing, the count hardly moves
//! with the machine's load, so a change's effect shows even on a noisy
//! machine. Each is run twice, with `--cost-jobs` jobs and with twice as
//! many; the difference divided by `--cost-jobs` is the cost of one job,
//! without the process's start and stop.
//!
//! - API: sequential `POST /jobs` of a no-op job over one connection.
//! - Worker: a drain of that many queued no-op jobs at `--concurrency`,
//!   logging at `warn`; and again on the worker's defaults (`info` logs in
//!   text into a pipe), which prices the log lines of a job.
//!
//! What the processes do on timers (heartbeats, the promoter, gauges) while
//! the jobs run is counted too; under valgrind a run lasts longer than it
//! would natively, so that share is somewhat larger than in production.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sea_orm::DatabaseConnection;
use tokio::process::Command;

use crate::Args;
use crate::scenarios::{self, wait_completed};
use crate::stack::{self, Tuning, Workers};

/// How long a process under valgrind may take to answer `/ready`.
const START_DEADLINE: Duration = Duration::from_secs(120);

pub async fn instructions(
    args: &Args,
    db: &DatabaseConnection,
) -> anyhow::Result<Vec<(&'static str, f64)>> {
    let dir = args
        .out
        .parent()
        .unwrap_or(Path::new("."))
        .join("callgrind");
    std::fs::create_dir_all(&dir)?;
    let n = args.cost_jobs;
    let mut api = Vec::new();
    let mut worker = Vec::new();
    let mut worker_defaults = Vec::new();
    for jobs in [n, 2 * n] {
        stack::reset(db, args).await?;
        api.push(api_run(args, &dir, jobs).await?);
        stack::reset(db, args).await?;
        worker.push(worker_run(args, db, &dir, jobs, Tuning::Bench).await?);
        stack::reset(db, args).await?;
        worker_defaults.push(worker_run(args, db, &dir, jobs, Tuning::Defaults).await?);
        println!(
            "  {jobs} jobs: API {} instructions, worker {} ({} on its defaults)",
            api[api.len() - 1],
            worker[worker.len() - 1],
            worker_defaults[worker_defaults.len() - 1]
        );
    }
    let per_job = |totals: &[u64]| (totals[1] as f64 - totals[0] as f64) / n as f64;
    Ok(vec![
        ("api_instructions_per_submit", per_job(&api)),
        ("worker_instructions_per_job", per_job(&worker)),
        (
            "worker_defaults_instructions_per_job",
            per_job(&worker_defaults),
        ),
    ])
}

fn valgrind(out: &Path) -> Vec<String> {
    vec![
        "valgrind".to_owned(),
        "--tool=callgrind".to_owned(),
        format!("--callgrind-out-file={}", out.display()),
    ]
}

/// Starts an API of its own under callgrind, submits `jobs` jobs one after
/// another, stops it and returns its instruction count.
async fn api_run(args: &Args, dir: &Path, jobs: usize) -> anyhow::Result<u64> {
    let out = dir.join(format!("api-{jobs}.out"));
    fresh(&out)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let wrapper = valgrind(&out);
    let mut child = Command::new(&wrapper[0])
        .args(&wrapper[1..])
        .arg(&args.api_bin)
        .env("DATABASE_URL", &args.database_url)
        .env("REDIS_URL", &args.redis_url)
        .env("CONVEYOR_REDIS_CLUSTER", args.redis_cluster.to_string())
        .env("CONVEYOR_PREFIX", &args.prefix)
        .env("CONVEYOR_API_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting valgrind (is it installed?)")?;
    let base = format!("http://127.0.0.1:{port}");
    let client = scenarios::client();
    let started = Instant::now();
    while !client
        .get(format!("{base}/ready"))
        .send()
        .await
        .is_ok_and(|response| response.status().is_success())
    {
        if started.elapsed() > START_DEADLINE {
            bail!("the API under valgrind did not become ready in {START_DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for _ in 0..jobs {
        let response = client
            .post(format!("{base}/jobs"))
            .json(&scenarios::noop())
            .send()
            .await?;
        if response.status() != 201 {
            bail!("POST /jobs answered {}", response.status());
        }
    }
    terminate(child.id())?;
    let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
        .await
        .context("the API under valgrind did not stop within 120 s")??;
    if !status.success() {
        bail!("the API under valgrind ended with {status}");
    }
    total(&out)
}

/// Queues `jobs` jobs through the benchmark's API, drains them with one
/// worker under callgrind (tuned as `tuning` says), stops it and returns
/// its instruction count.
async fn worker_run(
    args: &Args,
    db: &DatabaseConnection,
    dir: &Path,
    jobs: usize,
    tuning: Tuning,
) -> anyhow::Result<u64> {
    let name = match tuning {
        Tuning::Bench => "worker",
        Tuning::Defaults => "worker-defaults",
    };
    let out = dir.join(format!("{name}-{jobs}.out"));
    fresh(&out)?;
    scenarios::submit_batches(args, jobs, 1).await?;
    let one = Args {
        workers: 1,
        ..args.clone()
    };
    let started = Instant::now();
    let workers = Workers::start_wrapped(&one, tuning, &valgrind(&out)).await?;
    wait_completed(db, 0, jobs as i64, started).await?;
    workers.stop().await;
    total(&out)
}

/// Removes an earlier run's output, so a run that writes none fails
/// instead of reading old figures.
fn fresh(out: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(out) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err.into()),
        _ => Ok(()),
    }
}

fn terminate(pid: Option<u32>) -> anyhow::Result<()> {
    let pid = pid.context("the process is gone")?;
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()?;
    Ok(())
}

/// The instruction count in a callgrind output file (its `totals:` line).
fn total(out: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(out)
        .with_context(|| format!("reading {} (did valgrind finish?)", out.display()))?;
    text.lines()
        .find_map(|line| line.strip_prefix("totals:"))
        .or_else(|| text.lines().find_map(|line| line.strip_prefix("summary:")))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .with_context(|| format!("no totals in {}", out.display()))
}
