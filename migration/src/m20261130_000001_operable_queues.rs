use sea_orm_migration::prelude::*;

/// Queues you can operate: their settings (`queues`), every attempt's
/// record (`job_attempts`, written by a trigger) and a running job's
/// reported progress (`jobs.progress`).
///
/// The attempt record is a trigger rather than a write in each transition:
/// every edge out of `running` (a completion, a failure, a retry, a lease
/// the rescuer took back, `recover-stuck`, a shutdown's release, whatever a
/// later edge adds) records its attempt in the same statement, so no path
/// can forget it and a crash cannot separate the two. See
/// `docs/decisions.md`.
#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE IF NOT EXISTS queues (
    name                  text             PRIMARY KEY,
    paused                boolean          NOT NULL DEFAULT false,
    concurrency_limit     integer,
    rate_limit            double precision,
    rate_burst            integer,
    retain_completed_secs bigint,
    retain_failed_secs    bigint,
    retain_canceled_secs  bigint,
    created_at            timestamptz      NOT NULL DEFAULT now(),
    updated_at            timestamptz      NOT NULL DEFAULT now(),

    CONSTRAINT queues_name_check CHECK (name ~ '^[a-z0-9_-]{1,64}$'),
    CONSTRAINT queues_concurrency_check CHECK (concurrency_limit BETWEEN 1 AND 1000000),
    -- At least one job a day: slower rates break the token bucket's arithmetic.
    CONSTRAINT queues_rate_check CHECK (rate_limit >= 1.0 / 86400 AND rate_limit <= 1000000),
    CONSTRAINT queues_burst_check CHECK (rate_burst BETWEEN 1 AND 1000000),
    CONSTRAINT queues_retention_check CHECK (
        retain_completed_secs BETWEEN 0 AND 3153600000
        AND retain_failed_secs BETWEEN 0 AND 3153600000
        AND retain_canceled_secs BETWEEN 0 AND 3153600000)
);

-- One row per ended attempt. Keyed by job first, so a job's history is one
-- index range and there is one index to maintain, not two.
CREATE TABLE IF NOT EXISTS job_attempts (
    job_id     uuid        NOT NULL,
    seq        bigint      GENERATED ALWAYS AS IDENTITY,
    attempt    integer     NOT NULL,
    worker_id  text,
    started_at timestamptz NOT NULL,
    ended_at   timestamptz NOT NULL,
    outcome    text        NOT NULL,
    error      text,
    PRIMARY KEY (job_id, seq),
    CONSTRAINT job_attempts_outcome_check
        CHECK (outcome IN ('completed', 'failed', 'lost', 'interrupted', 'canceled'))
);

-- The attempt that just ended, as the row's old and new values tell it:
-- a shutdown's release gives the attempt back (attempts - 1), the lease
-- rescuer and recover-stuck clear the claim token, a handler's error
-- leaves it.
CREATE OR REPLACE FUNCTION conveyor_record_attempt() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_attempts (job_id, attempt, worker_id, started_at, ended_at, outcome, error)
    VALUES (
        OLD.id, OLD.attempts, OLD.worker_id, OLD.started_at, now(),
        CASE
            WHEN NEW.status = 'completed' THEN 'completed'
            WHEN NEW.status = 'canceled' THEN 'canceled'
            WHEN NEW.attempts < OLD.attempts THEN 'interrupted'
            WHEN NEW.claim_token IS NULL THEN 'lost'
            ELSE 'failed'
        END,
        CASE
            WHEN NEW.status IN ('failed', 'retrying') AND NEW.attempts >= OLD.attempts
            THEN NEW.error_message
        END);
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS jobs_record_attempt ON jobs;
CREATE TRIGGER jobs_record_attempt AFTER UPDATE OF status ON jobs
    FOR EACH ROW WHEN (OLD.status = 'running' AND NEW.status <> 'running')
    EXECUTE FUNCTION conveyor_record_attempt();

ALTER TABLE jobs ADD COLUMN IF NOT EXISTS progress jsonb;
"#;

const DOWN: &str = r#"
ALTER TABLE jobs DROP COLUMN IF EXISTS progress;
DROP TRIGGER IF EXISTS jobs_record_attempt ON jobs;
DROP FUNCTION IF EXISTS conveyor_record_attempt();
DROP TABLE IF EXISTS job_attempts;
DROP TABLE IF EXISTS queues;
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
