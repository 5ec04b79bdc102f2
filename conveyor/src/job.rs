//! Jobs as the library sees them: identifiers, a new job's fields, their
//! validation, and the request fingerprint that idempotency keys compare.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A job row, exactly as stored.
pub type Job = entity::job::Model;

/// Queue used when a job names none.
pub const DEFAULT_QUEUE: &str = "default";
/// Task type used when a job names none.
pub const DEFAULT_TASK_TYPE: &str = "demo";
/// One try and three retries.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 4;
/// Per-attempt limit when a job names none.
pub const DEFAULT_TIMEOUT_SECONDS: i32 = 300;
/// Lowest and highest priority; higher runs first within a queue.
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i16> = 0..=9;
/// Allowed `max_attempts`.
pub const MAX_ATTEMPTS_RANGE: std::ops::RangeInclusive<i32> = 1..=100;
/// Allowed `timeout_seconds`: one second to one day.
pub const TIMEOUT_SECONDS_RANGE: std::ops::RangeInclusive<i32> = 1..=86_400;
/// Longest idempotency key, in characters.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;
/// Refuses what cannot be an idempotency key: empty, longer than
/// [`MAX_IDEMPOTENCY_KEY_CHARS`], or holding a control character.
pub fn check_idempotency_key(key: &str) -> Result<(), InvalidJob> {
    let chars = key.chars().count();
    if chars == 0 || chars > MAX_IDEMPOTENCY_KEY_CHARS {
        return Err(InvalidJob::new(
            "idempotency_key",
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters (got {chars})"),
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(InvalidJob::new(
            "idempotency_key",
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// Longest queue or task type name.
pub const MAX_NAME_CHARS: usize = 64;

/// Years a job may be scheduled in, in UTC: the range RFC 3339 can write.
/// Outside it (year 0, or an offset that carries 9999-12-31 into year
/// 10000) an instant cannot be written back as a timestamp clients parse.
pub const RUN_AT_YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

/// True for an instant PostgreSQL stores and writes back as sent: in years
/// [`RUN_AT_YEARS`] to the microsecond, not on a leap second. For filters
/// that take instants (`created_before`, ...), as `run_at` is checked.
pub fn is_writable_instant(at: chrono::DateTime<chrono::Utc>) -> bool {
    chrono::Timelike::nanosecond(&at) < 1_000_000_000
        && RUN_AT_YEARS.contains(&chrono::Datelike::year(
            &chrono::SubsecRound::trunc_subsecs(at, 6),
        ))
}

/// A job's identifier: a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(Uuid);

impl JobId {
    /// A new, time-ordered id.
    pub fn new() -> Self {
        JobId(Uuid::now_v7())
    }

    pub fn as_uuid(self) -> Uuid {
        self.0
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for JobId {
    fn from(uuid: Uuid) -> Self {
        JobId(uuid)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for JobId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(JobId)
    }
}

/// A claim's fencing token. The claimer makes one per claim it attempts,
/// the claim writes it to the row, and every later write about that attempt
/// must match it. Made by the claimer (not the database) so that a claim
/// whose reply was lost can be recognised as its own by reading the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClaimToken(Uuid);

impl ClaimToken {
    /// A token no claim has used.
    pub fn new() -> Self {
        ClaimToken(Uuid::new_v4())
    }

    /// The token a row carries; a row never claimed carries none, and its
    /// fence matches nothing.
    pub fn of(job: &Job) -> Self {
        ClaimToken(job.claim_token.unwrap_or(Uuid::nil()))
    }

    pub fn as_uuid(self) -> Uuid {
        self.0
    }

    /// True when `job` was last claimed with this token.
    pub fn is_on(self, job: &Job) -> bool {
        job.claim_token == Some(self.0)
    }
}

impl From<Uuid> for ClaimToken {
    fn from(uuid: Uuid) -> Self {
        ClaimToken(uuid)
    }
}

impl Default for ClaimToken {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ClaimToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What publishing a waiting job needs, and nothing more: the reconciler and
/// dead-worker recovery read this narrow row (never the payload), so their
/// memory does not depend on what jobs carry.
#[derive(Debug, Clone, PartialEq, Eq, sea_orm::FromQueryResult)]
pub struct WaitingJob {
    pub id: Uuid,
    pub queue: String,
    pub priority: i16,
    pub run_at: DateTime<Utc>,
    /// The row's last write, by PostgreSQL's clock: `run_at <= updated_at`
    /// says the job was due when last written.
    pub updated_at: DateTime<Utc>,
}

impl From<&Job> for WaitingJob {
    fn from(job: &Job) -> Self {
        WaitingJob {
            id: job.id,
            queue: job.queue.clone(),
            priority: job.priority,
            run_at: job.run_at,
            updated_at: job.updated_at,
        }
    }
}

impl WaitingJob {
    /// Due when last written, on PostgreSQL's clock.
    pub fn is_due(&self) -> bool {
        self.run_at <= self.updated_at
    }
}

/// Who holds a running attempt: unique per worker process and start.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkerId(String);

/// The prefix of the ids of remote workers (the worker protocol's): one
/// that calls itself `py-1` is `remote:py-1` in the registry and on its
/// jobs, so it can never take a `conveyor-worker`'s id (a host name holds
/// no `:`), and its processing lists are told apart.
pub const REMOTE_WORKER_PREFIX: &str = "remote:";

impl WorkerId {
    pub fn new(id: impl Into<String>) -> Self {
        WorkerId(id.into())
    }

    /// The id of the remote worker that calls itself `name`.
    pub fn remote(name: &str) -> Self {
        WorkerId(format!("{REMOTE_WORKER_PREFIX}{name}"))
    }

    /// Whether `id` is a remote worker's.
    pub fn is_remote(id: &str) -> bool {
        id.starts_with(REMOTE_WORKER_PREFIX)
    }

    /// `<host>-<pid>-<random>`: readable in logs, unique across restarts.
    pub fn generate(host: &str) -> Self {
        let suffix = Uuid::new_v4().simple().to_string();
        WorkerId(format!("{host}-{}-{}", std::process::id(), &suffix[..8]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// When a new job may first run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// As soon as a worker is free.
    #[default]
    Now,
    /// Not before this instant.
    At(DateTime<Utc>),
    /// Not before this many seconds from acceptance.
    DelaySeconds(u32),
}

/// A job to create. Construct with [`NewJob::new`] and adjust the fields;
/// [`crate::Store::insert`] validates it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// The id the row gets, chosen before the insert so that an insert
    /// whose reply was lost can be tried again and recognised. A clone is
    /// the same job: inserting it twice makes one row.
    pub id: JobId,
    pub queue: String,
    pub task_type: String,
    pub payload: serde_json::Value,
    pub priority: i16,
    pub max_attempts: i32,
    pub timeout_seconds: i32,
    pub schedule: Schedule,
    pub idempotency_key: Option<String>,
    /// The periodic schedule and tick this job is made for, if any.
    pub origin: Option<Origin>,
    /// The trace the job belongs to and the span that made it; without
    /// one, the job's trace is named by its id
    /// ([`TraceParent::for_job`](crate::trace::TraceParent::for_job)).
    /// Not part of the request's fingerprint: the same request retried
    /// from another trace is a replay.
    pub traceparent: Option<crate::trace::TraceParent>,
}

/// The periodic schedule and tick a job was made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub schedule: String,
    /// The instant the tick was due.
    pub tick: DateTime<Utc>,
}

impl NewJob {
    /// A job of `task_type` with `payload` and every other field defaulted.
    pub fn new(task_type: impl Into<String>, payload: serde_json::Value) -> Self {
        NewJob {
            id: JobId::new(),
            queue: DEFAULT_QUEUE.to_owned(),
            task_type: task_type.into(),
            payload,
            priority: 0,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            timeout_seconds: DEFAULT_TIMEOUT_SECONDS,
            schedule: Schedule::Now,
            idempotency_key: None,
            origin: None,
            traceparent: None,
        }
    }

    /// Checks every field against the limits the table enforces, so a bad job
    /// is refused with a message naming the field, not a constraint violation.
    pub fn validate(&self) -> Result<(), InvalidJob> {
        check_queue_name(&self.queue)?;
        check_task_type(&self.task_type)?;
        if !self.payload.is_object() {
            return Err(InvalidJob::new("payload", "must be a JSON object"));
        }
        if let Some(path) = nul_path(&self.payload) {
            return Err(InvalidJob::new(
                "payload",
                format!(
                    "payload{path} contains the NUL character (\\u0000), which cannot be stored"
                ),
            ));
        }
        if !PRIORITY_RANGE.contains(&self.priority) {
            return Err(InvalidJob::new(
                "priority",
                format!("must be between 0 and 9 (got {})", self.priority),
            ));
        }
        if !MAX_ATTEMPTS_RANGE.contains(&self.max_attempts) {
            return Err(InvalidJob::new(
                "max_attempts",
                format!("must be between 1 and 100 (got {})", self.max_attempts),
            ));
        }
        if !TIMEOUT_SECONDS_RANGE.contains(&self.timeout_seconds) {
            return Err(InvalidJob::new(
                "timeout_seconds",
                format!("must be between 1 and 86400 (got {})", self.timeout_seconds),
            ));
        }
        if let Some(key) = &self.idempotency_key {
            check_idempotency_key(key)?;
        }
        // A leap second (:60) is written back by PostgreSQL as the next
        // second, perhaps in the next year: not the instant sent.
        if let Schedule::At(run_at) = self.schedule
            && chrono::Timelike::nanosecond(&run_at) >= 1_000_000_000
        {
            return Err(InvalidJob::new(
                "run_at",
                format!("may not be a leap second (got {run_at:?})"),
            ));
        }
        // The year of the instant as stored: to the microsecond.
        if let Schedule::At(run_at) = self.schedule
            && !RUN_AT_YEARS.contains(&chrono::Datelike::year(
                &chrono::SubsecRound::trunc_subsecs(run_at, 6),
            ))
        {
            return Err(InvalidJob::new(
                "run_at",
                format!(
                    "must fall in years {} to {} in UTC (got {run_at:?})",
                    RUN_AT_YEARS.start(),
                    RUN_AT_YEARS.end()
                ),
            ));
        }
        Ok(())
    }

    /// A fingerprint of everything the client asked for, as a hex SHA-256.
    /// Two requests under one idempotency key are "the same" when their
    /// fingerprints match. The schedule is hashed as requested (a delay, not
    /// the instant it resolved to) so that a replay matches its original.
    pub fn fingerprint(&self) -> String {
        // serde_json's maps are sorted by key, so this rendering is canonical.
        let canonical = serde_json::json!({
            "queue": self.queue,
            "type": self.task_type,
            "payload": self.payload,
            "priority": self.priority,
            "max_attempts": self.max_attempts,
            "timeout_seconds": self.timeout_seconds,
            "schedule": self.schedule,
        });
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }
}

/// Checks that PostgreSQL's `jsonb` can hold `value` (no U+0000 in a
/// string or a key): a worker's result or progress report, say. The error
/// names `field`.
pub fn check_storable_json(
    field: &'static str,
    value: &serde_json::Value,
) -> Result<(), InvalidJob> {
    match nul_path(value) {
        None => Ok(()),
        Some(path) => Err(InvalidJob::new(
            field,
            format!("{field}{path} contains the NUL character (\\u0000), which cannot be stored"),
        )),
    }
}

/// Where in `value` a string or key holds U+0000 (PostgreSQL's `jsonb`
/// cannot store it), as a path below `value` (`.a[2]`); `None` when
/// nowhere. Allocates only on the way back from a find.
fn nul_path(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(text) => text.contains('\0').then(String::new),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(index, item)| nul_path(item).map(|below| format!("[{index}]{below}"))),
        serde_json::Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                Some(format!(".{key:?} (a key)"))
            } else {
                nul_path(item).map(|below| format!(".{key}{below}"))
            }
        }),
        _ => None,
    }
}

/// Longest name a remote worker may give itself.
pub const MAX_WORKER_NAME_CHARS: usize = 128;

/// A remote worker's name: 1 to 128 of `A-Z`, `a-z`, `0-9`, `.`, `_`,
/// `:`, `@`, `-` (it becomes part of Redis key names and log fields). The
/// error names the field `worker`.
pub fn check_worker_name(name: &str) -> Result<(), InvalidJob> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '-');
    if name.is_empty() || name.len() > MAX_WORKER_NAME_CHARS || !name.chars().all(allowed) {
        return Err(InvalidJob::new(
            "worker",
            format!(
                "worker must be 1 to {MAX_WORKER_NAME_CHARS} of A-Z, a-z, 0-9, '.', '_', ':', '@', '-' (got {name:?})"
            ),
        ));
    }
    Ok(())
}

/// A queue name: 1 to 64 of `a-z`, `0-9`, `_`, `-`. The error names the
/// field `queue`.
pub fn check_queue_name(queue: &str) -> Result<(), InvalidJob> {
    if is_valid_name(queue, |c| c == '_' || c == '-') {
        Ok(())
    } else {
        Err(InvalidJob::new(
            "queue",
            format!(
                "must be 1 to {MAX_NAME_CHARS} characters of a-z, 0-9, '_' or '-' (got {queue:?})"
            ),
        ))
    }
}

/// A task type: 1 to 64 of `a-z`, `0-9`, `_`, `.`, `:`, `-`. The error
/// names the field `type`.
pub fn check_task_type(task_type: &str) -> Result<(), InvalidJob> {
    if is_valid_name(task_type, |c| matches!(c, '_' | '.' | ':' | '-')) {
        Ok(())
    } else {
        Err(InvalidJob::new(
            "type",
            format!(
                "must be 1 to {MAX_NAME_CHARS} characters of a-z, 0-9, '_', '.', ':' or '-' (got {task_type:?})"
            ),
        ))
    }
}

fn is_valid_name(name: &str, extra: impl Fn(char) -> bool) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra(c))
}

/// A new job that breaks a limit; `field` is the name clients use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidJob {
    pub field: &'static str,
    pub message: String,
}

impl InvalidJob {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        InvalidJob {
            field,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(NewJob::new("demo", json!({})).validate(), Ok(()));
    }

    #[test]
    fn each_limit_names_its_field() {
        type Breaker = Box<dyn Fn(&mut NewJob)>;
        let cases: Vec<(&str, Breaker)> = vec![
            ("queue", Box::new(|j| j.queue = "Bad Queue".into())),
            ("queue", Box::new(|j| j.queue = "q".repeat(65))),
            ("type", Box::new(|j| j.task_type = String::new())),
            ("type", Box::new(|j| j.task_type = "has space".into())),
            ("payload", Box::new(|j| j.payload = json!([1, 2]))),
            ("priority", Box::new(|j| j.priority = 10)),
            ("priority", Box::new(|j| j.priority = -1)),
            ("max_attempts", Box::new(|j| j.max_attempts = 0)),
            ("max_attempts", Box::new(|j| j.max_attempts = 101)),
            ("timeout_seconds", Box::new(|j| j.timeout_seconds = 0)),
            (
                "idempotency_key",
                Box::new(|j| j.idempotency_key = Some(String::new())),
            ),
            (
                "idempotency_key",
                Box::new(|j| j.idempotency_key = Some("k".repeat(256))),
            ),
        ];
        for (field, break_it) in cases {
            let mut job = NewJob::new("demo", json!({}));
            break_it(&mut job);
            assert_eq!(job.validate().map_err(|e| e.field), Err(field));
        }
    }

    #[test]
    fn names_accept_their_documented_alphabets() {
        let mut job = NewJob::new("billing.invoice:send-v2_x", json!({}));
        job.queue = "critical_1-a".into();
        assert_eq!(job.validate(), Ok(()));
    }

    #[test]
    fn fingerprint_ignores_key_order_but_not_content() {
        let a = NewJob::new("demo", json!({"a": 1, "b": 2}));
        let b = NewJob::new("demo", json!({"b": 2, "a": 1}));
        let c = NewJob::new("demo", json!({"a": 1, "b": 3}));
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
        let mut delayed = a.clone();
        delayed.schedule = Schedule::DelaySeconds(5);
        assert_ne!(a.fingerprint(), delayed.fingerprint());
    }

    #[test]
    fn fingerprint_ignores_the_idempotency_key_itself() {
        let mut a = NewJob::new("demo", json!({}));
        let b = a.clone();
        a.idempotency_key = Some("k1".into());
        assert_eq!(a.fingerprint(), b.fingerprint());
    }
}
