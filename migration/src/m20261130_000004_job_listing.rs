use sea_orm_migration::prelude::*;

/// The list indexes move off `jobs` onto `job_listing`, a row per job that
/// is written once and never updated.
///
/// Every claim and every outcome updates a job's row, and none of those
/// updates can be HOT (`status` is indexed), so each adds an entry to every
/// index of `jobs`, whether or not its columns changed. Four of those
/// indexes order lists by columns that never change after the insert
/// (creation time; queue, type or schedule, then creation time). Kept on a
/// table of their own, they are written once per job instead of three
/// times. `jobs` keeps the indexes the claim path reads and the list by
/// status, whose key does change. Measured on the claims and completions
/// of 50,000 jobs: docs/performance.md.
///
/// Triggers keep `job_listing` in step with `jobs` for every writer, this
/// version's or another's, an operator's `INSERT` included: a statement's
/// inserted rows are copied in one statement, a deleted row's entry goes
/// with it, an update of a listed column (none of ours makes one) is
/// copied, and `TRUNCATE jobs` empties it. Rows are found by (`created_at`,
/// `id`), its creation-time index, which is unique: a job is never listed
/// twice, and no other key (another index to write per job) is needed. The
/// functions pin the `search_path` they were created under, so they find
/// `job_listing` from any session (`pg_dump`'s scripts clear the path).
///
/// Applied as one transaction: the triggers are created first (their lock
/// waits for every write in flight and holds off new ones, updates
/// included), then the existing rows are copied, so no job is left out of
/// the lists. On a large table, every write to `jobs` (claims, heartbeats
/// and outcomes too) waits while the rows are copied and indexed: stop the
/// workers first (docs/operations.md).
#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE job_listing (
    id            uuid        NOT NULL,
    created_at    timestamptz NOT NULL,
    queue         text        NOT NULL,
    type          text        NOT NULL,
    schedule_name text
);

CREATE FUNCTION conveyor_list_inserted() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO job_listing (id, created_at, queue, type, schedule_name)
    SELECT id, created_at, queue, type, schedule_name FROM inserted;
    RETURN NULL;
END
$$;

-- A row at a time: the lookup is then always a probe of the creation-time
-- index (a transition table has no statistics to plan a join by).
CREATE FUNCTION conveyor_list_deleted() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM job_listing WHERE created_at = OLD.created_at AND id = OLD.id;
    RETURN NULL;
END
$$;

CREATE FUNCTION conveyor_list_updated() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE job_listing
       SET id = NEW.id, created_at = NEW.created_at, queue = NEW.queue,
           type = NEW.type, schedule_name = NEW.schedule_name
     WHERE created_at = OLD.created_at AND id = OLD.id;
    RETURN NULL;
END
$$;

CREATE FUNCTION conveyor_list_truncated() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    TRUNCATE job_listing;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_list_inserted AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION conveyor_list_inserted();
CREATE TRIGGER jobs_list_deleted AFTER DELETE ON jobs
    FOR EACH ROW EXECUTE FUNCTION conveyor_list_deleted();
CREATE TRIGGER jobs_list_updated AFTER UPDATE OF id, created_at, queue, type, schedule_name ON jobs
    FOR EACH ROW
    WHEN (OLD.id IS DISTINCT FROM NEW.id OR OLD.created_at IS DISTINCT FROM NEW.created_at
          OR OLD.queue IS DISTINCT FROM NEW.queue OR OLD.type IS DISTINCT FROM NEW.type
          OR OLD.schedule_name IS DISTINCT FROM NEW.schedule_name)
    EXECUTE FUNCTION conveyor_list_updated();
CREATE TRIGGER jobs_list_truncated AFTER TRUNCATE ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION conveyor_list_truncated();

INSERT INTO job_listing (id, created_at, queue, type, schedule_name)
SELECT id, created_at, queue, type, schedule_name FROM jobs;

-- GET /jobs newest first: unfiltered, by queue, by type, by schedule. The
-- first is unique (at no cost: it is written anyway), so a job can never be
-- listed twice (a data-only restore run without --disable-triggers fails
-- instead of doubling the listing).
CREATE UNIQUE INDEX job_listing_created_idx ON job_listing (created_at DESC, id DESC);
CREATE INDEX job_listing_queue_created_idx ON job_listing (queue, created_at DESC, id DESC);
CREATE INDEX job_listing_type_created_idx ON job_listing (type, created_at DESC, id DESC);
CREATE INDEX job_listing_schedule_created_idx ON job_listing (schedule_name, created_at DESC, id DESC)
    WHERE schedule_name IS NOT NULL;

DROP INDEX IF EXISTS jobs_created_idx;
DROP INDEX IF EXISTS jobs_queue_created_idx;
DROP INDEX IF EXISTS jobs_type_created_idx;
DROP INDEX IF EXISTS jobs_schedule_created_idx;
"#;

const DOWN: &str = r#"
CREATE INDEX IF NOT EXISTS jobs_created_idx ON jobs (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_queue_created_idx ON jobs (queue, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_type_created_idx ON jobs (type, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_schedule_created_idx
    ON jobs (schedule_name, created_at DESC, id DESC) WHERE schedule_name IS NOT NULL;
DROP TRIGGER IF EXISTS jobs_list_truncated ON jobs;
DROP TRIGGER IF EXISTS jobs_list_updated ON jobs;
DROP TRIGGER IF EXISTS jobs_list_deleted ON jobs;
DROP TRIGGER IF EXISTS jobs_list_inserted ON jobs;
DROP FUNCTION IF EXISTS conveyor_list_truncated();
DROP FUNCTION IF EXISTS conveyor_list_updated();
DROP FUNCTION IF EXISTS conveyor_list_deleted();
DROP FUNCTION IF EXISTS conveyor_list_inserted();
DROP TABLE IF EXISTS job_listing;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One simple query: PostgreSQL runs its statements as one
        // transaction.
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(DOWN).await?;
        Ok(())
    }
}
