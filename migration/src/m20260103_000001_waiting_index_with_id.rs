use sea_orm_migration::prelude::*;

/// The reconciler pages through waiting jobs in (`run_at`, `id`) order. With
/// `run_at` alone in the partial index, PostgreSQL sorted every waiting job
/// to return one page; with `id` added the ordered index scan stops at the
/// page's end (EXPLAIN in docs/architecture.md).
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS jobs_waiting_due_idx ON jobs (run_at, id) \
                 WHERE status IN ('queued', 'retrying'); \
                 DROP INDEX IF EXISTS jobs_waiting_run_at_idx;",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS jobs_waiting_run_at_idx ON jobs (run_at) \
                 WHERE status IN ('queued', 'retrying'); \
                 DROP INDEX IF EXISTS jobs_waiting_due_idx;",
            )
            .await?;
        Ok(())
    }
}
