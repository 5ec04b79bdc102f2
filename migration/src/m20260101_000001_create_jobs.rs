use sea_orm_migration::prelude::*;

/// The `jobs` table. Written as SQL rather than with the schema builder because
/// its check constraints and partial indexes are the point, and SQL states them
/// plainly.
#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE jobs (
    id               uuid        PRIMARY KEY,
    queue            text        NOT NULL DEFAULT 'default',
    type             text        NOT NULL DEFAULT 'demo',
    payload          jsonb       NOT NULL,
    priority         smallint    NOT NULL DEFAULT 0,
    status           text        NOT NULL DEFAULT 'queued',
    attempts         integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL DEFAULT 4,
    timeout_seconds  integer     NOT NULL DEFAULT 300,
    run_at           timestamptz NOT NULL DEFAULT now(),
    result           jsonb,
    error_message    text,
    idempotency_key  text,
    request_hash     text,
    worker_id        text,
    lease_expires_at timestamptz,
    cancel_requested boolean     NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    completed_at     timestamptz,
    failed_at        timestamptz,
    canceled_at      timestamptz,

    CONSTRAINT jobs_status_check
        CHECK (status IN ('queued', 'running', 'retrying', 'completed', 'failed', 'canceled')),
    CONSTRAINT jobs_queue_check CHECK (queue ~ '^[a-z0-9_-]{1,64}$'),
    CONSTRAINT jobs_type_check CHECK (type ~ '^[a-z0-9_.:-]{1,64}$'),
    CONSTRAINT jobs_payload_check CHECK (jsonb_typeof(payload) = 'object'),
    CONSTRAINT jobs_priority_check CHECK (priority BETWEEN 0 AND 9),
    CONSTRAINT jobs_max_attempts_check CHECK (max_attempts BETWEEN 1 AND 100),
    CONSTRAINT jobs_attempts_check CHECK (attempts BETWEEN 0 AND max_attempts),
    CONSTRAINT jobs_timeout_check CHECK (timeout_seconds BETWEEN 1 AND 86400),
    CONSTRAINT jobs_idempotency_key_check
        CHECK (idempotency_key IS NULL OR char_length(idempotency_key) BETWEEN 1 AND 255),
    -- A running attempt always has an owner and a lease: the janitor and the
    -- fence rely on both.
    CONSTRAINT jobs_running_owner_check
        CHECK (status <> 'running'
               OR (worker_id IS NOT NULL AND lease_expires_at IS NOT NULL AND started_at IS NOT NULL))
);

-- Idempotent inserts: INSERT ... ON CONFLICT (idempotency_key) DO NOTHING.
-- NULLs never conflict, so keyless jobs are unaffected.
CREATE UNIQUE INDEX jobs_idempotency_key_key ON jobs (idempotency_key);

-- GET /jobs newest first, with and without a status filter.
CREATE INDEX jobs_created_idx ON jobs (created_at DESC, id DESC);
CREATE INDEX jobs_status_created_idx ON jobs (status, created_at DESC, id DESC);

-- The reconciler's "due waiting jobs"; partial, so finished jobs cost nothing.
CREATE INDEX jobs_waiting_run_at_idx ON jobs (run_at) WHERE status IN ('queued', 'retrying');

-- Heartbeats (by worker), the janitor (expired leases) and recover-stuck
-- (old started_at) all look only at running jobs, which are few: one small
-- partial index serves them all.
CREATE INDEX jobs_running_worker_idx ON jobs (worker_id, lease_expires_at) WHERE status = 'running';
"#;

const DOWN: &str = "DROP TABLE IF EXISTS jobs;";

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
