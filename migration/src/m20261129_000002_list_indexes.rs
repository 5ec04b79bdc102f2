use sea_orm_migration::prelude::*;

/// `GET /jobs` filters by queue and by type, newest first. Each filter gets
/// an index in that order, so a page (and the bounded count beside it) reads
/// only the rows it returns. The queue index carries `status` as an included
/// column, so it also serves the per-queue, per-status counts that
/// `jobs_queue_status_idx` served (an index-only scan), and replaces it: one
/// index more on the hot row, not two.
///
/// On a large table, create the two indexes `CONCURRENTLY` by hand before
/// upgrading (docs/operations.md); `IF NOT EXISTS` then makes this a no-op.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS jobs_queue_created_idx \
                   ON jobs (queue, created_at DESC, id DESC) INCLUDE (status); \
                 CREATE INDEX IF NOT EXISTS jobs_type_created_idx \
                   ON jobs (type, created_at DESC, id DESC); \
                 DROP INDEX IF EXISTS jobs_queue_status_idx;",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS jobs_queue_status_idx ON jobs (queue, status); \
                 DROP INDEX IF EXISTS jobs_type_created_idx; \
                 DROP INDEX IF EXISTS jobs_queue_created_idx;",
            )
            .await?;
        Ok(())
    }
}
