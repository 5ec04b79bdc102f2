//! Idempotent inserts.
//!
//! Every new job carries its id from the caller ([`NewJob::id`]), and is
//! inserted with `ON CONFLICT DO NOTHING`, which covers both unique keys:
//! - the idempotency key: PostgreSQL makes a concurrent insert of the same
//!   key wait for the first one's transaction, so exactly one caller creates
//!   the row; every other caller then reads it back and compares the stored
//!   request fingerprint with its own to tell a replay from a conflict;
//! - the id: a second try of the same insert after a lost reply (the first
//!   may have committed, or may still be committing) waits for the first,
//!   then finds the row under its own id and answers `Created`. So an
//!   insert is settled by trying it again, never by guessing.

use std::borrow::Borrow;
use std::collections::HashMap;

use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter,
    Statement,
};
use serde::Serialize;

use super::{Store, StoreError};
use crate::job::{Job, NewJob, Schedule};
use entity::job::{Column, Entity};

/// What an insert did.
#[derive(Debug, Clone, PartialEq)]
pub enum Inserted {
    /// A new row: made by this call, or by an earlier try of the same job
    /// (same id and request) whose reply was lost.
    Created(Job),
    /// The key was already used by the same request: the existing row.
    Replayed(Job),
    /// The key (or the id) was already used by a different request: the
    /// existing row, unchanged.
    Conflict(Job),
}

impl Inserted {
    pub fn job(&self) -> &Job {
        match self {
            Inserted::Created(job) | Inserted::Replayed(job) | Inserted::Conflict(job) => job,
        }
    }
}

impl Store {
    /// Validates and inserts `new`, honouring its id and idempotency key.
    pub async fn insert(&self, new: &NewJob) -> Result<Inserted, StoreError> {
        let mut outcomes = self.insert_many(std::slice::from_ref(new)).await?;
        outcomes
            .pop()
            .ok_or_else(|| sea_orm::DbErr::RecordNotInserted.into())
    }

    /// Inserts many jobs in one statement (so one transaction), honouring
    /// each id and idempotency key; returns one outcome per input, in order.
    /// Every job must be valid (check with [`NewJob::validate`] first): an
    /// invalid one fails the whole call and nothing is written.
    pub async fn insert_many<J>(&self, jobs: &[J]) -> Result<Vec<Inserted>, StoreError>
    where
        J: Borrow<NewJob> + Sync,
    {
        insert_many_on(&self.db, jobs).await
    }
}

/// [`Store::insert_many`] on any connection: the store's pool, or a
/// caller's open transaction (see `client::transactional`).
pub(crate) async fn insert_many_on<C, J>(db: &C, jobs: &[J]) -> Result<Vec<Inserted>, StoreError>
where
    C: ConnectionTrait,
    J: Borrow<NewJob> + Sync,
{
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let jobs: Vec<&NewJob> = jobs.iter().map(Borrow::borrow).collect();
    for job in &jobs {
        job.validate()?;
    }
    let fingerprints: Vec<String> = jobs.iter().map(|job| job.fingerprint()).collect();
    let mut outcomes = insert_once(db, &jobs, &fingerprints).await?;
    // A job neither inserted nor found met a row that retention deleted
    // between the insert and the read (its key is free now): the next
    // try inserts it or finds whoever took the key meanwhile.
    for _ in 0..INSERT_TRIES {
        let unsettled: Vec<usize> = (0..jobs.len())
            .filter(|index| outcomes[*index].is_none())
            .collect();
        if unsettled.is_empty() {
            break;
        }
        let again: Vec<&NewJob> = unsettled.iter().map(|index| jobs[*index]).collect();
        let prints: Vec<String> = unsettled
            .iter()
            .map(|index| fingerprints[*index].clone())
            .collect();
        for (index, outcome) in unsettled
            .into_iter()
            .zip(insert_once(db, &again, &prints).await?)
        {
            outcomes[index] = outcome;
        }
    }
    outcomes
        .into_iter()
        .zip(&jobs)
        .map(|(outcome, job)| {
            outcome.ok_or_else(|| {
                sea_orm::DbErr::RecordNotFound(format!(
                    "job {} was neither inserted nor found",
                    job.id
                ))
                .into()
            })
        })
        .collect()
}

/// One try of [`Store::insert_many`]: `None` for a job that was neither
/// inserted nor found.
async fn insert_once<C: ConnectionTrait>(
    db: &C,
    jobs: &[&NewJob],
    fingerprints: &[String],
) -> Result<Vec<Option<Inserted>>, StoreError> {
    // One statement is one transaction: every row or none. No explicit
    // BEGIN/COMMIT, which would add two round trips to every batch and
    // to the latency of every single submission (they come here too).
    let statement = insert_statement(jobs, fingerprints)?;
    // `find_by_statement`, not `Entity::find().from_raw_sql`: the latter
    // first builds (and throws away) a select of every column, 7 % of
    // the API's instructions per submission.
    let mut created: HashMap<uuid::Uuid, Job> = Job::find_by_statement(statement)
        .all(db)
        .await?
        .into_iter()
        .map(|job| (job.id, job))
        .collect();

    // A job the insert skipped met a committed row (ON CONFLICT waited
    // for its transaction), so this read, a new statement, sees it: its
    // own id (an earlier try) or its key, unless retention deleted the
    // row in between (the caller tries again).
    let skipped: Vec<&NewJob> = jobs
        .iter()
        .copied()
        .filter(|job| !created.contains_key(&job.id.as_uuid()))
        .collect();
    let existing: Vec<Job> = if skipped.is_empty() {
        Vec::new()
    } else {
        let keys = skipped
            .iter()
            .filter_map(|job| job.idempotency_key.as_deref());
        Entity::find()
            .filter(
                Condition::any()
                    .add(Column::Id.is_in(skipped.iter().map(|job| job.id.as_uuid())))
                    .add(Column::IdempotencyKey.is_in(keys)),
            )
            .all(db)
            .await?
    };
    let by_id: HashMap<uuid::Uuid, &Job> = existing.iter().map(|job| (job.id, job)).collect();
    let by_key: HashMap<&str, &Job> = existing
        .iter()
        .filter_map(|job| job.idempotency_key.as_deref().map(|key| (key, job)))
        .collect();

    let mut outcomes = Vec::with_capacity(jobs.len());
    for (job, fingerprint) in jobs.iter().zip(fingerprints) {
        let id = job.id.as_uuid();
        if let Some(row) = created.remove(&id) {
            outcomes.push(Some(Inserted::Created(row)));
            continue;
        }
        let same_request = |row: &Job| row.request_hash.as_deref() == Some(fingerprint.as_str());
        if let Some(row) = by_id.get(&id) {
            outcomes.push(Some(if same_request(row) {
                Inserted::Created((*row).clone())
            } else {
                Inserted::Conflict((*row).clone())
            }));
            continue;
        }
        let found = job
            .idempotency_key
            .as_deref()
            .and_then(|key| by_key.get(key));
        outcomes.push(found.map(|found| {
            if same_request(found) {
                Inserted::Replayed((*found).clone())
            } else {
                Inserted::Conflict((*found).clone())
            }
        }));
    }
    Ok(outcomes)
}

/// Tries of an insert that met a row deleted before it could be read.
const INSERT_TRIES: usize = 3;

/// `INSERT INTO jobs (...) SELECT ... FROM jsonb_to_recordset($1) ON
/// CONFLICT DO NOTHING RETURNING *` for `jobs`.
///
/// Every batch size is the same statement with one JSON parameter, so each
/// connection prepares and caches it once; a `VALUES` list would be a new
/// statement (and a new cached plan, on both sides) for every batch size,
/// which group commit makes many. Hand-written rather than sea-orm's insert
/// helpers because times are the database's `now()` (the clock claims
/// compare with), not values; and because sea-orm's `TryInsert` reports a
/// DO NOTHING that returned no row as an error, not as a conflict.
fn insert_statement(jobs: &[&NewJob], fingerprints: &[String]) -> Result<Statement, StoreError> {
    #[derive(Serialize)]
    struct Row<'a> {
        id: uuid::Uuid,
        queue: &'a str,
        task_type: &'a str,
        payload: &'a serde_json::Value,
        priority: i16,
        max_attempts: i32,
        timeout_seconds: i32,
        /// A fixed instant, or `None`: `delay_ms` from now by the database's
        /// clock (no delay: now).
        run_at: Option<chrono::DateTime<chrono::Utc>>,
        delay_ms: Option<i64>,
        idempotency_key: Option<&'a str>,
        request_hash: &'a str,
        schedule_name: Option<&'a str>,
        schedule_tick: Option<chrono::DateTime<chrono::Utc>>,
        traceparent: Option<String>,
    }
    let rows: Vec<Row<'_>> = jobs
        .iter()
        .zip(fingerprints)
        .map(|(job, fingerprint)| {
            let (run_at, delay_ms) = match job.schedule {
                Schedule::Now => (None, None),
                // PostgreSQL keeps microseconds and would round the rest,
                // possibly past the year validation checked.
                Schedule::At(at) => (Some(chrono::SubsecRound::trunc_subsecs(at, 6)), None),
                Schedule::DelaySeconds(secs) => (None, Some(i64::from(secs) * 1_000)),
            };
            Row {
                id: job.id.as_uuid(),
                queue: &job.queue,
                task_type: &job.task_type,
                payload: &job.payload,
                priority: job.priority,
                max_attempts: job.max_attempts,
                timeout_seconds: job.timeout_seconds,
                run_at,
                delay_ms,
                idempotency_key: job.idempotency_key.as_deref(),
                request_hash: fingerprint,
                schedule_name: job.origin.as_ref().map(|origin| origin.schedule.as_str()),
                schedule_tick: job.origin.as_ref().map(|origin| origin.tick),
                traceparent: job.traceparent.map(|context| context.to_string()),
            }
        })
        .collect();
    let json = serde_json::to_string(&rows)
        .map_err(|err| sea_orm::DbErr::Custom(format!("encoding jobs: {err}")))?;
    Ok(Statement::from_sql_and_values(
        DbBackend::Postgres,
        INSERT_JOBS,
        [json.into()],
    ))
}

const INSERT_JOBS: &str = "INSERT INTO jobs (id, queue, type, payload, priority, \
     max_attempts, timeout_seconds, run_at, idempotency_key, request_hash, \
     schedule_name, schedule_tick, traceparent) \
     SELECT id, queue, task_type, payload, priority, max_attempts, timeout_seconds, \
     COALESCE(run_at, now() + COALESCE(delay_ms, 0) * interval '1 millisecond'), \
     idempotency_key, request_hash, schedule_name, schedule_tick, traceparent \
     FROM jsonb_to_recordset($1::text::jsonb) AS r(id uuid, queue text, task_type text, \
     payload jsonb, priority smallint, max_attempts integer, timeout_seconds integer, \
     run_at timestamptz, delay_ms bigint, idempotency_key text, request_hash text, \
     schedule_name text, schedule_tick timestamptz, traceparent text) \
     ON CONFLICT DO NOTHING RETURNING *";
