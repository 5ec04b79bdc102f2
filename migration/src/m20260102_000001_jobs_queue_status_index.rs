use sea_orm_migration::prelude::*;

/// `GET /jobs/summary` counts jobs per queue and status; this index lets
/// PostgreSQL answer from the index alone (113 ms at a million rows, against
/// 290 ms for a table scan; see docs/performance.md), and serves
/// `GET /jobs?queue=` too.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS jobs_queue_status_idx ON jobs (queue, status)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS jobs_queue_status_idx")
            .await?;
        Ok(())
    }
}
