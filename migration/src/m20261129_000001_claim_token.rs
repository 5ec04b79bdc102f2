use sea_orm_migration::prelude::*;

/// Every claim writes a fresh `claim_token`, and every write a worker makes
/// about its attempt must match it. The fence used to be (`worker_id`,
/// `attempts`); a manual retry resets `attempts`, so a worker paused
/// through a retry could match its own earlier claim and have a stale
/// outcome accepted. A token set by each claim is never reused.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE jobs ADD COLUMN IF NOT EXISTS claim_token uuid")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE jobs DROP COLUMN IF EXISTS claim_token")
            .await?;
        Ok(())
    }
}
