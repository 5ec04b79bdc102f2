//! Migrations under a PostgreSQL advisory lock.
//!
//! Several replicas (a compose `migrate` service and an operator's shell, two
//! deploys racing) may run `conveyor-migrate up` at the same moment. sea-orm's
//! migrator is not safe for that: both would create `seaql_migrations` and both
//! would apply the same migration. One session-level advisory lock, held on its
//! own connection for the whole run, makes the runs take turns; the second
//! finds nothing pending. If the process dies, its session ends and PostgreSQL
//! releases the lock.

use std::time::Duration;

use sea_orm_migration::MigrationStatus;
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectOptions, Database, DatabaseConnection};

use crate::Migrator;

/// Key of the advisory lock that serialises migration runs ("conveyor" in ASCII
/// hex, so it is recognisable in `pg_locks`).
pub const MIGRATION_LOCK_KEY: i64 = 0x636f_6e76_6579_6f72;

/// What `conveyor-migrate` was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Apply every pending migration.
    Up,
    /// Roll back the given number of applied migrations.
    Down { steps: u32 },
    /// Report applied and pending migrations.
    Status,
    /// Drop everything, then apply all migrations. Destroys data.
    Fresh,
}

/// One line per migration of `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    pub name: String,
    pub applied: bool,
}

/// Runs `command` against `database_url` while holding the migration lock.
/// Returns the state of every migration afterwards.
pub async fn migrate_locked(
    database_url: &str,
    command: Command,
) -> Result<Vec<MigrationState>, DbErr> {
    let lock_conn = connect(database_url).await?;
    let work_conn = connect(database_url).await?;

    // Waits (does not fail) while another run holds it.
    lock_conn
        .execute_unprepared(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
        .await?;
    let outcome = run(&work_conn, command).await;
    let unlocked = lock_conn
        .execute_unprepared(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
        .await;
    work_conn.close().await?;
    lock_conn.close().await?;
    let states = outcome?;
    unlocked?;
    Ok(states)
}

async fn run(db: &DatabaseConnection, command: Command) -> Result<Vec<MigrationState>, DbErr> {
    match command {
        Command::Up => Migrator::up(db, None).await?,
        Command::Down { steps } => Migrator::down(db, Some(steps)).await?,
        Command::Fresh => Migrator::fresh(db).await?,
        Command::Status => Migrator::install(db).await?,
    }
    Ok(Migrator::get_migration_with_status(db)
        .await?
        .into_iter()
        .map(|migration| MigrationState {
            name: migration.name().to_owned(),
            applied: migration.status() == MigrationStatus::Applied,
        })
        .collect())
}

async fn connect(database_url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(database_url.to_owned());
    options
        .max_connections(1)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .sqlx_logging(false);
    Database::connect(options).await
}
