//! `conveyor-worker`: runs jobs with the built-in handlers; `recover-stuck`
//! is the manual recovery tool.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use conveyor::config::{ConnectionConfig, LogConfig, WorkerConfig};
use conveyor::{Broker, Store, broker, logging, signals};
use worker::{Settings, Worker, builtin_registry};

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
    log: LogConfig,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run jobs until SIGTERM or Ctrl-C (the default).
    Run,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    logging::init(cli.log.log_format);
    cli.worker.validate().map_err(|err| anyhow::anyhow!(err))?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(cli.connection, cli.worker).await,
    }
}

async fn run(connection: ConnectionConfig, config: WorkerConfig) -> anyhow::Result<()> {
    let settings = Settings::from_config(&config);
    let store = Store::connect(&connection.database_url, config.concurrency.min(64) + 4)
        .await
        .context("DATABASE_URL is not a usable PostgreSQL URL")?;
    let broker = Broker::connect(
        &connection.redis_url,
        &connection.prefix,
        broker::DEFAULT_POOL_SIZE,
    )
    .context("REDIS_URL is not a usable Redis URL")?;
    let worker = Worker::new(store, broker, settings, builtin_registry());

    // The first signal starts a graceful shutdown; a second exits at once
    // (the janitor of another worker recovers what this one held).
    let (first_signal, shutdown) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        signals::terminate().await;
        let _ = first_signal.send(());
        signals::terminate().await;
        tracing::warn!("second signal: exiting at once");
        std::process::exit(130);
    });
    worker
        .run(async {
            let _ = shutdown.await;
        })
        .await;
    Ok(())
}
