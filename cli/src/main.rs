//! `conveyor`: the operator's command line. Lists, shows, retries and
//! cancels jobs (one by one or every job matching filters), lists, pauses,
//! resumes and configures queues, and runs `recover-stuck`. It talks to
//! PostgreSQL and Redis through the core client, so every action keeps the
//! same ordering rules as the API's.
//!
//! # Layout
//! - this file: the command line and dispatch.
//! - `jobs`: the `jobs` subcommands.
//! - `queues`: the `queues` subcommands.
//! - `render`: tables and JSON for people and scripts.
//! - `parse`: durations, limits and instants as the flags take them.

mod jobs;
mod parse;
mod queues;
mod render;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use conveyor::config::ConnectionConfig;
use conveyor::store::StuckAction;
use conveyor::{Broker, Client, Store};

#[derive(Debug, Parser)]
#[command(
    name = "conveyor",
    version,
    about = "Operate Conveyor: jobs, queues and recovery",
    long_about = "Operate Conveyor: list, show, retry and cancel jobs; list, pause, resume \
                  and configure queues; recover stuck jobs. Reads DATABASE_URL, REDIS_URL and \
                  CONVEYOR_PREFIX like the other binaries."
)]
struct Cli {
    #[command(flatten)]
    connection: ConnectionConfig,
    /// Print JSON (one document) instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List, show, retry and cancel jobs.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// List, pause, resume and configure queues.
    #[command(subcommand)]
    Queues(queues::QueuesCommand),
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
async fn main() {
    let cli = Cli::parse();
    conveyor::logging::init_for_cli(conveyor::config::LogFormat::Pretty);
    if let Err(err) = run(cli).await {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Jobs(command) => {
            jobs::run(&connect(&cli.connection).await?, command, cli.json).await
        }
        Command::Queues(command) => {
            queues::run(&connect(&cli.connection).await?, command, cli.json).await
        }
        Command::RecoverStuck {
            timeout_minutes,
            requeue,
            dry_run,
        } => {
            if cli.json {
                anyhow::bail!("recover-stuck prints text only; run it without --json");
            }
            let options = worker::recover::Options {
                older_than: std::time::Duration::from_secs(timeout_minutes * 60),
                action: if requeue {
                    StuckAction::Requeue
                } else {
                    StuckAction::Fail
                },
                dry_run,
            };
            worker::recover::run(&cli.connection, options).await
        }
    }
}

/// The core client, on two connections to each server.
async fn connect(connection: &ConnectionConfig) -> anyhow::Result<Client> {
    let store = Store::connect(&connection.database_url, 2)
        .await
        .context("cannot reach PostgreSQL at DATABASE_URL")?;
    store
        .ping()
        .await
        .context("cannot reach PostgreSQL at DATABASE_URL")?;
    let broker = connection
        .redis()
        .and_then(|redis| Broker::connect(&redis, &connection.prefix, 2))
        .context("REDIS_URL is not a usable Redis URL")?;
    Ok(Client::new(store, broker))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent_and_every_subcommand_has_help() {
        Cli::command().debug_assert();
        fn walk(command: &clap::Command) {
            assert!(
                command.get_about().is_some(),
                "{} has no help text",
                command.get_name()
            );
            for sub in command.get_subcommands() {
                walk(sub);
            }
        }
        walk(&Cli::command());
    }
}
