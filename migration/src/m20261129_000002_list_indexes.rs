use sea_orm_migration::prelude::*;

/// `GET /jobs` filters by queue and by type, newest first. Each filter gets
/// an index in that order, so a page (and the bounded count beside it) reads
/// only the rows it returns. The queue index replaces `jobs_queue_status_idx`,
/// so there is one index more on the hot row, not two; the per-queue,
/// per-status counts of `GET /jobs/summary` that it served become a
/// parallel table scan (measured in docs/architecture.md).
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
                   ON jobs (queue, created_at DESC, id DESC); \
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
