//! After the faults: what PostgreSQL and the workers' logs say happened,
//! checked against what the client saw.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
// The error the janitor records on a job whose every attempt was lost.
use conveyor::store::LEASE_EXPIRED_ERROR as LEASE_EXPIRED;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde_json::Value;
use uuid::Uuid;

use crate::client::{Kind, Submission};

/// Events that end an attempt as its worker writes it, and those of them
/// that end the job.
const WORKER_OUTCOMES: [&str; 4] = [
    "job_completed",
    "job_failed",
    "job_retry_scheduled",
    "job_canceled",
];
const TERMINAL: [&str; 3] = ["job_completed", "job_failed", "job_canceled"];

/// One worker process's life.
#[derive(Debug, Clone)]
pub struct WorkerLife {
    pub name: String,
    pub log: PathBuf,
    /// When it was killed or stopped, and how; `None` if it lived to the end.
    pub fault: Option<(DateTime<Utc>, &'static str)>,
}

/// A row of the jobs table.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: Uuid,
    pub key: Option<String>,
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When its latest attempt started.
    pub started_at: Option<DateTime<Utc>>,
}

pub async fn rows(db: &DatabaseConnection) -> anyhow::Result<Vec<Row>> {
    let found = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT id, idempotency_key, status, attempts, max_attempts, error_message, \
             created_at, started_at FROM jobs",
        ))
        .await?;
    found
        .into_iter()
        .map(|row| {
            Ok(Row {
                id: row.try_get("", "id")?,
                key: row.try_get("", "idempotency_key")?,
                status: row.try_get("", "status")?,
                attempts: row.try_get("", "attempts")?,
                max_attempts: row.try_get("", "max_attempts")?,
                error: row.try_get("", "error_message")?,
                created_at: row.try_get("", "created_at")?,
                started_at: row.try_get("", "started_at")?,
            })
        })
        .collect()
}

pub fn is_terminal(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "canceled")
}

/// One lifecycle event from a worker's JSON log.
#[derive(Debug, Clone)]
struct Event {
    at: DateTime<Utc>,
    name: String,
    job: Option<Uuid>,
    attempt: Option<i64>,
    /// The claim token of the attempt, where the event names it: attempts
    /// are told apart by it (a manual retry starts again from attempt 1).
    claim: Option<String>,
    /// Index of the worker life whose log holds it.
    life: usize,
}

fn parse(line: &str, life: usize) -> Option<Event> {
    let value: Value = serde_json::from_str(line).ok()?;
    let name = value["event"].as_str()?.to_owned();
    let field = |key: &str| {
        let direct = &value[key];
        if direct.is_null() {
            value["span"][key].clone()
        } else {
            direct.clone()
        }
    };
    Some(Event {
        at: value["timestamp"].as_str()?.parse().ok()?,
        name,
        job: field("job.id").as_str().and_then(|id| id.parse().ok()),
        attempt: field("job.attempt").as_i64(),
        claim: field("job.claim")
            .as_str()
            .filter(|claim| !claim.is_empty())
            .map(str::to_owned),
        life,
    })
}

/// Outcomes of an attempt, written by its worker or by a janitor that took
/// the attempt from a dead one. (A shutdown's release is not an outcome:
/// the attempt does not count and the job runs again.)
fn is_outcome(event: &Event) -> bool {
    // A janitor's lease expiry carries the attempt it ended.
    WORKER_OUTCOMES.contains(&event.name.as_str())
        || (event.name == "job_recovered" && event.attempt.is_some())
}

/// The table, and whether every invariant held.
#[derive(Debug, Default)]
pub struct Report {
    pub submitted: usize,
    pub accepted: usize,
    pub completed: usize,
    pub failed: usize,
    pub canceled: usize,
    pub lost: usize,
    pub stuck: usize,
    pub wrong_state: usize,
    pub rejected: usize,
    pub unanswered: usize,
    pub idempotency_broken: usize,
    pub written_twice: usize,
    pub fenced: usize,
    pub released: usize,
    pub over_attempts: usize,
    pub exhausted_by_faults: usize,
    pub duplicate_executions: usize,
    /// Submissions whose client hung up right after sending, and of those
    /// the ones the API took (a row holds their key).
    pub hung_up: usize,
    pub hung_up_taken: usize,
    /// How long the hung-up submissions the API took waited from their
    /// commit to their first start, sorted; and the commit time of the
    /// slowest, to find the fault it met.
    pub hung_up_starts: Vec<Duration>,
    pub slowest_hung_up: Option<DateTime<Utc>>,
    /// The worst, with the worker and the fault.
    pub worst_recovery: Option<(Duration, String)>,
    /// Workers that did not exit in time after SIGTERM (or a second one).
    pub slow_exits: usize,
    /// Spells after a Redis failover, with the old master stopped, in
    /// which fewer than a quarter as many jobs completed as arrived (on a
    /// cluster).
    pub redis_stalls: usize,
    /// Answers 5xx other than 503, to the client or the hostile prober.
    pub server_errors: usize,
    /// Payloads that did not read back as sent.
    pub read_back_mismatches: usize,
    /// Hostile inputs the API took (2xx) or answered otherwise than it
    /// documents.
    pub bad_input_mishandled: usize,
    /// Hostile probes sent, and slow connections the API closed on its own.
    pub hostile_probes: usize,
    pub slow_clients_closed: usize,
    /// Pauses the operator made, and attempts of the paused queue that
    /// started inside one (more than a second after it was answered).
    pub pauses: usize,
    pub started_while_paused: usize,
    /// The most attempts of the limited queue that overlapped (its
    /// concurrency limit is 4; a Redis that lost its data forgets the
    /// count until the heartbeats rebuild it, so this is a figure, not an
    /// invariant).
    pub limited_most_concurrent: usize,
    /// Jobs the every-second schedule made, and ticks with two jobs, ticks
    /// lost between the first and the last, or jobs of ticks not finished.
    pub scheduled_jobs: usize,
    pub schedule_violations: usize,
    /// Dashboard pages loaded whole (its failures count as server errors).
    pub dashboard_pages: usize,
    /// Deadlocks PostgreSQL detected in the run's database.
    pub deadlocks: usize,
    /// Jobs enqueued in transactions that rolled back, and of those, any
    /// stored anyway.
    pub rolled_back: usize,
    pub rolled_back_stored: usize,
    /// Announcements of transactional enqueues left in the outbox at the
    /// end.
    pub announcements_left: usize,
    /// Jobs and `job_listing` rows that disagree.
    pub unlisted: usize,
    /// Accepted jobs of the queue the Python workers serve over the worker
    /// protocol (their outcomes are in the API's logs, and checked as
    /// every other job's).
    pub remote: usize,
    pub problems: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.stuck == 0
            && self.wrong_state == 0
            && self.rejected == 0
            && self.idempotency_broken == 0
            && self.written_twice == 0
            && self.over_attempts == 0
            && self.slow_exits == 0
            && self.redis_stalls == 0
            && self.server_errors == 0
            && self.read_back_mismatches == 0
            && self.bad_input_mishandled == 0
            && self.started_while_paused == 0
            && self.schedule_violations == 0
            && self.deadlocks == 0
            && self.unlisted == 0
            && self.rolled_back_stored == 0
            && self.announcements_left == 0
    }

    pub fn print(&self) {
        let line = |name: &str, value: String, invariant: bool| {
            let mark = if invariant { "  (must be 0)" } else { "" };
            println!("  {name:<46} {value:>10}{mark}");
        };
        let n = |value: usize| value.to_string();
        println!("chaos results:");
        line("submitted", n(self.submitted), false);
        line("accepted", n(self.accepted), false);
        line(
            "  of them run by HTTP workers (Python)",
            n(self.remote),
            false,
        );
        line("  completed", n(self.completed), false);
        line("  failed", n(self.failed), false);
        line("  canceled", n(self.canceled), false);
        line("lost (accepted, not in PostgreSQL)", n(self.lost), true);
        line("stuck (not finished at the deadline)", n(self.stuck), true);
        line(
            "ended in the wrong state for its type",
            n(self.wrong_state),
            true,
        );
        line("rejected submissions (4xx)", n(self.rejected), true);
        line("never answered (client gave up)", n(self.unanswered), false);
        line(
            "idempotency broken (key -> other job)",
            n(self.idempotency_broken),
            true,
        );
        line("outcomes written twice", n(self.written_twice), true);
        line("attempts beyond max_attempts", n(self.over_attempts), true);
        line(
            "workers slow to exit after SIGTERM",
            n(self.slow_exits),
            true,
        );
        line("stalled after a Redis failover", n(self.redis_stalls), true);
        line(
            "server errors (5xx but 503; dashboard hangs)",
            n(self.server_errors),
            true,
        );
        line(
            "payloads not read back as sent",
            n(self.read_back_mismatches),
            true,
        );
        line(
            "hostile inputs taken or mishandled",
            n(self.bad_input_mishandled),
            true,
        );
        line(
            "attempts started inside a queue's pause",
            n(self.started_while_paused),
            true,
        );
        line("queue pauses (3 s each)", n(self.pauses), false);
        line(
            "schedule ticks doubled, lost or unfinished",
            n(self.schedule_violations),
            true,
        );
        line(
            "jobs of the every-second schedule",
            n(self.scheduled_jobs),
            false,
        );
        line("dashboard pages loaded", n(self.dashboard_pages), false);
        line("deadlocks in PostgreSQL", n(self.deadlocks), true);
        line(
            "jobs enqueued in rolled-back transactions",
            n(self.rolled_back),
            false,
        );
        line(
            "  of those, stored anyway",
            n(self.rolled_back_stored),
            true,
        );
        line(
            "announcements never published (outbox)",
            n(self.announcements_left),
            true,
        );
        line(
            "jobs and their listing rows disagreeing",
            n(self.unlisted),
            true,
        );
        line(
            "most running at once in the limited queue (4)",
            n(self.limited_most_concurrent),
            false,
        );
        line("hostile probes sent", n(self.hostile_probes), false);
        line(
            "  slow clients the API cut off",
            n(self.slow_clients_closed),
            false,
        );
        line(
            "fenced writes (stale workers refused)",
            n(self.fenced),
            false,
        );
        line("attempts put back at shutdown", n(self.released), false);
        line(
            "attempts exhausted by killed workers",
            n(self.exhausted_by_faults),
            false,
        );
        line("duplicate executions", n(self.duplicate_executions), false);
        line("clients that hung up after sending", n(self.hung_up), false);
        line(
            "  of which the API took (and must run)",
            n(self.hung_up_taken),
            false,
        );
        let quantile = |q: f64| {
            let starts = &self.hung_up_starts;
            if starts.is_empty() {
                return "-".to_owned();
            }
            let index = ((starts.len() - 1) as f64 * q).round() as usize;
            format!("{:.3} s", starts[index].as_secs_f64())
        };
        line("  commit-to-start of those, median", quantile(0.5), false);
        line("  commit-to-start of those, p90", quantile(0.9), false);
        line("  commit-to-start of those, worst", quantile(1.0), false);
        if let Some(at) = self.slowest_hung_up {
            println!(
                "  {:<46} {:>10}",
                "  (committed at)",
                at.format("%H:%M:%S%.3f")
            );
        }
        line(
            "worst time from a worker's death to re-run",
            self.worst_recovery
                .as_ref()
                .map(|(d, _)| format!("{:.1} s", d.as_secs_f64()))
                .unwrap_or_else(|| "-".to_owned()),
            false,
        );
        if let Some((_, after)) = &self.worst_recovery {
            println!("  {:<46} {after:>10}", "  (after)");
        }
        for problem in self.problems.iter().take(20) {
            println!("  ! {problem}");
        }
        if self.problems.len() > 20 {
            println!("  ! ... and {} more", self.problems.len() - 20);
        }
    }
}

pub fn check(submissions: &[Submission], rows: &[Row], lives: &[WorkerLife]) -> Report {
    let mut report = Report {
        submitted: submissions.len(),
        ..Report::default()
    };
    let mut events = Vec::new();
    for (index, life) in lives.iter().enumerate() {
        let text = std::fs::read_to_string(&life.log).unwrap_or_default();
        events.extend(text.lines().filter_map(|line| parse(line, index)));
    }
    events.sort_by_key(|event| event.at);
    let mut by_job: HashMap<Uuid, Vec<&Event>> = HashMap::new();
    for event in &events {
        if let Some(job) = event.job {
            by_job.entry(job).or_default().push(event);
        }
        match event.name.as_str() {
            "job_fenced" => report.fenced += 1,
            "job_released" => report.released += 1,
            _ => {}
        }
    }

    let by_key: HashMap<&str, Vec<&Row>> = rows.iter().fold(HashMap::new(), |mut map, row| {
        if let Some(key) = &row.key {
            map.entry(key.as_str()).or_default().push(row);
        }
        map
    });
    for submission in submissions {
        report.server_errors += submission.server_errors.len();
        report.problems.extend(
            submission
                .server_errors
                .iter()
                .map(|error| format!("{}: {error}", submission.key)),
        );
        if submission.read_back == Some(false) {
            report.read_back_mismatches += 1;
            report.problems.push(format!(
                "{}: the payload did not read back as sent",
                submission.key
            ));
        }
        if let Some(rejected) = &submission.rejected {
            report.rejected += 1;
            report
                .problems
                .push(format!("{} rejected: {rejected}", submission.key));
            continue;
        }
        let found = by_key
            .get(submission.key.as_str())
            .cloned()
            .unwrap_or_default();
        if submission.kind == Kind::RolledBack {
            report.rolled_back += 1;
            if !found.is_empty() {
                report.rolled_back_stored += 1;
                report.problems.push(format!(
                    "{}: its transaction rolled back, yet job {} is stored",
                    submission.key, found[0].id
                ));
            }
            continue;
        }
        if submission.hung_up {
            report.hung_up += 1;
        }
        // A client that hung up never heard; the table says if it was taken.
        let taken = submission
            .hung_up
            .then(|| found.first().map(|row| row.id))
            .flatten();
        let Some(id) = submission.accepted.or(taken) else {
            if !submission.hung_up {
                report.unanswered += 1;
            }
            continue;
        };
        report.accepted += 1;
        if submission.kind.is_remote() {
            report.remote += 1;
        }
        if submission.hung_up {
            report.hung_up_taken += 1;
            // Its first start, by the worker's log (the row keeps only the
            // latest, which a killed worker's rerun moves on).
            let first_start = by_job
                .get(&id)
                .and_then(|events| events.iter().find(|event| event.name == "job_claimed"))
                .map(|event| event.at);
            if let Some(row) = found.first()
                && let Some(started) = first_start.or(row.started_at)
            {
                let waited = (started - row.created_at).to_std().unwrap_or_default();
                if report
                    .hung_up_starts
                    .last()
                    .is_none_or(|worst| waited > *worst)
                {
                    report.slowest_hung_up = Some(row.created_at);
                }
                report.hung_up_starts.push(waited);
                report.hung_up_starts.sort();
            }
        }
        let Some(row) = found.first() else {
            report.lost += 1;
            report.problems.push(format!(
                "{} (job {id}) was accepted but is not stored",
                submission.key
            ));
            continue;
        };
        if found.len() != 1 || row.id != id {
            report.idempotency_broken += 1;
            report.problems.push(format!(
                "{}: the client was answered job {id}, the database holds {:?}",
                submission.key,
                found.iter().map(|row| row.id).collect::<Vec<_>>()
            ));
        }
        match row.status.as_str() {
            "completed" => report.completed += 1,
            "failed" => report.failed += 1,
            "canceled" => report.canceled += 1,
            _ => {}
        }
        if !is_terminal(&row.status) {
            report.stuck += 1;
            report.problems.push(format!(
                "{} (job {id}) is stuck in {}",
                submission.key, row.status
            ));
            continue;
        }
        if row.attempts > row.max_attempts {
            report.over_attempts += 1;
            report.problems.push(format!(
                "job {id}: {} attempts of {}",
                row.attempts, row.max_attempts
            ));
        }
        let job_events = by_job.get(&id).cloned().unwrap_or_default();
        let lost_an_attempt = job_events
            .iter()
            .any(|event| event.name == "job_recovered" && event.attempt.is_some());
        let exhausted = row.status == "failed"
            && row.error.as_deref() == Some(LEASE_EXPIRED)
            && row.attempts == row.max_attempts;
        let right = match submission.kind {
            Kind::Noop
            | Kind::Sleep
            | Kind::LongSleep
            | Kind::HangUp
            | Kind::RefuseOnce
            | Kind::EdgeFloats
            | Kind::Paused
            | Kind::Limited
            | Kind::InTransaction
            | Kind::RemoteEcho
            | Kind::RemoteSleep => row.status == "completed" || exhausted,
            Kind::RolledBack => false,
            Kind::RetryAfterLoss => {
                row.status == "completed"
                    || (row.status == "failed" && row.error.as_deref() == Some(LEASE_EXPIRED))
            }
            Kind::Fail | Kind::RemoteReject => {
                row.status == "failed" && (row.attempts == 1 || lost_an_attempt)
            }
            Kind::TransientFail | Kind::RemoteFlaky => {
                row.status == "failed" && row.attempts == row.max_attempts
            }
            Kind::CancelWaiting => row.status == "canceled",
            Kind::CancelRunning | Kind::RemoteCancel => {
                row.status == "canceled"
                    // A cancel that found it running asks its worker to stop;
                    // one that reached it only after it finished changes nothing.
                    || (row.status == "completed" && !submission.cancel_answers.contains(&200))
                    || exhausted
            }
        };
        if exhausted {
            report.exhausted_by_faults += 1;
        }
        if !right {
            report.wrong_state += 1;
            report.problems.push(format!(
                "{} ({:?}, job {id}) ended {} after {} attempt(s) (error {:?}, cancel answers {:?})",
                submission.key, submission.kind, row.status, row.attempts, row.error, submission.cancel_answers
            ));
        }

        // No attempt's outcome written twice, and at most one terminal
        // outcome per run (a manual retry starts a new run).
        let mut outcomes: HashMap<String, usize> = HashMap::new();
        let mut terminal = 0;
        for event in job_events.iter().filter(|event| is_outcome(event)) {
            let attempt = event
                .claim
                .clone()
                .unwrap_or_else(|| format!("attempt {}", event.attempt.unwrap_or(-1)));
            *outcomes.entry(attempt).or_default() += 1;
            if TERMINAL.contains(&event.name.as_str()) {
                terminal += 1;
            }
        }
        let retried_by_hand = submission.kind == Kind::RetryAfterLoss;
        let twice = outcomes.values().filter(|count| **count > 1).count()
            + usize::from(terminal > 1 && !retried_by_hand);
        if twice > 0 {
            report.written_twice += twice;
            report.problems.push(format!(
                "job {id}: an outcome was written twice: {outcomes:?}"
            ));
        }
        if row.status == "completed" {
            let runs = job_events
                .iter()
                .filter(|event| event.name == "job_claimed")
                .count();
            report.duplicate_executions += runs.saturating_sub(1);
        }
    }

    // A job retried by hand waits for the harness, not for recovery.
    let by_hand: HashSet<Uuid> = submissions
        .iter()
        .filter(|submission| submission.kind == Kind::RetryAfterLoss)
        .filter_map(|submission| submission.accepted)
        .collect();
    report.worst_recovery = worst_recovery(&events, lives, &by_hand);
    report
}

/// How many jobs the worker logging to `log` runs now, by its log.
pub fn running_in(log: &std::path::Path) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let events: Vec<Event> = text.lines().filter_map(|line| parse(line, 0)).collect();
    running_before(&events, 0, None).len()
}

/// Jobs the worker of life `index` claimed and wrote nothing about, by its
/// events up to `until`.
fn running_before(events: &[Event], index: usize, until: Option<DateTime<Utc>>) -> HashSet<Uuid> {
    let mut running = HashSet::new();
    for event in events
        .iter()
        .filter(|event| event.life == index && until.is_none_or(|until| event.at <= until))
    {
        let Some(job) = event.job else { continue };
        let name = event.name.as_str();
        if name == "job_claimed" {
            running.insert(job);
        } else if WORKER_OUTCOMES.contains(&name) || name == "job_released" || name == "job_fenced"
        {
            running.remove(&job);
        }
    }
    running
}

/// For each worker killed or stopped, each job it was running then: how
/// long until another worker claimed that job again. The worst of these.
fn worst_recovery(
    events: &[Event],
    lives: &[WorkerLife],
    ignored: &HashSet<Uuid>,
) -> Option<(Duration, String)> {
    let mut worst: Option<(Duration, String)> = None;
    for (index, life) in lives.iter().enumerate() {
        let Some((died, how)) = life.fault else {
            continue;
        };
        let running = running_before(events, index, Some(died));
        for job in running.into_iter().filter(|job| !ignored.contains(job)) {
            let again = events.iter().find(|event| {
                event.life != index
                    && event.at > died
                    && event.job == Some(job)
                    && event.name == "job_claimed"
            });
            if let Some(again) = again {
                let took = (again.at - died).to_std().unwrap_or_default();
                if worst.as_ref().is_none_or(|(worst, _)| took > *worst) {
                    worst = Some((took, format!("{how} {}", life.name)));
                }
            }
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(at: &str, event: &str, job: Uuid, attempt: i64) -> String {
        serde_json::json!({
            "timestamp": at, "event": event,
            "span": {"job.id": job.to_string(), "job.attempt": attempt},
        })
        .to_string()
    }

    fn life(name: &str, lines: &[String], fault: Option<&str>) -> WorkerLife {
        let log = std::env::temp_dir().join(format!("chaos-check-{}-{name}.log", Uuid::new_v4()));
        std::fs::write(&log, lines.join("\n")).expect("write log");
        WorkerLife {
            name: name.to_owned(),
            log,
            fault: fault.map(|at| (at.parse().expect("time"), "SIGKILL")),
        }
    }

    fn remove(lives: &[WorkerLife]) {
        for life in lives {
            let _ = std::fs::remove_file(&life.log);
        }
    }

    fn submission(n: u32, kind: Kind, id: Uuid) -> Submission {
        Submission {
            key: format!("chaos-{n}"),
            kind,
            accepted: Some(id),
            rejected: None,
            tries: 1,
            cancel_answers: Vec::new(),
            hung_up: false,
            server_errors: Vec::new(),
            read_back: None,
        }
    }

    fn claimed_line(at: &str, event: &str, job: Uuid, attempt: i64, claim: &str) -> String {
        serde_json::json!({
            "timestamp": at, "event": event,
            "span": {"job.id": job.to_string(), "job.attempt": attempt, "job.claim": claim},
        })
        .to_string()
    }

    fn row(n: u32, id: Uuid, status: &str, attempts: i32) -> Row {
        Row {
            id,
            key: Some(format!("chaos-{n}")),
            status: status.to_owned(),
            attempts,
            max_attempts: 5,
            error: None,
            created_at: "2026-01-01T00:00:00Z".parse().expect("time"),
            started_at: Some("2026-01-01T00:00:01Z".parse().expect("time")),
        }
    }

    #[test]
    fn attempts_are_told_apart_by_claim_so_a_manual_retry_is_not_a_double_write() {
        let job = Uuid::new_v4();
        // Attempt 1 lost its lease; the job was retried by hand and ran as
        // attempt 1 again, under another claim.
        let worker = life(
            "w0",
            &[
                claimed_line("2026-01-01T00:00:00Z", "job_claimed", job, 1, "c1"),
                claimed_line("2026-01-01T00:00:04Z", "job_recovered", job, 1, "c1"),
                claimed_line("2026-01-01T00:00:06Z", "job_claimed", job, 1, "c2"),
                claimed_line("2026-01-01T00:00:07Z", "job_completed", job, 1, "c2"),
            ],
            None,
        );
        let mut row = row(1, job, "completed", 1);
        row.max_attempts = 1;
        let report = check(
            &[submission(1, Kind::RetryAfterLoss, job)],
            &[row.clone()],
            std::slice::from_ref(&worker),
        );
        assert!(report.passed(), "{report:?}");
        // The same claim written twice is caught.
        let twice = life(
            "w1",
            &[
                claimed_line("2026-01-01T00:00:00Z", "job_claimed", job, 1, "c1"),
                claimed_line("2026-01-01T00:00:04Z", "job_recovered", job, 1, "c1"),
                claimed_line("2026-01-01T00:00:05Z", "job_completed", job, 1, "c1"),
            ],
            None,
        );
        let report = check(
            &[submission(1, Kind::RetryAfterLoss, job)],
            &[row],
            std::slice::from_ref(&twice),
        );
        remove(&[worker, twice]);
        assert_eq!(report.written_twice, 1, "{report:?}");
    }

    #[test]
    fn a_hung_up_submission_counts_when_the_api_took_it() {
        let (taken, stuck) = (Uuid::new_v4(), Uuid::new_v4());
        let hung_up = |n: u32| Submission {
            accepted: None,
            kind: Kind::HangUp,
            hung_up: true,
            ..submission(n, Kind::HangUp, taken)
        };
        let mut never_started = row(2, stuck, "queued", 0);
        never_started.started_at = None;
        let rows = [row(1, taken, "completed", 1), never_started];
        let report = check(&[hung_up(1), hung_up(2), hung_up(3)], &rows, &[]);
        assert_eq!((report.hung_up, report.hung_up_taken), (3, 2));
        assert_eq!(report.stuck, 1, "a job the API took must run: {report:?}");
        assert_eq!(report.unanswered, 0, "not taken is not a failure");
        assert_eq!(report.hung_up_starts, [Duration::from_secs(1)]);
    }

    #[test]
    fn a_clean_history_passes_and_recovery_is_measured() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let dead = life(
            "w0",
            &[
                line("2026-01-01T00:00:00Z", "job_claimed", a, 1),
                line("2026-01-01T00:00:00Z", "job_claimed", b, 1),
                line("2026-01-01T00:00:01Z", "job_completed", b, 1),
            ],
            Some("2026-01-01T00:00:02Z"),
        );
        let alive = life(
            "w1",
            &[
                line("2026-01-01T00:00:03Z", "job_recovered", a, 1),
                line("2026-01-01T00:00:05Z", "job_claimed", a, 2),
                line("2026-01-01T00:00:06Z", "job_completed", a, 2),
            ],
            None,
        );
        let lives = [dead, alive];
        let report = check(
            &[submission(1, Kind::Noop, a), submission(2, Kind::Sleep, b)],
            &[row(1, a, "completed", 2), row(2, b, "completed", 1)],
            &lives,
        );
        remove(&lives);
        assert!(report.passed(), "{report:?}");
        assert_eq!((report.completed, report.duplicate_executions), (2, 1));
        assert_eq!(
            report.worst_recovery.map(|(took, _)| took),
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn every_broken_promise_is_counted_and_fails_the_run() {
        let (twice, lost, stuck, wrong) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let w0 = life(
            "w0",
            &[
                line("2026-01-01T00:00:00Z", "job_claimed", twice, 1),
                line("2026-01-01T00:00:01Z", "job_completed", twice, 1),
            ],
            None,
        );
        let w1 = life(
            "w1",
            &[line("2026-01-01T00:00:02Z", "job_completed", twice, 1)],
            None,
        );
        let lives = [w0, w1];
        let report = check(
            &[
                submission(1, Kind::Noop, twice),
                submission(2, Kind::Noop, lost),
                submission(3, Kind::Noop, stuck),
                submission(4, Kind::Fail, wrong),
            ],
            &[
                row(1, twice, "completed", 1),
                row(3, stuck, "running", 1),
                row(4, wrong, "completed", 1),
            ],
            &lives,
        );
        remove(&lives);
        assert!(!report.passed());
        assert_eq!(
            (
                report.written_twice,
                report.lost,
                report.stuck,
                report.wrong_state
            ),
            (2, 1, 1, 1),
            "{report:?}"
        );
    }

    #[test]
    fn a_start_inside_a_pause_fails_the_run() {
        let report = Report {
            pauses: 3,
            started_while_paused: 1,
            ..Report::default()
        };
        assert!(!report.passed());
        let report = Report {
            pauses: 3,
            limited_most_concurrent: 9,
            ..Report::default()
        };
        assert!(
            report.passed(),
            "the limited queue's overlap is a figure, not an invariant"
        );
        let report = Report {
            scheduled_jobs: 59,
            schedule_violations: 1,
            ..Report::default()
        };
        assert!(
            !report.passed(),
            "a doubled, lost or unfinished tick fails the run"
        );
    }

    #[test]
    fn a_server_error_or_a_payload_read_back_changed_fails_the_run() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let lives = [life("w0", &[], None)];
        let report = check(
            &[
                Submission {
                    server_errors: vec!["POST /jobs: 500".to_owned()],
                    ..submission(1, Kind::Noop, a)
                },
                Submission {
                    read_back: Some(false),
                    ..submission(2, Kind::EdgeFloats, b)
                },
            ],
            &[row(1, a, "completed", 1), row(2, b, "completed", 1)],
            &lives,
        );
        remove(&lives);
        assert!(!report.passed());
        assert_eq!(
            (report.server_errors, report.read_back_mismatches),
            (1, 1),
            "{report:?}"
        );
    }

    #[test]
    fn a_job_of_a_rolled_back_transaction_that_is_stored_fails_the_run() {
        let (kept, gone) = (Uuid::new_v4(), Uuid::new_v4());
        let lives = [life("w0", &[], None)];
        let rolled_back = |n| Submission {
            accepted: None,
            ..submission(n, Kind::RolledBack, Uuid::nil())
        };
        let report = check(
            &[
                rolled_back(1),
                rolled_back(2),
                submission(3, Kind::InTransaction, gone),
            ],
            &[row(1, kept, "completed", 1), row(3, gone, "completed", 1)],
            &lives,
        );
        remove(&lives);
        assert_eq!(
            (report.rolled_back, report.rolled_back_stored),
            (2, 1),
            "{report:?}"
        );
        assert!(!report.passed());
        assert_eq!(report.completed, 1, "the committed one counts as any other");
    }
}
