use sea_orm_migration::prelude::*;

/// The outbox of jobs enqueued inside an application's transaction
/// (`conveyor::enqueue_in`): a row per job, written in that transaction,
/// deleted by the maintenance leader once it has published the job. Empty
/// while nothing enqueues this way, so reading it costs nothing then
/// (docs/decisions.md).
#[derive(DeriveMigrationName)]
pub struct Migration;

// The index serves the leader's reads, oldest first: without it, each
// read of a large outbox (after a long Redis outage) would sort it whole.
const UP: &str = "CREATE TABLE IF NOT EXISTS job_announcements (\
    job_id uuid PRIMARY KEY, \
    created_at timestamptz NOT NULL DEFAULT now()); \
    CREATE INDEX IF NOT EXISTS job_announcements_created_idx \
    ON job_announcements (created_at, job_id)";

const DOWN: &str = "DROP TABLE IF EXISTS job_announcements";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(DOWN).await?;
        Ok(())
    }
}
