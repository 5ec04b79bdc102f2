//! `conveyor-worker`: runs jobs with the built-in handlers; `recover-stuck`
//! is the manual recovery tool.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use conveyor::config::{ConnectionConfig, LogConfig, MetricsConfig, PoolConfig, WorkerConfig};
use conveyor::store::StuckAction;
use conveyor::{Broker, Store, broker, logging, signals};
use worker::{Settings, Worker, builtin_registry, recover};

#[derive(Debug, Parser)]
#[command(name = "conveyor-worker", version, about = "Conveyor's worker")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    connection: ConnectionConfig,
    #[command(flatten)]
    worker: WorkerConfig,
    #[command(flatten)]
    pool: PoolConfig,
    #[command(flatten)]
    metrics: MetricsConfig,
    #[command(flatten)]
    log: LogConfig,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run jobs until SIGTERM or Ctrl-C (the default).
    Run,
    /// Fail (or requeue) jobs stuck in `running` for too long.
    RecoverStuck {
        /// Jobs that started more than this many minutes ago are stuck.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=525_600))]
        timeout_minutes: u64,
        /// Send them to `retrying` (due now) instead of `failed`; jobs with
        /// no attempts left fail anyway.
        #[arg(long)]
        requeue: bool,
        /// List the stuck jobs; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _logs = logging::init(cli.log.log_format);
    conveyor::metrics::set_max_label_values(cli.metrics.metrics_max_label_values);
    cli.worker.validate().map_err(|err| anyhow::anyhow!(err))?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(cli.connection, cli.worker, cli.pool).await,
        Command::RecoverStuck {
            timeout_minutes,
            requeue,
            dry_run,
        } => {
            let options = recover::Options {
                older_than: std::time::Duration::from_secs(timeout_minutes * 60),
                action: if requeue {
                    StuckAction::Requeue
                } else {
                    StuckAction::Fail
                },
                dry_run,
            };
            if let Err(err) = recover::run(&cli.connection, options).await {
                eprintln!("error: {err:#}");
                logging::flush();
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

async fn run(
    connection: ConnectionConfig,
    config: WorkerConfig,
    pool: PoolConfig,
) -> anyhow::Result<()> {
    let settings = Settings::from_config(&config);
    let store = Store::connect(&connection.database_url, pool.db_pool_size)
        .await
        .context("DATABASE_URL is not a usable PostgreSQL URL")?;
    let broker = connection
        .redis()
        .and_then(|redis| Broker::connect(&redis, &connection.prefix, broker::DEFAULT_POOL_SIZE))
        .context("REDIS_URL is not a usable Redis URL")?;
    let (traces, exporter) =
        conveyor::trace::Traces::from_env("conveyor-worker").context("OTEL_EXPORTER_OTLP_*")?;
    let worker = Worker::traced(store, broker, settings, builtin_registry(), traces);
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(addr) = config.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on CONVEYOR_WORKER_METRICS_ADDR={addr}"))?;
        tracing::info!(addr = %addr, "worker metrics on http://{addr}/metrics");
        tokio::spawn(worker::observe::serve(listener, async move {
            let _ = metrics_stopped.await;
        }));
    }

    // The first signal starts a graceful shutdown; a second exits at once
    // (the other workers' maintenance services recover what this one held).
    let (first_signal, shutdown) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        signals::terminate().await;
        let _ = first_signal.send(());
        signals::terminate().await;
        tracing::warn!("second signal: exiting at once");
        logging::flush();
        std::process::exit(130);
    });
    worker
        .run(async {
            let _ = shutdown.await;
        })
        .await;
    let _ = stop_metrics.send(());
    conveyor::trace::Traces::shut_down(exporter).await;
    Ok(())
}
