//! Conveyor's schema, as sea-orm migrations, and the advisory lock that makes
//! concurrent `conveyor-migrate up` runs safe.
//!
//! # Layout
//! - `m20260101_000001_create_jobs`: the `jobs` table, its checks and indexes.
//! - `m20260102_000001_jobs_queue_status_index`: the index behind job counts.
//! - `m20260103_000001_waiting_index_with_id`: the reconciler's pages without a sort.
//! - `m20261129_000001_claim_token`: the per-claim fencing token.
//! - `m20261129_000002_list_indexes`: `GET /jobs` by queue and by type, newest first.
//! - `m20261130_000001_operable_queues`: queue settings, attempt history, progress.
//! - `m20261130_000002_schedules`: periodic jobs (cron schedules).
//! - `m20261130_000003_partial_idempotency_index`: keyless jobs out of the key's index.
//! - `m20261130_000004_job_listing`: the list indexes on a table written once per job.
//! - `m20261201_000001_traceparent`: the trace context a job was created with.
//! - `m20261201_000002_job_announcements`: the outbox of jobs enqueued in an application's transaction.
//! - [`lock`]: [`migrate_locked`], migrations run under a PostgreSQL advisory lock.

pub use sea_orm_migration::prelude::*;

pub mod lock;
mod m20260101_000001_create_jobs;
mod m20260102_000001_jobs_queue_status_index;
mod m20260103_000001_waiting_index_with_id;
mod m20261129_000001_claim_token;
mod m20261129_000002_list_indexes;
mod m20261130_000001_operable_queues;
mod m20261130_000002_schedules;
mod m20261130_000003_partial_idempotency_index;
mod m20261130_000004_job_listing;
mod m20261201_000001_traceparent;
mod m20261201_000002_job_announcements;

pub use lock::{Command, migrate_locked};

/// Every migration, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20260101_000001_create_jobs::Migration),
            Box::new(m20260102_000001_jobs_queue_status_index::Migration),
            Box::new(m20260103_000001_waiting_index_with_id::Migration),
            Box::new(m20261129_000001_claim_token::Migration),
            Box::new(m20261129_000002_list_indexes::Migration),
            Box::new(m20261130_000001_operable_queues::Migration),
            Box::new(m20261130_000002_schedules::Migration),
            Box::new(m20261130_000003_partial_idempotency_index::Migration),
            Box::new(m20261130_000004_job_listing::Migration),
            Box::new(m20261201_000001_traceparent::Migration),
            Box::new(m20261201_000002_job_announcements::Migration),
        ]
    }
}

/// The names of all migrations, oldest first; tests use it to key their
/// template database to the schema it was built from.
pub fn migration_names() -> Vec<String> {
    Migrator::migrations()
        .iter()
        .map(|migration| migration.name().to_owned())
        .collect()
}
