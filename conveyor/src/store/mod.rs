//! The job store: the only code that writes job rows.
//!
//! Every state-machine transition is one conditional statement,
//! `UPDATE jobs SET ... WHERE id = $1 AND status IN (...) [AND fence]
//! RETURNING *`, so two actors racing for one job can never both win, and a
//! transition that finds the row in another state changes nothing and says so
//! ([`Transition::Lost`]). Writes a worker makes about its running attempt are
//! fenced by [`Fence`]: they also require the token its claim wrote, so a
//! worker that lost its lease cannot overwrite the outcome of the attempt
//! that replaced it. A write whose reply was lost is settled by reading the
//! row: the token says whether the write was ours.
//!
//! # Layout
//! - `insert`: idempotent inserts keyed by idempotency key and fingerprint.
//! - `announce`: the outbox of jobs enqueued inside a caller's transaction, and its `NOTIFY`.
//! - `transitions`: every edge of the state machine.
//! - `read`: lookups by id, lists and counts.
//! - `queues`: queue settings (paused, limits, retention).
//! - `attempts`: attempt history.
//! - `bulk`: retry and cancel of every job matching a filter.
//! - `retention`: deleting finished jobs past their retention.
//! - `schedules`: periodic schedules.

mod announce;
mod attempts;
mod bulk;
mod insert;
mod queues;
mod read;
mod retention;
mod schedules;
mod transitions;

use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr, RuntimeErr};

pub(crate) use announce::announce;
pub use announce::{AnnouncedJob, COMMITTED_CHANNEL};
pub use attempts::{AttemptRecord, MAX_ATTEMPTS_LISTED, RunningAttempt};
pub use bulk::MAX_BULK;
pub use insert::Inserted;
pub(crate) use insert::insert_many_on;
pub use queues::{Change, MAX_LIMIT, MAX_RETENTION_SECS, MIN_RATE, QueueChange, QueueSettings};
pub use read::{
    COUNT_BUDGET, COUNT_EXACT_UP_TO, EXACT_COUNT_LIMIT, InvalidCursor, JobCounts, ListCursor,
    ListFilter, MatchCount, SAMPLE_ROWS, StatusCount,
};
pub use retention::QueueScope;
pub use schedules::{Position, ScheduleRow, ScheduleSpec};
pub use transitions::{LEASE_EXPIRED_ERROR, LeaseExpiry, LeaseRenewal, STUCK_ERROR, StuckAction};

use crate::job::{ClaimToken, InvalidJob, Job, JobId, WorkerId};

/// How long to wait for a connection before calling the database unavailable.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How a [`Store`] connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most connections open at once.
    pub max_connections: u32,
    /// How long a statement waits for a connection (or to open one) before
    /// the database is called unavailable.
    pub acquire_timeout: Duration,
    /// PostgreSQL's `statement_timeout` on every connection: a statement
    /// running longer is canceled ([`StoreError::is_timed_out`]).
    pub statement_timeout: Option<Duration>,
    /// PostgreSQL's `lock_timeout` on every connection: a statement that
    /// waits longer for a lock is canceled
    /// ([`StoreError::is_lock_unavailable`]).
    pub lock_timeout: Option<Duration>,
}

impl PoolSettings {
    /// `max_connections`, [`DEFAULT_ACQUIRE_TIMEOUT`], no statement timeout.
    pub fn new(max_connections: u32) -> Self {
        PoolSettings {
            max_connections,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            statement_timeout: None,
            lock_timeout: None,
        }
    }
}

/// The job store over a pool of PostgreSQL connections. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
}

impl Store {
    /// Wraps an existing sea-orm connection.
    pub fn new(db: DatabaseConnection) -> Self {
        Store { db }
    }

    /// Opens a pool of at most `max_connections` to `database_url`. The pool
    /// connects lazily, so a process can start while PostgreSQL is down and
    /// report it as unavailable instead of exiting.
    pub async fn connect(database_url: &str, max_connections: u32) -> Result<Self, StoreError> {
        Self::connect_with(database_url, &PoolSettings::new(max_connections)).await
    }

    /// [`Store::connect`] with every pool setting chosen.
    pub async fn connect_with(
        database_url: &str,
        settings: &PoolSettings,
    ) -> Result<Self, StoreError> {
        let mut options = ConnectOptions::new(database_url.to_owned());
        options
            .max_connections(settings.max_connections)
            .min_connections(0)
            .acquire_timeout(settings.acquire_timeout)
            .connect_timeout(settings.acquire_timeout)
            .connect_lazy(true)
            .sqlx_logging(false);
        if let Some(timeout) = settings.statement_timeout {
            options.statement_timeout(timeout);
        }
        if let Some(timeout) = settings.lock_timeout {
            let ms = timeout.as_millis().to_string();
            options.map_sqlx_postgres_opts(move |pg| pg.options([("lock_timeout", ms.as_str())]));
        }
        Ok(Store::new(Database::connect(options).await?))
    }

    /// The underlying connection, for queries the store does not own.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Answers when PostgreSQL accepts a query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        Ok(self.db.ping().await?)
    }
}

/// The outcome of one guarded transition.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// The row was in an allowed state; here it is after the change.
    Won(Job),
    /// The row was in another state (or the fence did not match); nothing
    /// changed. Here it is as found.
    Lost(Job),
    /// No job has that id.
    NotFound,
}

impl Transition {
    pub fn is_won(&self) -> bool {
        matches!(self, Transition::Won(_))
    }

    /// The row after a win, or as found after a loss.
    pub fn job(&self) -> Option<&Job> {
        match self {
            Transition::Won(job) | Transition::Lost(job) => Some(job),
            Transition::NotFound => None,
        }
    }

    /// The row, if this transition won.
    pub fn won(self) -> Option<Job> {
        match self {
            Transition::Won(job) => Some(job),
            Transition::Lost(_) | Transition::NotFound => None,
        }
    }
}

/// What a worker must still hold to write about its attempt: the claim
/// whose token is on the row, made by this worker. (The token alone decides
/// among claims made by current code; the worker id also refuses rows that
/// a worker of an older version claimed without writing a token.)
/// `attempt` says which attempt it is, for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub job_id: JobId,
    pub token: ClaimToken,
    pub worker_id: WorkerId,
    pub attempt: i32,
    /// Whether a write that matched no row, and finds the attempt already
    /// ended with this token on it, counts as this write made with its
    /// reply lost (`Won`). True for a worker, the only writer of its own
    /// attempt's outcome, repeating its write. False where the server also
    /// ends attempts and reports may race (the worker protocol): there a
    /// write is `Won` only if it changed the row itself, and anything else
    /// is `Lost`, for the caller to read.
    pub settles: bool,
}

impl Fence {
    /// The fence of the attempt a won claim started (the row it returned).
    pub fn of(job: &Job, worker_id: &WorkerId) -> Self {
        Fence {
            job_id: JobId::from(job.id),
            token: ClaimToken::of(job),
            worker_id: worker_id.clone(),
            attempt: job.attempts,
            settles: true,
        }
    }
}

/// Why the store could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The job breaks a limit; nothing was written.
    #[error("invalid job: {0}")]
    Invalid(#[from] InvalidJob),
    /// PostgreSQL refused or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] DbErr),
    /// A group-commit writer stopped before answering (its process is
    /// shutting down abruptly): the write may or may not have been made.
    #[error("the {0} writer stopped before answering; the write may or may not have been made")]
    Interrupted(&'static str),
    /// PostgreSQL could not be reached for a write made on behalf of several
    /// callers (a group commit's batch). `maybe_written`: the statement may
    /// have reached the server and committed before the connection failed.
    #[error("database unavailable: {detail}")]
    Unavailable { detail: String, maybe_written: bool },
}

impl StoreError {
    /// True when PostgreSQL could not be reached (as opposed to refusing a
    /// statement): callers answer 503 or back off and try again.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Invalid(_) | StoreError::Interrupted(_) => false,
            StoreError::Unavailable { .. } => true,
            StoreError::Database(err) => is_connection_error(err),
        }
    }

    /// True when the statement may have committed although no answer came
    /// back: the connection failed after the statement was sent (or the
    /// writer stopped). False when it certainly was not made: PostgreSQL
    /// refused it, or no connection could be had to send it on.
    pub fn maybe_written(&self) -> bool {
        match self {
            StoreError::Invalid(_) => false,
            StoreError::Interrupted(_) => true,
            StoreError::Unavailable { maybe_written, .. } => *maybe_written,
            StoreError::Database(err) => {
                matches!(err, DbErr::Exec(_) | DbErr::Query(_)) && is_connection_error(err)
            }
        }
    }

    /// True when PostgreSQL refused a value it can never store (SQLSTATE
    /// class 22, data exception: a NUL character in text or JSON, a number
    /// out of range): writing it again would fail the same way.
    pub fn is_unstorable_value(&self) -> bool {
        self.sqlstate().is_some_and(|code| code.starts_with("22"))
    }

    /// True when PostgreSQL refused a row for what it holds (SQLSTATE
    /// class 22, data exception, or 23, integrity constraint violation):
    /// the same row would be refused again, and the rows beside it in a
    /// batch would not.
    pub fn is_refused_row(&self) -> bool {
        self.is_unstorable_value() || self.sqlstate().is_some_and(|code| code.starts_with("23"))
    }

    /// True when PostgreSQL refused the statement for the moment, not for
    /// what it holds: a deadlock or serialization failure (SQLSTATE class
    /// 40), too few resources (class 53: connections, memory, disk), a lock
    /// it would not wait for (55P03). Trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        self.sqlstate()
            .is_some_and(|code| code.starts_with("40") || code.starts_with("53") || code == "55P03")
    }

    /// True when PostgreSQL canceled the statement for waiting past its
    /// `lock_timeout` for a row another transaction holds (SQLSTATE 55P03).
    pub fn is_lock_unavailable(&self) -> bool {
        self.sqlstate().is_some_and(|code| code == "55P03")
    }

    /// True when PostgreSQL canceled the statement for running past its
    /// `statement_timeout` (SQLSTATE 57014, query_canceled).
    pub fn is_timed_out(&self) -> bool {
        self.sqlstate().is_some_and(|code| code == "57014")
    }

    /// The SQLSTATE PostgreSQL answered with, when it refused a statement.
    fn sqlstate(&self) -> Option<String> {
        let StoreError::Database(
            DbErr::Exec(RuntimeErr::SqlxError(err)) | DbErr::Query(RuntimeErr::SqlxError(err)),
        ) = self
        else {
            return None;
        };
        match err.as_ref() {
            sea_orm::sqlx::Error::Database(db_err) => db_err.code().map(|code| code.into_owned()),
            _ => None,
        }
    }

    /// How a group commit answers each caller of a batch that failed
    /// because PostgreSQL could not be reached: trying each write alone
    /// would only wait for the same outage again.
    pub fn unavailable_for_each(&self) -> Self {
        StoreError::Unavailable {
            detail: self.to_string(),
            maybe_written: self.maybe_written(),
        }
    }
}

fn is_connection_error(err: &DbErr) -> bool {
    use sea_orm::sqlx;
    let runtime = match err {
        // Failing to open or acquire a connection means the database is not
        // usable, whatever the detail (refused, reset, a garbled handshake
        // from a proxy with no backend).
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return true,
        DbErr::Exec(runtime) | DbErr::Query(runtime) => runtime,
        _ => return false,
    };
    match runtime {
        RuntimeErr::SqlxError(sqlx_err) => match sqlx_err.as_ref() {
            sqlx::Error::Io(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_) => true,
            // 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now,
            // and class 08, connection exceptions.
            sqlx::Error::Database(db_err) => db_err
                .code()
                .is_some_and(|code| code.starts_with("08") || code.starts_with("57P0")),
            _ => false,
        },
        RuntimeErr::Internal(_) => false,
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// SQL for "`status` is one of `statuses`" in a statement that finds its
/// rows by primary key, phrased as `status <> ALL (every other status)`.
///
/// Written `status IN (...)`, the guard implies the predicate of a partial
/// index (`jobs_waiting_due_idx` holds the waiting jobs, keyed by `run_at`
/// and `id`), and while the table's statistics still describe it as it was
/// at the last analyse (a queue empty then, a backlog of 100,000 now) the
/// planner prefers walking that index, reading every waiting job, to the
/// primary-key probe: 10 ms a claim of one id, 3.9 s a claim of 64. No
/// index can answer `<> ALL`, so the primary key is the only way in, as
/// the statement means.
pub(crate) fn status_among(statuses: &[crate::JobStatus]) -> String {
    let others: Vec<&str> = crate::JobStatus::ALL
        .iter()
        .filter(|status| !statuses.contains(status))
        .map(|status| status.as_str())
        .collect();
    format!("status <> ALL ('{{{}}}')", others.join(","))
}

/// [`status_among`] the waiting statuses (`queued`, `retrying`): the guard
/// of every claim, built once.
pub(crate) static WAITING: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    status_among(&[crate::JobStatus::Queued, crate::JobStatus::Retrying])
});
