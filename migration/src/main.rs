//! `conveyor-migrate`: applies, rolls back and reports Conveyor's schema.

use anyhow::Context;
use clap::{Parser, Subcommand};
use migration::{Command, migrate_locked};

/// Default database, the same as the API's and the worker's.
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/conveyor";

#[derive(Debug, Parser)]
#[command(
    name = "conveyor-migrate",
    version,
    about = "Apply or inspect Conveyor's database schema"
)]
struct Cli {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, value_name = "DATABASE_URL", hide_env_values = true)]
    database_url: String,

    #[command(subcommand)]
    command: Option<Action>,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Apply every pending migration (the default).
    Up,
    /// Roll back applied migrations.
    Down {
        /// How many migrations to roll back.
        #[arg(short = 'n', long, default_value_t = 1)]
        steps: u32,
    },
    /// List migrations and whether each is applied.
    Status,
    /// Drop every table, then apply all migrations. Destroys all data.
    Fresh,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let command = match cli.command.unwrap_or(Action::Up) {
        Action::Up => Command::Up,
        Action::Down { steps } => Command::Down { steps },
        Action::Status => Command::Status,
        Action::Fresh => Command::Fresh,
    };
    let states = migrate_locked(&cli.database_url, command)
        .await
        .context("migration failed (is DATABASE_URL right and PostgreSQL running?)")?;
    for state in &states {
        let mark = if state.applied { "applied" } else { "pending" };
        println!("{mark:8} {}", state.name);
    }
    let pending = states.iter().filter(|state| !state.applied).count();
    println!("{} applied, {pending} pending", states.len() - pending);
    Ok(())
}
