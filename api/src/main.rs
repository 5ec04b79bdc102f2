//! `conveyor-api`: the HTTP API.

use std::time::Duration;

use anyhow::Context;
use api::serve::Limits;
use api::{AppState, Settings};
use clap::Parser;
use conveyor::config::{
    ApiConfig, ConnectionConfig, LogConfig, MetricsConfig, PoolConfig, RemoteWorkerConfig,
};
use conveyor::store::PoolSettings;
use conveyor::{Broker, Store, broker, logging, signals};

#[derive(Debug, Parser)]
#[command(name = "conveyor-api", version, about = "Conveyor's HTTP API")]
struct Cli {
    #[command(flatten)]
    connection: ConnectionConfig,
    #[command(flatten)]
    api: ApiConfig,
    #[command(flatten)]
    workers: RemoteWorkerConfig,
    #[command(flatten)]
    pool: PoolConfig,
    #[command(flatten)]
    metrics: MetricsConfig,
    #[command(flatten)]
    log: LogConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.workers.validate()?;
    let _logs = logging::init(cli.log.log_format);
    conveyor::metrics::set_max_label_values(cli.metrics.metrics_max_label_values);

    let (traces, exporter) =
        conveyor::trace::Traces::from_env("conveyor-api").context("OTEL_EXPORTER_OTLP_*")?;
    let pool = |max_connections| PoolSettings {
        max_connections,
        acquire_timeout: Duration::from_millis(cli.api.db_acquire_timeout_ms),
        statement_timeout: Some(Duration::from_millis(cli.api.statement_timeout_ms)),
        lock_timeout: Some(Duration::from_millis(cli.api.lock_timeout_ms)),
    };
    let writes = Store::connect_with(&cli.connection.database_url, &pool(cli.pool.db_pool_size))
        .await
        .context("DATABASE_URL is not a usable PostgreSQL URL")?;
    let reads = Store::connect_with(&cli.connection.database_url, &pool(cli.api.read_pool_size))
        .await
        .context("DATABASE_URL is not a usable PostgreSQL URL")?;
    let broker = cli
        .connection
        .redis()
        .and_then(|redis| {
            Broker::connect(&redis, &cli.connection.prefix, broker::DEFAULT_POOL_SIZE)
        })
        .context("REDIS_URL is not a usable Redis URL")?;
    if !cli.api.addr.ip().is_loopback() && cli.api.api_token.is_none() {
        tracing::warn!(event = "api_unprotected", addr = %cli.api.addr,
            "conveyor-api listens on {} without CONVEYOR_API_TOKEN: anyone who can reach it \
             can create, cancel and retry jobs; set a token, or listen on 127.0.0.1",
            cli.api.addr);
    }
    let state = AppState::new(
        writes,
        broker,
        Settings {
            max_body_bytes: cli.api.max_body_bytes,
            api_token: cli.api.api_token,
            worker_token: cli.workers.worker_token.clone(),
            ui_read_only: cli.api.ui_read_only,
            limits: Limits {
                header_timeout: Duration::from_secs(cli.api.header_timeout_secs),
                body_timeout: Duration::from_secs(cli.api.body_timeout_secs),
                request_timeout: Duration::from_secs(cli.api.request_timeout_secs),
                max_connections: cli.api.max_connections,
                max_in_flight: cli.api.max_in_flight,
                shutdown_grace: Duration::from_secs(cli.api.api_shutdown_grace_secs),
            },
        },
    )
    .with_remote(conveyor::remote::Settings {
        // Waiting workers may take half the places for requests, no more.
        max_waiting: (cli.api.max_in_flight / 2).max(1),
        ..cli.workers.settings()
    })
    .with_reads(reads)
    .with_traces(traces);
    let listener = tokio::net::TcpListener::bind(cli.api.addr)
        .await
        .with_context(|| format!("cannot listen on CONVEYOR_API_ADDR={}", cli.api.addr))?;
    tracing::info!(event = "api_started", addr = %cli.api.addr, "conveyor-api listening on {}", cli.api.addr);
    api::serve(listener, state, signals::terminate()).await?;
    conveyor::trace::Traces::shut_down(exporter).await;
    tracing::info!(event = "api_stopped", "conveyor-api stopped");
    Ok(())
}
