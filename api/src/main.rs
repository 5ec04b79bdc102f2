//! `conveyor-api`: the HTTP API.

use anyhow::Context;
use api::{AppState, Settings};
use clap::Parser;
use conveyor::config::{ApiConfig, ConnectionConfig, LogConfig, PoolConfig};
use conveyor::{Broker, Store, broker, logging, signals};

#[derive(Debug, Parser)]
#[command(name = "conveyor-api", version, about = "Conveyor's HTTP API")]
struct Cli {
    #[command(flatten)]
    connection: ConnectionConfig,
    #[command(flatten)]
    api: ApiConfig,
    #[command(flatten)]
    pool: PoolConfig,
    #[command(flatten)]
    log: LogConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    logging::init(cli.log.log_format);

    let store = Store::connect(&cli.connection.database_url, cli.pool.db_pool_size)
        .await
        .context("DATABASE_URL is not a usable PostgreSQL URL")?;
    let broker = Broker::connect(
        &cli.connection.redis_url,
        &cli.connection.prefix,
        broker::DEFAULT_POOL_SIZE,
    )
    .context("REDIS_URL is not a usable Redis URL")?;
    let state = AppState::new(
        store,
        broker,
        Settings {
            max_body_bytes: cli.api.max_body_bytes,
            api_token: cli.api.api_token,
        },
    );
    let listener = tokio::net::TcpListener::bind(cli.api.addr)
        .await
        .with_context(|| format!("cannot listen on CONVEYOR_API_ADDR={}", cli.api.addr))?;
    tracing::info!(event = "api_started", addr = %cli.api.addr, "conveyor-api listening on {}", cli.api.addr);
    api::serve(listener, state, signals::terminate()).await?;
    tracing::info!(event = "api_stopped", "conveyor-api stopped");
    Ok(())
}
