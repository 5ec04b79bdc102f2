use sea_orm_migration::prelude::*;

/// The W3C trace context a job was created with (`POST /jobs`'s
/// `traceparent` header), when one was given. Nullable with no default, so
/// adding it rewrites nothing; a job without one is traced under its own id
/// and stores nothing (docs/decisions.md).
#[derive(DeriveMigrationName)]
pub struct Migration;

// No CHECK: validating one would read the whole table under the ALTER's
// exclusive lock. Only the store writes the column, from a parsed value.
const UP: &str = "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS traceparent text";

const DOWN: &str = "ALTER TABLE jobs DROP COLUMN IF EXISTS traceparent";

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
