use sea_orm_migration::prelude::*;

/// Periodic jobs: the `schedules` table, and on `jobs` the schedule and
/// tick that made a job (with a partial index, so jobs no schedule made
/// cost nothing).
#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE IF NOT EXISTS schedules (
    name                text        PRIMARY KEY,
    cron                text        NOT NULL,
    timezone            text        NOT NULL DEFAULT 'UTC',
    job_type            text        NOT NULL,
    job_queue           text        NOT NULL DEFAULT 'default',
    job_payload         jsonb       NOT NULL DEFAULT '{}',
    job_priority        smallint    NOT NULL DEFAULT 0,
    job_max_attempts    integer     NOT NULL DEFAULT 4,
    job_timeout_seconds integer     NOT NULL DEFAULT 300,
    enabled             boolean     NOT NULL DEFAULT true,
    missed              text        NOT NULL DEFAULT 'skip',
    max_catch_up        integer     NOT NULL DEFAULT 10,
    -- The wall-clock time (in `timezone`) of the last tick fired, and of
    -- the next; ticks are told apart by wall time.
    last_tick           timestamp,
    last_fired_at       timestamptz,
    next_tick           timestamp,
    next_fire_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT schedules_name_check CHECK (name ~ '^[a-z0-9_.:-]{1,64}$'),
    CONSTRAINT schedules_missed_check CHECK (missed IN ('skip', 'once', 'all')),
    CONSTRAINT schedules_catch_up_check CHECK (max_catch_up BETWEEN 1 AND 1000)
);

-- The scheduler's "what is due": enabled schedules by next fire time.
CREATE INDEX IF NOT EXISTS schedules_due_idx ON schedules (next_fire_at) WHERE enabled;

ALTER TABLE jobs ADD COLUMN IF NOT EXISTS schedule_name text;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS schedule_tick timestamptz;
CREATE INDEX IF NOT EXISTS jobs_schedule_created_idx
    ON jobs (schedule_name, created_at DESC, id DESC) WHERE schedule_name IS NOT NULL;
"#;

const DOWN: &str = r#"
DROP INDEX IF EXISTS jobs_schedule_created_idx;
ALTER TABLE jobs DROP COLUMN IF EXISTS schedule_tick;
ALTER TABLE jobs DROP COLUMN IF EXISTS schedule_name;
DROP TABLE IF EXISTS schedules;
"#;

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
