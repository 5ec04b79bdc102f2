//! The parts of the stack the benchmark controls: the database, Redis keys,
//! worker processes, and their memory.

use std::process::Stdio;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use tokio::process::{Child, Command};

use crate::Args;

/// Empties the jobs table and the benchmark's Redis keys, and checkpoints.
pub async fn reset(db: &DatabaseConnection, args: &Args) -> anyhow::Result<()> {
    db.execute_unprepared("TRUNCATE jobs").await?;
    // testkit deletes a prefix's keys on one server or on every master of a
    // cluster; it runs blocking commands, so off the async threads.
    let keys = testkit::TestRedis {
        url: args.redis_url.clone(),
        cluster: args.redis_cluster,
        prefix: args.prefix.clone(),
    };
    tokio::task::spawn_blocking(move || keys.delete_all()).await??;
    db.execute_unprepared("VACUUM ANALYZE jobs, job_listing")
        .await?;
    // Start from a clean checkpoint: one falling due in the middle of the
    // next scenario (after a large insert, say) slowed it by a third.
    // Needs a superuser (or pg_checkpoint); skipped without one.
    if let Err(err) = db.execute_unprepared("CHECKPOINT").await {
        eprintln!("no CHECKPOINT before the scenario: {err}");
    }
    Ok(())
}

pub async fn count(db: &DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row"))?;
    Ok(row.try_get::<i64>("", "n")?)
}

/// Worker processes started for one scenario.
pub struct Workers {
    children: Vec<Child>,
}

/// How the workers of a scenario are configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    /// The benchmark's settings: `--concurrency`, logs at `--worker-log`
    /// (default `warn`) thrown away.
    Bench,
    /// The worker's own defaults (concurrency, `info` logs, text format),
    /// its logs read from a pipe as a log collector would read them.
    Defaults,
}

impl Workers {
    pub async fn start(args: &Args, tuning: Tuning) -> anyhow::Result<Workers> {
        Workers::start_wrapped(args, tuning, &[]).await
    }

    /// As [`Workers::start`], each worker run by the `wrapper` command
    /// line (e.g. valgrind and its options) when that is not empty.
    pub async fn start_wrapped(
        args: &Args,
        tuning: Tuning,
        wrapper: &[String],
    ) -> anyhow::Result<Workers> {
        let mut children = Vec::new();
        for _ in 0..args.workers {
            let mut command = match wrapper.split_first() {
                Some((program, options)) => {
                    let mut command = Command::new(program);
                    command.args(options).arg(&args.worker_bin);
                    command
                }
                None => Command::new(&args.worker_bin),
            };
            command
                .env("DATABASE_URL", &args.database_url)
                .env("REDIS_URL", &args.redis_url)
                .env("CONVEYOR_REDIS_CLUSTER", args.redis_cluster.to_string())
                .env("CONVEYOR_PREFIX", &args.prefix)
                .env_remove("CONVEYOR_CONCURRENCY")
                .env_remove("RUST_LOG")
                .env_remove("LOG_FORMAT")
                .kill_on_drop(true);
            match tuning {
                Tuning::Bench => {
                    command
                        .env("CONVEYOR_CONCURRENCY", args.concurrency.to_string())
                        .env("RUST_LOG", &args.worker_log)
                        .env("LOG_FORMAT", "json")
                        .stdout(Stdio::null())
                        .stderr(Stdio::null());
                }
                Tuning::Defaults => {
                    command.stdout(Stdio::piped()).stderr(Stdio::piped());
                }
            }
            let mut child = command.spawn()?;
            for output in [
                child.stdout.take().map(|out| Box::new(out) as Output),
                child.stderr.take().map(|err| Box::new(err) as Output),
            ]
            .into_iter()
            .flatten()
            {
                tokio::spawn(drain_output(output));
            }
            children.push(child);
        }
        // Registered and fetching: give them a moment to connect.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(Workers { children })
    }

    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(Child::id).collect()
    }

    /// SIGTERM, then wait.
    pub async fn stop(mut self) {
        for child in &self.children {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status();
            }
        }
        for child in &mut self.children {
            let _ = tokio::time::timeout(Duration::from_secs(40), child.wait()).await;
        }
    }
}

type Output = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// Reads a worker's output to its end and throws it away.
async fn drain_output(mut output: Output) {
    let _ = tokio::io::copy(&mut output, &mut tokio::io::sink()).await;
}

/// Peak resident memory of a process, in MB (VmHWM), if readable.
pub fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
