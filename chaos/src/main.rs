//! `conveyor-chaos`: runs a whole Conveyor stack (its own PostgreSQL and
//! Redis, the API, three workers, and two Python workers that use the
//! worker protocol) while a client submits jobs, injects
//! faults, then checks the promises of docs/design.md (section 6) from PostgreSQL and
//! the workers' logs. Driven by `scripts/chaos.sh`; see docs/guarantees.md.
//!
//! # Layout
//! - `services`: the throwaway PostgreSQL and Redis.
//! - `procs`: the API and worker processes.
//! - `client`: the submitting (and canceling) client.
//! - `faults`: the schedule of faults and the stack they act on.
//! - `hostile`: requests no client should send, and what they must get.
//! - `queue_ops`: the operator pausing one queue and limiting another.
//! - `schedule_ops`: a periodic schedule firing every second.
//! - `dashboard`: a person watching the dashboard's pages.
//! - `check`: the invariants and the table.

mod check;
mod client;
mod dashboard;
mod faults;
mod hostile;
mod procs;
mod queue_ops;
mod schedule_ops;
mod services;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use sea_orm::Database;

use crate::faults::{RedisSide, Stack};
use crate::services::{Postgres, Redis, RedisCluster};

#[derive(Debug, Parser)]
#[command(
    name = "conveyor-chaos",
    about = "Fault injection against a Conveyor stack"
)]
pub struct Args {
    /// How long the client submits and faults are injected, in seconds.
    #[arg(long, default_value_t = 60)]
    duration_secs: u64,
    /// Jobs submitted per second.
    #[arg(long, default_value_t = 40)]
    rate: u32,
    /// Worker processes running at once.
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// Where conveyor-api, conveyor-worker and conveyor-migrate are.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Where initdb, pg_ctl and postgres are.
    #[arg(long)]
    pg_bin_dir: PathBuf,
    #[arg(long, default_value = "redis-server")]
    redis_server: PathBuf,
    /// Run Redis as a cluster (three masters, three replicas): its faults
    /// kill and stop masters so that replicas take over.
    #[arg(long)]
    cluster: bool,
    /// Creates the cluster (`--cluster create`) and asks nodes for their
    /// state.
    #[arg(long, default_value = "redis-cli")]
    redis_cli: PathBuf,
    /// The user to run PostgreSQL as when this runs as root.
    #[arg(long)]
    run_as: Option<String>,
    /// An empty directory for data and logs.
    #[arg(long)]
    work_dir: PathBuf,
    /// Seed of the job mix and of the choice of victims.
    #[arg(long)]
    seed: Option<u64>,
    /// How long to wait, after the faults, for every job to finish.
    #[arg(long, default_value_t = 120)]
    quiesce_secs: u64,
    /// The worker in another language that serves the `remote` queue over
    /// the worker protocol (an executable; it is run with python3 by its
    /// first line).
    #[arg(long, default_value = "examples/python/conveyor_worker.py")]
    remote_worker: PathBuf,
    /// Processes of it running at once.
    #[arg(long, default_value_t = 2)]
    remote_workers: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
    });
    println!(
        "chaos: {} s at {} jobs/s, {} workers, {}, seed {seed}; logs in {}",
        args.duration_secs,
        args.rate,
        args.workers,
        if args.cluster {
            "a Redis Cluster"
        } else {
            "one Redis"
        },
        args.work_dir.display()
    );
    std::fs::create_dir_all(&args.work_dir)?;
    let postgres = Postgres::init(
        &args.pg_bin_dir,
        &args.work_dir,
        procs::free_port()?,
        args.run_as.clone(),
    )
    .await
    .context("starting PostgreSQL")?;
    let redis_dir = args.work_dir.join("redis");
    std::fs::create_dir_all(&redis_dir)?;
    let redis = if args.cluster {
        RedisSide::Cluster(
            RedisCluster::start(&args.redis_server, &args.redis_cli, &redis_dir)
                .await
                .context("starting a Redis Cluster")?,
        )
    } else {
        let server = Redis::start(&args.redis_server, &redis_dir, procs::free_port()?)
            .await
            .context("starting Redis")?;
        RedisSide::single(server).await
    };
    let passed = run(&args, seed, postgres, redis).await?;
    std::process::exit(if passed { 0 } else { 1 });
}

/// A trigger that refuses the first completion of every job whose payload
/// asks for it (`client::REFUSE_ONCE`): an outcome write PostgreSQL refuses
/// once, for a reason other than an outage. The worker must not leave such
/// a job `running`; it runs again and completes.
async fn install_refusal(db: &sea_orm::DatabaseConnection) -> anyhow::Result<()> {
    use sea_orm::ConnectionTrait;
    db.execute_unprepared(&format!(
        "CREATE FUNCTION chaos_refuse_once() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN \
           IF OLD.status = 'running' AND NEW.status = 'completed' AND OLD.attempts = 1 \
              AND NEW.payload ? '{}' THEN \
             RAISE EXCEPTION 'chaos: this completion is refused once'; \
           END IF; \
           RETURN NEW; \
         END $$; \
         CREATE TRIGGER chaos_refuse_once BEFORE UPDATE ON jobs \
         FOR EACH ROW EXECUTE FUNCTION chaos_refuse_once();",
        client::REFUSE_ONCE
    ))
    .await?;
    Ok(())
}

async fn run(args: &Args, seed: u64, postgres: Postgres, redis: RedisSide) -> anyhow::Result<bool> {
    let database_url = postgres.url("postgres");
    let migrate = tokio::process::Command::new(args.bin_dir.join("conveyor-migrate"))
        .arg("up")
        .env("DATABASE_URL", &database_url)
        .output()
        .await?;
    anyhow::ensure!(
        migrate.status.success(),
        "migrations failed: {}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let db = Database::connect(database_url.as_str()).await?;
    install_refusal(&db).await?;
    let mut stack = Stack::start(args, seed, postgres, redis).await?;

    let outcome = faults::run(args, &mut stack, &db).await;
    let report = match outcome {
        Ok(report) => report,
        Err(err) => {
            stack.shutdown().await;
            return Err(err);
        }
    };
    stack.shutdown().await;
    report.print();
    let passed = report.passed();
    println!(
        "chaos: {}",
        if passed {
            "every invariant held"
        } else {
            "INVARIANTS VIOLATED"
        }
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(passed)
}
