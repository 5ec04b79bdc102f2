//! Every edge of the state machine, each one guarded `UPDATE ... RETURNING`.
//!
//! ```text
//! queued ──claim──▶ running ──complete──▶ completed
//!   │                 │ ├──schedule_retry (attempts < max)──▶ retrying ──claim──▶ running
//!   │                 │ ├──fail, or schedule_retry at max──▶ failed
//!   │                 │ └──finish_canceled (cancel requested)──▶ canceled
//!   └──cancel──▶ canceled          retrying ──cancel──▶ canceled
//! failed / canceled ──requeue (manual retry)──▶ queued
//! ```
//!
//! Times are the database's `now()`, so every process compares leases and due
//! times against one clock.

use std::collections::HashMap;
use std::time::Duration;

use sea_orm::sea_query::{Expr, ExprTrait, SimpleExpr};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, Statement,
    UpdateMany,
};

use super::{Fence, Store, StoreError, Transition, WAITING, status_among};
use crate::job::{ClaimToken, Job, JobId, WorkerId};
use entity::JobStatus;
use entity::job::{Column, Entity};

/// Error recorded on jobs whose worker stopped heartbeating.
pub const LEASE_EXPIRED_ERROR: &str = "worker lost: lease expired while running";

/// Error recorded by `recover-stuck`.
pub const STUCK_ERROR: &str = "Job timed out while running";

/// What `recover-stuck` does with a stuck job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StuckAction {
    /// `failed`, with [`STUCK_ERROR`].
    Fail,
    /// `retrying`, due now (or `failed` when no attempts remain).
    Requeue,
}

/// What the lease rescuer did to one job whose lease had expired.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseExpiry {
    pub job: Job,
    /// The worker that held the lost attempt.
    pub previous_worker: Option<String>,
    /// The claim of the lost attempt.
    pub lost_claim: Option<ClaimToken>,
}

impl Store {
    /// `queued | retrying` (due, not canceled) → `running`, for `worker`, with
    /// a lease of `lease`, writing `token` as the attempt's fence. Increments
    /// `attempts`; the only write that does.
    ///
    /// Call it again with the same token after an error: a claim that
    /// committed but whose reply was lost is found on the row by its token
    /// and answered `Won`, its lease renewed, if the lease has not run out
    /// meanwhile (then `Lost`: the lease rescuer moves the job on).
    pub async fn claim(
        &self,
        id: JobId,
        worker: &WorkerId,
        token: ClaimToken,
        lease: Duration,
    ) -> Result<Transition, StoreError> {
        let update =
            claim_update(worker, lease).col_expr(Column::ClaimToken, Expr::value(token.as_uuid()));
        Ok(match self.guarded(id, update).await? {
            Transition::Lost(job)
                if job.status == JobStatus::Running
                    && token.is_on(&job)
                    && job.worker_id.as_deref() == Some(worker.as_str()) =>
            {
                // Ours, but its lease has been running since the lost reply:
                // the claim stands only if the lease has not run out, and
                // it is renewed from now, so the worker's own reckoning of
                // the lease starts with the database's.
                let renew = Entity::update_many()
                    .col_expr(Column::LeaseExpiresAt, now_plus(lease))
                    .filter(Column::Status.eq(JobStatus::Running))
                    .filter(Column::ClaimToken.eq(token.as_uuid()))
                    .filter(Column::WorkerId.eq(worker.as_str()))
                    .filter(Expr::col(Column::LeaseExpiresAt).gt(now()));
                self.guarded(id, renew).await?
            }
            other => other,
        })
    }

    /// [`Store::claim`] for many ids in one statement, each with its own
    /// token: returns the rows it won. Ids must be distinct. Ids it did not
    /// return were not claimable (or do not exist, or the reply was lost);
    /// callers take them through [`Store::claim`] one by one, with the same
    /// tokens, to learn which.
    pub async fn claim_many(
        &self,
        claims: &[(JobId, ClaimToken)],
        worker: &WorkerId,
        lease: Duration,
    ) -> Result<Vec<Job>, StoreError> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        // The ids as an array literal (`{a,b}`, UUIDs need no quoting) and
        // the tokens as a JSON object keyed by id: one statement for every
        // batch size, and a plan that finds rows by primary key.
        let ids = format!(
            "{{{}}}",
            claims
                .iter()
                .map(|(id, _)| id.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        let tokens: serde_json::Map<String, serde_json::Value> = claims
            .iter()
            .map(|(id, token)| (id.to_string(), serde_json::json!(token.as_uuid())))
            .collect();
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            CLAIM_MANY.as_str(),
            [
                ids.into(),
                serde_json::Value::Object(tokens).into(),
                worker.as_str().into(),
                millis(lease).into(),
            ],
        );
        Ok(Job::find_by_statement(statement).all(&self.db).await?)
    }

    /// `running` (fenced) → `completed` with `result`.
    pub async fn complete(
        &self,
        fence: &Fence,
        result: serde_json::Value,
    ) -> Result<Transition, StoreError> {
        let update = Entity::update_many()
            .col_expr(Column::Status, status(JobStatus::Completed))
            .col_expr(Column::Result, Expr::value(result))
            .col_expr(Column::LeaseExpiresAt, null())
            .col_expr(Column::CompletedAt, now())
            .col_expr(Column::UpdatedAt, now());
        self.fenced(fence, update).await
    }

    /// [`Store::complete`] for many attempts in one statement (group
    /// commit): each row is fenced on its own, exactly as `complete` fences
    /// it. Returns one transition per item, in order; items the statement
    /// did not win are read back to say why.
    pub async fn complete_many(
        &self,
        items: &[(Fence, serde_json::Value)],
    ) -> Result<Vec<Transition>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        // One JSON parameter, however many rows: no parameter-count limit
        // and one prepared statement for every batch size.
        // An attempt listed twice is written once, with its first outcome
        // (a join with two matching rows would pick either). Attempts are
        // told apart by token: a stale and a current completion of one job
        // are two attempts, and only the current one matches the row.
        let mut seen = std::collections::HashSet::new();
        let rows: Vec<serde_json::Value> = items
            .iter()
            .filter(|(fence, _)| seen.insert((fence.job_id, fence.token)))
            .map(|(fence, result)| {
                serde_json::json!({
                    "id": fence.job_id.as_uuid(),
                    "token": fence.token.as_uuid(),
                    "worker_id": fence.worker_id.as_str(),
                    "result": result,
                })
            })
            .collect();
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            COMPLETE_MANY,
            [serde_json::Value::Array(rows).into()],
        );
        let mut won: HashMap<(uuid::Uuid, Option<uuid::Uuid>), Job> =
            Job::find_by_statement(statement)
                .all(&self.db)
                .await?
                .into_iter()
                .map(|job| ((job.id, job.claim_token), job))
                .collect();
        let mut transitions = Vec::with_capacity(items.len());
        for (fence, _) in items {
            let key = (fence.job_id.as_uuid(), Some(fence.token.as_uuid()));
            transitions.push(match won.remove(&key) {
                Some(job) => Transition::Won(job),
                None => settle(fence, self.find(fence.job_id).await?),
            });
        }
        Ok(transitions)
    }

    /// `running` (fenced) → `failed` with `error`: a permanent failure.
    pub async fn fail(&self, fence: &Fence, error: &str) -> Result<Transition, StoreError> {
        let update = Entity::update_many()
            .col_expr(Column::Status, status(JobStatus::Failed))
            .col_expr(
                Column::ErrorMessage,
                Expr::value(storable(error).into_owned()),
            )
            .col_expr(Column::LeaseExpiresAt, null())
            .col_expr(Column::FailedAt, now())
            .col_expr(Column::UpdatedAt, now());
        self.fenced(fence, update).await
    }

    /// `running` (fenced) → `retrying`, due `delay` from now by the
    /// database's clock, after a retryable error; or → `failed` when the
    /// attempt was the last one allowed; or → `canceled` when cancellation
    /// was requested meanwhile. The store, not the caller, applies these
    /// rules, so no caller can schedule an attempt beyond `max_attempts` or
    /// resurrect a job a client canceled.
    pub async fn schedule_retry(
        &self,
        fence: &Fence,
        error: &str,
        delay: Duration,
    ) -> Result<Transition, StoreError> {
        self.fenced(fence, retry_update(error, delay)).await
    }

    /// `running` (fenced, cancel requested) → `canceled`: the worker stopped
    /// the handler because a client asked it to.
    pub async fn finish_canceled(&self, fence: &Fence) -> Result<Transition, StoreError> {
        self.fenced(fence, canceled_update()).await
    }

    /// [`Store::schedule_retry`] made by the server rather than by the
    /// attempt's worker (a remote worker's attempt found past its timeout):
    /// the claim token is cleared, as the lease rescuer clears it, so that
    /// nothing the worker reports for that attempt afterwards matches.
    pub async fn end_timed_out(
        &self,
        fence: &Fence,
        error: &str,
        delay: Duration,
    ) -> Result<Transition, StoreError> {
        let update = retry_update(error, delay).col_expr(Column::ClaimToken, null());
        self.fenced(fence, update).await
    }

    /// [`Store::finish_canceled`] made by the server for a remote worker's
    /// attempt, the claim token cleared as [`Store::end_timed_out`] clears
    /// it.
    pub async fn end_canceled(&self, fence: &Fence) -> Result<Transition, StoreError> {
        let update = canceled_update().col_expr(Column::ClaimToken, null());
        self.fenced(fence, update).await
    }

    /// `running` (fenced) → `retrying`, due now, with the interrupted attempt
    /// not counted: a graceful shutdown puts back what it could not finish.
    /// A job whose cancellation was requested ends `canceled` instead.
    pub async fn release(&self, fence: &Fence) -> Result<Transition, StoreError> {
        let update = Entity::update_many()
            .col_expr(
                Column::Status,
                Expr::cust(format!(
                    "CASE WHEN {CANCELED} THEN 'canceled' ELSE 'retrying' END"
                )),
            )
            .col_expr(
                Column::Attempts,
                Expr::cust(format!(
                    "CASE WHEN {CANCELED} THEN attempts ELSE attempts - 1 END"
                )),
            )
            .col_expr(
                Column::RunAt,
                Expr::cust(format!("CASE WHEN {CANCELED} THEN run_at ELSE now() END")),
            )
            .col_expr(Column::LeaseExpiresAt, null())
            .col_expr(
                Column::CanceledAt,
                Expr::cust(format!("CASE WHEN {CANCELED} THEN now() END")),
            )
            .col_expr(Column::UpdatedAt, now());
        self.fenced(fence, update).await
    }

    /// `queued | retrying` → `canceled`: a waiting job will not run.
    pub async fn cancel(&self, id: JobId) -> Result<Transition, StoreError> {
        let update = Entity::update_many()
            .col_expr(Column::Status, status(JobStatus::Canceled))
            .col_expr(Column::CanceledAt, now())
            .col_expr(Column::UpdatedAt, now())
            .filter(Expr::cust(WAITING.as_str()));
        self.guarded(id, update).await
    }

    /// `running` → `running` with `cancel_requested` set; the worker holding
    /// it stops the handler and calls [`Store::finish_canceled`]. Lost when
    /// the job is not running or cancellation was already requested.
    pub async fn request_cancel(&self, id: JobId) -> Result<Transition, StoreError> {
        let update = Entity::update_many()
            .col_expr(Column::CancelRequested, Expr::value(true))
            .col_expr(Column::UpdatedAt, now())
            .filter(Column::Status.eq(JobStatus::Running))
            .filter(Column::CancelRequested.eq(false));
        self.guarded(id, update).await
    }

    /// `failed | canceled` → `queued`, due now, with attempts and the previous
    /// outcome cleared: the manual retry.
    pub async fn requeue(&self, id: JobId) -> Result<Transition, StoreError> {
        let update = Entity::update_many()
            .col_expr(Column::Status, status(JobStatus::Queued))
            .col_expr(Column::Attempts, Expr::value(0))
            .col_expr(Column::RunAt, now())
            .col_expr(Column::Result, null())
            .col_expr(Column::ErrorMessage, null())
            .col_expr(Column::WorkerId, null())
            .col_expr(Column::LeaseExpiresAt, null())
            .col_expr(Column::CancelRequested, Expr::value(false))
            .col_expr(Column::StartedAt, null())
            .col_expr(Column::CompletedAt, null())
            .col_expr(Column::FailedAt, null())
            .col_expr(Column::CanceledAt, null())
            .col_expr(Column::UpdatedAt, now())
            .filter(Expr::cust(status_among(&[
                JobStatus::Failed,
                JobStatus::Canceled,
            ])));
        self.guarded(id, update).await
    }

    /// Extends, in one statement, the lease of each attempt in `running`
    /// (the jobs a worker's tasks are running, with their claims' tokens)
    /// that is still the job's current attempt. Returns those it extended:
    /// an attempt missing from the answer was taken from the worker (its
    /// lease expired and the job moved on), and its handler must stop.
    /// Rows the worker holds but runs no task for are not extended, so
    /// their leases expire and the lease rescuer moves them on.
    pub async fn heartbeat(
        &self,
        worker: &WorkerId,
        running: &[(JobId, ClaimToken)],
        lease: Duration,
    ) -> Result<Vec<LeaseRenewal>, StoreError> {
        let running: Vec<(JobId, ClaimToken, Option<serde_json::Value>)> = running
            .iter()
            .map(|(id, token)| (*id, *token, None))
            .collect();
        self.heartbeat_reporting(worker, &running, lease).await
    }

    /// [`Store::heartbeat`] that also writes the progress reported for
    /// some attempts (`Some`), in the same statement: progress costs no
    /// write of its own. Only a current attempt's progress is written.
    pub async fn heartbeat_reporting(
        &self,
        worker: &WorkerId,
        running: &[(JobId, ClaimToken, Option<serde_json::Value>)],
        lease: Duration,
    ) -> Result<Vec<LeaseRenewal>, StoreError> {
        if running.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<serde_json::Value> = running
            .iter()
            .map(|(id, token, progress)| {
                serde_json::json!({
                    "id": id.as_uuid(),
                    "token": token.as_uuid(),
                    "report": progress.is_some(),
                    "progress": progress,
                })
            })
            .collect();
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            HEARTBEAT,
            [
                serde_json::Value::Array(rows).into(),
                millis(lease).into(),
                worker.as_str().into(),
            ],
        );
        Ok(LeaseRenewal::find_by_statement(statement)
            .all(&self.db)
            .await?)
    }

    /// The lease rescuer's edge: every `running` job whose lease has
    /// expired (its worker died or stalled) → `retrying` due now, or
    /// `failed` when that was its last attempt, or `canceled` when
    /// cancellation was requested; its claim token is cleared, so no write
    /// of the lost attempt can match it again. At most `limit` jobs per
    /// call. Two rescuers racing cannot both act on one job: rows are taken
    /// `FOR UPDATE SKIP LOCKED` and the lease is checked again.
    pub async fn expire_leases(&self, limit: u64) -> Result<Vec<LeaseExpiry>, StoreError> {
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "WITH expired AS (SELECT id, claim_token FROM jobs \
                 WHERE status = 'running' AND lease_expires_at < now() \
                 LIMIT $1 FOR UPDATE SKIP LOCKED) \
                 UPDATE jobs SET \
                 status = CASE WHEN {CANCELED} THEN 'canceled' WHEN {EXHAUSTED} THEN 'failed' ELSE 'retrying' END, \
                 error_message = $2, lease_expires_at = NULL, claim_token = NULL, \
                 failed_at = CASE WHEN NOT {CANCELED} AND {EXHAUSTED} THEN now() END, \
                 canceled_at = CASE WHEN {CANCELED} THEN now() END, \
                 run_at = CASE WHEN {RETRYABLE} THEN now() ELSE run_at END, \
                 updated_at = now() \
                 FROM expired WHERE jobs.id = expired.id \
                 AND jobs.status = 'running' AND jobs.lease_expires_at < now() \
                 RETURNING jobs.*, expired.claim_token AS lost_claim"
            ),
            [
                i64::try_from(limit).unwrap_or(i64::MAX).into(),
                LEASE_EXPIRED_ERROR.into(),
            ],
        );
        let rows = self.db.query_all_raw(statement).await?;
        rows.iter()
            .map(|row| {
                let job = Job::from_query_result(row, "")?;
                let lost_claim: Option<uuid::Uuid> = row.try_get("", "lost_claim")?;
                Ok(LeaseExpiry {
                    // `worker_id` is kept on the row as a record of who lost it.
                    previous_worker: job.worker_id.clone(),
                    lost_claim: lost_claim.map(ClaimToken::from),
                    job,
                })
            })
            .collect()
    }

    /// `running` → `failed` or `retrying` for a job `recover-stuck` read as
    /// stuck, only if the row has not changed since: same status, start and
    /// attempt. A job that finished (or was reclaimed) meanwhile is left alone.
    pub async fn recover_stuck(
        &self,
        seen: &Job,
        action: StuckAction,
    ) -> Result<Transition, StoreError> {
        let update = match action {
            StuckAction::Fail => Entity::update_many()
                .col_expr(Column::Status, status(JobStatus::Failed))
                .col_expr(Column::ErrorMessage, Expr::value(STUCK_ERROR))
                .col_expr(Column::ClaimToken, null())
                .col_expr(Column::LeaseExpiresAt, null())
                .col_expr(Column::FailedAt, now())
                .col_expr(Column::UpdatedAt, now()),
            StuckAction::Requeue => after_lost_attempt(Entity::update_many(), STUCK_ERROR)
                .col_expr(
                    Column::RunAt,
                    Expr::cust(format!("CASE WHEN {RETRYABLE} THEN now() ELSE run_at END")),
                )
                .col_expr(Column::ClaimToken, null()),
        };
        let update = update
            .filter(Column::Status.eq(JobStatus::Running))
            .filter(Column::Attempts.eq(seen.attempts));
        let update = match seen.started_at {
            Some(started_at) => update.filter(Column::StartedAt.eq(started_at)),
            None => update.filter(Column::StartedAt.is_null()),
        };
        self.guarded(JobId::from(seen.id), update).await
    }

    /// Runs a worker-side update that must match `fence`; a miss is
    /// settled by the row as found (see [`settle`]).
    async fn fenced(
        &self,
        fence: &Fence,
        update: UpdateMany<Entity>,
    ) -> Result<Transition, StoreError> {
        let update = update
            .filter(Column::Status.eq(JobStatus::Running))
            .filter(Column::ClaimToken.eq(fence.token.as_uuid()))
            .filter(Column::WorkerId.eq(fence.worker_id.as_str()));
        Ok(match self.guarded(fence.job_id, update).await? {
            Transition::Lost(found) => settle(fence, Some(found)),
            other => other,
        })
    }

    /// Runs `update` on job `id`; when it matches no row, reads the row to say
    /// whether it exists.
    async fn guarded(
        &self,
        id: JobId,
        update: UpdateMany<Entity>,
    ) -> Result<Transition, StoreError> {
        let mut rows = update
            .filter(Column::Id.eq(id.as_uuid()))
            .exec_with_returning(&self.db)
            .await?;
        if let Some(job) = rows.pop() {
            return Ok(Transition::Won(job));
        }
        Ok(match self.find(id).await? {
            Some(job) => Transition::Lost(job),
            None => Transition::NotFound,
        })
    }
}

/// The claim edge without its id filter: `queued | retrying` (due, not
/// canceled, its queue not paused) → `running` for `worker`, attempts + 1, leased for `lease`.
fn claim_update(worker: &WorkerId, lease: Duration) -> UpdateMany<Entity> {
    Entity::update_many()
        .col_expr(Column::Status, status(JobStatus::Running))
        .col_expr(Column::Attempts, Expr::col(Column::Attempts).add(1))
        .col_expr(Column::WorkerId, Expr::value(worker.as_str()))
        .col_expr(Column::LeaseExpiresAt, now_plus(lease))
        .col_expr(Column::StartedAt, now())
        .col_expr(Column::Progress, null())
        .col_expr(Column::UpdatedAt, now())
        .filter(Expr::cust(WAITING.as_str()))
        .filter(Expr::col(Column::RunAt).lte(now()))
        .filter(Column::CancelRequested.eq(false))
        .filter(Expr::cust(NOT_PAUSED))
}

/// No job of a paused queue is claimed: checked in the claim itself, so a
/// pause holds from the moment it commits, whatever Redis holds or a
/// worker last read.
const NOT_PAUSED: &str =
    "NOT EXISTS (SELECT 1 FROM queues WHERE queues.name = jobs.queue AND queues.paused)";

/// A fenced write that matched no row, settled by the row as found. If the
/// row still carries the fence's token (and worker) but is no longer
/// running, only this attempt's own outcome write can have moved it (the lease rescuer and
/// `recover-stuck` clear the token, a new claim replaces it): the write was
/// made and its reply lost, so it is `Won`. Otherwise it is `Lost`; always
/// so for a fence that does not settle ([`Fence::settles`]).
fn settle(fence: &Fence, found: Option<Job>) -> Transition {
    match found {
        Some(job)
            if fence.settles
                && job.status != JobStatus::Running
                && fence.token.is_on(&job)
                && job.worker_id.as_deref() == Some(fence.worker_id.as_str()) =>
        {
            Transition::Won(job)
        }
        Some(job) => Transition::Lost(job),
        None => Transition::NotFound,
    }
}

/// An error message as a `text` column can hold it: PostgreSQL refuses NUL
/// characters, and a handler's error may contain anything.
fn storable(error: &str) -> std::borrow::Cow<'_, str> {
    if error.contains('\0') {
        std::borrow::Cow::Owned(error.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(error)
    }
}

/// Whole milliseconds of `duration`, as SQL interval arithmetic takes them.
fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A lease [`Store::heartbeat`] extended.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct LeaseRenewal {
    pub id: uuid::Uuid,
    /// The renewed attempt's claim token.
    pub token: uuid::Uuid,
    /// A client asked for the job to be canceled: stop its handler.
    pub cancel_requested: bool,
    pub queue: String,
    /// Which attempt it is (1 for the first).
    pub attempts: i32,
    pub timeout_seconds: i32,
    /// Until when the lease now holds, by the database's clock.
    pub lease_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The attempt has run for longer than the job's timeout (by the
    /// database's clock). A worker's own handler timeout stops it first;
    /// a remote worker's attempt is ended by [`crate::remote`] instead.
    pub overdue: bool,
}

/// The statement behind [`Store::claim_many`]: [`claim_update`]'s columns
/// and guards, for the ids in the array $1, each with its token from the
/// JSON object $2.
///
/// Not a join with `jsonb_to_recordset` or `unnest`: with the table's
/// statistics out of date (autovacuum analyses it up to a minute after a
/// burst of inserts, and not at all while the changes stay under its
/// threshold), the planner hashes or walks every waiting job to find the
/// few it was given. `id = ANY($1)` with the status guard of
/// [`status_among`] leaves it the primary key alone, whatever the
/// statistics say.
static CLAIM_MANY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "UPDATE jobs SET status = 'running', attempts = attempts + 1, \
         worker_id = $3, claim_token = ($2::jsonb ->> id::text)::uuid, \
         lease_expires_at = now() + $4 * interval '1 millisecond', \
         started_at = now(), progress = NULL, updated_at = now() \
         WHERE id = ANY ($1::text::uuid[]) AND {} \
         AND run_at <= now() AND NOT cancel_requested \
         AND NOT EXISTS (SELECT 1 FROM queues WHERE queues.name = jobs.queue AND queues.paused) \
         RETURNING *",
        WAITING.as_str()
    )
});

/// The statement behind [`Store::complete_many`]: the same columns and the
/// same fence as [`Store::complete`], per row of a JSON array.
///
/// Its rows are locked first, in id order, then updated. An `UPDATE ...
/// FROM` locks rows in the order its plan meets them, which may be the
/// array's or the table's (a hash join over a scan of `jobs`, on a small
/// table); a heartbeat ([`HEARTBEAT`]) and a batch of completions over the
/// same running jobs, each locking in its own order, could wait on each
/// other in a cycle: a deadlock, which stalls both for `deadlock_timeout`
/// and fails one. `ORDER BY id FOR UPDATE` locks in id order whatever the
/// plan.
const COMPLETE_MANY: &str = "WITH v AS MATERIALIZED (SELECT * FROM jsonb_to_recordset($1::jsonb) \
     AS v(id uuid, token uuid, worker_id text, result jsonb)), \
     locked AS (SELECT id FROM jobs WHERE id = ANY (ARRAY(SELECT id FROM v)) ORDER BY id FOR UPDATE) \
     UPDATE jobs SET status = 'completed', result = COALESCE(v.result, 'null'::jsonb), \
     lease_expires_at = NULL, completed_at = now(), updated_at = now() \
     FROM v WHERE jobs.id = v.id AND jobs.id IN (SELECT id FROM locked) \
     AND jobs.status = 'running' AND jobs.claim_token = v.token \
     AND jobs.worker_id = v.worker_id \
     RETURNING jobs.*";

/// The statement behind [`Store::heartbeat`]: the lease of each listed
/// attempt that is still current, extended by $2 ms, and its progress
/// where one was reported.
///
/// Its rows are locked first, in id order, as [`COMPLETE_MANY`] locks its.
const HEARTBEAT: &str = "WITH h AS MATERIALIZED (SELECT * FROM jsonb_to_recordset($1::jsonb) \
     AS h(id uuid, token uuid, report boolean, progress jsonb)), \
     locked AS (SELECT id FROM jobs WHERE id = ANY (ARRAY(SELECT id FROM h)) ORDER BY id FOR UPDATE) \
     UPDATE jobs SET lease_expires_at = now() + $2 * interval '1 millisecond', \
     progress = CASE WHEN h.report THEN h.progress ELSE jobs.progress END \
     FROM h WHERE jobs.id = h.id AND jobs.id IN (SELECT id FROM locked) \
     AND jobs.status = 'running' AND jobs.claim_token = h.token \
     AND jobs.worker_id = $3 \
     RETURNING jobs.id, jobs.claim_token AS token, jobs.cancel_requested, jobs.queue, \
     jobs.attempts, jobs.timeout_seconds, jobs.lease_expires_at, \
     COALESCE(jobs.started_at + jobs.timeout_seconds * interval '1 second' <= now(), false) AS overdue";

/// A failed attempt leads to another only when none of these hold.
const CANCELED: &str = "cancel_requested";
const EXHAUSTED: &str = "attempts >= max_attempts";
const RETRYABLE: &str = "NOT cancel_requested AND attempts < max_attempts";

/// The columns every end of a failed attempt sets (all but `run_at`): the
/// job is canceled if that was asked for, failed if that was its last
/// attempt, and otherwise retrying with `error` recorded.
fn after_lost_attempt(update: UpdateMany<Entity>, error: &str) -> UpdateMany<Entity> {
    update
        .col_expr(
            Column::Status,
            Expr::cust(format!(
                "CASE WHEN {CANCELED} THEN 'canceled' WHEN {EXHAUSTED} THEN 'failed' ELSE 'retrying' END"
            )),
        )
        .col_expr(Column::ErrorMessage, Expr::value(storable(error).into_owned()))
        .col_expr(Column::LeaseExpiresAt, null())
        .col_expr(
            Column::FailedAt,
            Expr::cust(format!("CASE WHEN NOT {CANCELED} AND {EXHAUSTED} THEN now() END")),
        )
        .col_expr(
            Column::CanceledAt,
            Expr::cust(format!("CASE WHEN {CANCELED} THEN now() END")),
        )
        .col_expr(Column::UpdatedAt, now())
}

/// [`Store::schedule_retry`]'s columns: the failed attempt's end, and the
/// next one due `delay` from now when retryable.
fn retry_update(error: &str, delay: Duration) -> UpdateMany<Entity> {
    after_lost_attempt(Entity::update_many(), error).col_expr(
        Column::RunAt,
        Expr::cust(format!(
            "CASE WHEN {RETRYABLE} THEN now() + interval '{} milliseconds' ELSE run_at END",
            millis(delay)
        )),
    )
}

/// [`Store::finish_canceled`]'s columns and guard.
fn canceled_update() -> UpdateMany<Entity> {
    Entity::update_many()
        .col_expr(Column::Status, status(JobStatus::Canceled))
        .col_expr(Column::LeaseExpiresAt, null())
        .col_expr(Column::CanceledAt, now())
        .col_expr(Column::UpdatedAt, now())
        .filter(Column::CancelRequested.eq(true))
}

fn status(status: JobStatus) -> SimpleExpr {
    Expr::value(status.as_str())
}

fn now() -> SimpleExpr {
    Expr::cust("now()")
}

fn null() -> SimpleExpr {
    Expr::cust("NULL")
}

fn now_plus(duration: Duration) -> SimpleExpr {
    // An integer we formatted ourselves: no injection surface.
    Expr::cust(format!(
        "now() + interval '{} milliseconds'",
        millis(duration)
    ))
}
