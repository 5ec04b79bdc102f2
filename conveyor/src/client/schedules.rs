//! Periodic schedules through the client: create, change, pause, resume,
//! delete, fire now, and the firing of due ticks the leader's scheduler
//! runs. Every job a tick makes is enqueued with an idempotency key made
//! from the schedule's name and the tick's wall time, so a tick fired twice
//! (two leaders, a pass retried after an error) makes one job.

use chrono::{DateTime, Utc};

use super::Client;
use crate::job::{InvalidJob, Job, NewJob, Origin};
use crate::periodic::{Missed, Tick, Timing, tick_key, to_fire};
use crate::store::{Inserted, Position, ScheduleRow, ScheduleSpec, StoreError};

/// Most missed ticks a schedule may catch up on (`max_catch_up`).
pub const MAX_CATCH_UP: i32 = 1_000;

/// Checks a schedule before it is stored: its name, timing and job
/// template, naming the field (`job.type`, ...) that is wrong.
pub fn check_schedule(spec: &ScheduleSpec) -> Result<Timing, InvalidJob> {
    if !is_schedule_name(&spec.name) {
        return Err(InvalidJob::new(
            "name",
            format!(
                "must be 1 to 64 of a-z, 0-9, `_`, `.`, `:`, `-` (got {:?})",
                spec.name
            ),
        ));
    }
    let timing = Timing::new(&spec.cron, &spec.timezone)?;
    template(spec, None).validate().map_err(|err| {
        let field = match err.field {
            "type" => "job.type",
            "queue" => "job.queue",
            "payload" => "job.payload",
            "priority" => "job.priority",
            "max_attempts" => "job.max_attempts",
            "timeout_seconds" => "job.timeout_seconds",
            other => other,
        };
        InvalidJob::new(field, err.message)
    })?;
    if !(1..=MAX_CATCH_UP).contains(&spec.max_catch_up) {
        return Err(InvalidJob::new(
            "max_catch_up",
            format!(
                "must be between 1 and {MAX_CATCH_UP} (got {})",
                spec.max_catch_up
            ),
        ));
    }
    Ok(timing)
}

/// A schedule's name: what its jobs' keys and `GET /jobs?schedule=` use.
pub fn is_schedule_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.:-".contains(c))
}

/// The job a schedule makes, for `tick` if any.
fn template(spec: &ScheduleSpec, origin: Option<Origin>) -> NewJob {
    NewJob {
        queue: spec.job_queue.clone(),
        priority: spec.job_priority,
        max_attempts: spec.job_max_attempts,
        timeout_seconds: spec.job_timeout_seconds,
        origin,
        ..NewJob::new(spec.job_type.clone(), spec.job_payload.clone())
    }
}

/// The definition of a stored schedule.
pub fn spec_of(row: &ScheduleRow) -> ScheduleSpec {
    ScheduleSpec {
        name: row.name.clone(),
        cron: row.cron.clone(),
        timezone: row.timezone.clone(),
        job_type: row.job_type.clone(),
        job_queue: row.job_queue.clone(),
        job_payload: row.job_payload.clone(),
        job_priority: row.job_priority,
        job_max_attempts: row.job_max_attempts,
        job_timeout_seconds: row.job_timeout_seconds,
        enabled: row.enabled,
        missed: row.missed.parse().unwrap_or_default(),
        max_catch_up: row.max_catch_up,
    }
}

/// Checks `spec` and starts its clock at `now` (the ticks before are not
/// its), off the async threads: finding that an expression never matches
/// walks years of wall times.
async fn checked_start(
    spec: &ScheduleSpec,
    now: DateTime<Utc>,
) -> Result<(Timing, Position), StoreError> {
    let spec = spec.clone();
    tokio::task::spawn_blocking(move || {
        let timing = check_schedule(&spec)?;
        if !timing.fires_after(now) {
            return Err(InvalidJob::new(
                "cron",
                format!("{:?} never matches in the next ten years", spec.cron),
            ));
        }
        let position = timing.first_after(now);
        Ok((timing, position))
    })
    .await
    .map_err(|_| StoreError::Interrupted("schedule check"))?
    .map_err(StoreError::from)
}

/// Jobs a schedule's catch-up inserts per statement.
const FIRE_BATCH: usize = 100;

/// What creating a schedule did.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    Created(ScheduleRow),
    /// The name is taken: the existing schedule, unchanged.
    Exists(ScheduleRow),
}

impl Client {
    /// Creates a schedule; its first tick is the first after now.
    pub async fn create_schedule(&self, spec: &ScheduleSpec) -> Result<Created, StoreError> {
        let (_, position) = checked_start(spec, self.store.db_now().await?).await?;
        if let Some(row) = self.store.create_schedule(spec, &position).await? {
            tracing::info!(event = "schedule_created", schedule = %spec.name, cron = %spec.cron,
                timezone = %spec.timezone, "schedule {} created", spec.name);
            return Ok(Created::Created(row));
        }
        match self.store.schedule(&spec.name).await? {
            Some(row) => Ok(Created::Exists(row)),
            // Deleted between the two statements: try once more.
            None => Box::pin(self.create_schedule(spec)).await,
        }
    }

    /// Creates the schedule or replaces its definition, keeping its place
    /// unless its timing changed: for applications that declare their
    /// schedules in code at start-up.
    pub async fn declare_schedule(&self, spec: &ScheduleSpec) -> Result<ScheduleRow, StoreError> {
        let (_, position) = checked_start(spec, self.store.db_now().await?).await?;
        self.store.upsert_schedule(spec, &position).await
    }

    /// Applies `change` to the named schedule (read, changed, written if
    /// nobody wrote it meanwhile; tried again otherwise). A new timing, or
    /// a resume, starts its clock from now: ticks while it was paused are
    /// not fired. `None` if there is no such schedule.
    pub async fn update_schedule(
        &self,
        name: &str,
        change: impl Fn(&mut ScheduleSpec),
    ) -> Result<Option<ScheduleRow>, StoreError> {
        for _ in 0..5 {
            let Some(row) = self.store.schedule(name).await? else {
                return Ok(None);
            };
            let before = spec_of(&row);
            let mut spec = before.clone();
            change(&mut spec);
            spec.name = row.name.clone();
            let (timing, fresh) = checked_start(&spec, self.store.db_now().await?).await?;
            let restart = spec.cron != before.cron
                || spec.timezone != before.timezone
                || (spec.enabled && !before.enabled);
            let position = match (restart, row.last_tick) {
                (false, Some(last_tick)) => Position {
                    last_tick,
                    next: timing.next_after(last_tick),
                },
                _ => fresh,
            };
            if let Some(row) = self
                .store
                .replace_schedule(&spec, &position, row.updated_at)
                .await?
            {
                tracing::info!(event = "schedule_changed", schedule = %name, enabled = spec.enabled,
                    cron = %spec.cron, timezone = %spec.timezone, "schedule {name} changed");
                return Ok(Some(row));
            }
        }
        Err(StoreError::Interrupted(
            "update_schedule: the schedule kept changing",
        ))
    }

    pub async fn delete_schedule(&self, name: &str) -> Result<bool, StoreError> {
        let deleted = self.store.delete_schedule(name).await?;
        if deleted {
            tracing::info!(event = "schedule_deleted", schedule = %name, "schedule {name} deleted");
        }
        Ok(deleted)
    }

    /// Enqueues the schedule's job now, outside its ticks (the tick it
    /// records is now). `None` if there is no such schedule.
    pub async fn trigger_schedule(&self, name: &str) -> Result<Option<Inserted>, StoreError> {
        let Some(row) = self.store.schedule(name).await? else {
            return Ok(None);
        };
        let now = self.store.db_now().await?;
        let origin = Origin {
            schedule: row.name.clone(),
            tick: now,
        };
        let job = template(&spec_of(&row), Some(origin));
        Ok(Some(self.enqueue(job).await?))
    }

    /// Fires the due ticks of `row` at `now` (PostgreSQL's clock) by its
    /// missed-tick policy and moves its clock on; returns the jobs made
    /// (new or found: a tick fired before is found by its key). Nothing
    /// moves unless every job was stored, so a failed pass is repeated,
    /// never skipped, and a repeat makes no second job.
    pub async fn fire_schedule(
        &self,
        row: &ScheduleRow,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, StoreError> {
        let spec = spec_of(row);
        let timing = check_schedule(&spec)?;
        let last = row.last_tick.unwrap_or_else(|| timing.wall_of(now));
        let (due, next) = timing.due(last, now);
        // More ticks than one pass looks at (a long outage of a frequent
        // schedule): this window is all missed; step over it without
        // firing, so the policy applies once, to the ticks before now.
        if due.len() >= crate::periodic::MAX_TICKS_SCANNED
            && next.is_some_and(|tick| tick.at <= now)
        {
            if let Some(newest) = due.last() {
                let position = Position {
                    last_tick: newest.wall,
                    next,
                };
                self.store
                    .advance_schedule(&row.name, row.updated_at, &position, false)
                    .await?;
            }
            return Ok(Vec::new());
        }
        let Some(newest) = due.last() else {
            // Not due after all (its next fire time was stale): re-aim it.
            let position = Position {
                last_tick: last,
                next,
            };
            self.store
                .advance_schedule(&row.name, row.updated_at, &position, false)
                .await?;
            return Ok(Vec::new());
        };
        let missed: Missed = spec.missed;
        let fire: Vec<Tick> = to_fire(&due, now, missed, spec.max_catch_up as usize);
        let jobs: Vec<NewJob> = fire
            .iter()
            .map(|tick| {
                let mut job = template(
                    &spec,
                    Some(Origin {
                        schedule: row.name.clone(),
                        tick: tick.at,
                    }),
                );
                job.idempotency_key = Some(tick_key(&row.name, tick.at));
                job
            })
            .collect();
        let mut made = Vec::with_capacity(jobs.len());
        let mut jobs = jobs.into_iter().peekable();
        while jobs.peek().is_some() {
            let chunk: Vec<NewJob> = jobs.by_ref().take(FIRE_BATCH).collect();
            for outcome in self.enqueue_many(chunk).await? {
                match outcome? {
                    Inserted::Conflict(job) => {
                        // The tick's key names a job made from another
                        // definition (the schedule was changed since), or
                        // taken otherwise: that job stands for the tick.
                        tracing::warn!(event = "schedule_tick_taken", schedule = %row.name,
                            job.id = %job.id, "a job already holds this tick's key; not making another");
                        made.push(job);
                    }
                    other => made.push(other.job().clone()),
                }
            }
        }
        let skipped = due.len() - fire.len();
        if skipped > 0 {
            tracing::warn!(event = "schedule_ticks_missed", schedule = %row.name, skipped,
                fired = fire.len(), policy = missed.as_str(),
                "schedule {}: {skipped} missed tick(s) not fired ({} policy)", row.name, missed.as_str());
        }
        for job in &made {
            tracing::info!(event = "schedule_fired", schedule = %row.name, job.id = %job.id,
                tick = ?job.schedule_tick, "schedule {} fired job {}", row.name, job.id);
        }
        if next.is_none() {
            tracing::error!(event = "schedule_ended", schedule = %row.name,
                "schedule {} has no tick after this one; it will not fire again", row.name);
        }
        let position = Position {
            last_tick: newest.wall,
            next,
        };
        self.store
            .advance_schedule(&row.name, row.updated_at, &position, !made.is_empty())
            .await?;
        Ok(made)
    }

    /// Stops a schedule that cannot fire (stored before a rule it breaks
    /// existed) from being picked up again: its next fire time is cleared,
    /// so it waits for a person to fix it (`PATCH`).
    pub async fn park_schedule(&self, row: &ScheduleRow) -> Result<(), StoreError> {
        let position = Position {
            last_tick: row.last_tick.unwrap_or_default(),
            next: None,
        };
        self.store
            .advance_schedule(&row.name, row.updated_at, &position, false)
            .await?;
        Ok(())
    }
}
