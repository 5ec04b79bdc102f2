//! The operator in the job mix: one queue (`pausable`) paused for a few
//! seconds in every ten-second cycle while jobs keep arriving, and another
//! (`limited`) under a concurrency and a rate limit, all through the API,
//! during every other fault. Afterwards: no attempt of a paused queue may
//! start more than a second after its pause was answered and before its
//! resume.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde_json::{Value, json};
use tokio::time::Instant;

/// The queue paused and resumed during the run.
pub const PAUSABLE: &str = "pausable";
/// The queue run under limits.
pub const LIMITED: &str = "limited";
/// Its limits.
pub const LIMITED_CONCURRENCY: i64 = 4;
pub const LIMITED_RATE: f64 = 20.0;
/// How long each pause lasts, and the cycle it repeats in.
const PAUSE_FOR: Duration = Duration::from_secs(3);
const CYCLE: Duration = Duration::from_secs(10);
/// The promise: a pause holds within this.
pub const PAUSE_TAKES_EFFECT: Duration = Duration::from_secs(1);

/// What the operator did and saw.
#[derive(Debug, Default)]
pub struct Findings {
    /// Each pause: when the API answered it (the queue's `updated_at`, on
    /// PostgreSQL's clock) and when its resume was first asked for.
    pub pauses: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    /// Answers 5xx other than 503.
    pub server_errors: Vec<String>,
}

/// Sends the request until it is answered 200 or `give_up` passes;
/// the answer's `updated_at`.
async fn send(
    request: impl Fn() -> reqwest::RequestBuilder,
    what: &str,
    give_up: Instant,
    findings: &mut Findings,
) -> Option<DateTime<Utc>> {
    while Instant::now() < give_up {
        match request().send().await {
            Ok(response) if response.status().is_success() => {
                let answer: Value = response.json().await.unwrap_or_default();
                if let Some(at) = answer["updated_at"].as_str().and_then(|at| at.parse().ok()) {
                    return Some(at);
                }
            }
            Ok(response) if response.status().is_server_error() => {
                if response.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    findings
                        .server_errors
                        .push(format!("{what}: {status}: {text}"));
                }
            }
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                findings
                    .server_errors
                    .push(format!("{what}: unexpected {status}: {text}"));
                return None;
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// Limits `limited`, then pauses and resumes `pausable` until `until`; it
/// is left resumed.
pub async fn run(api: String, until: Instant) -> Findings {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    let mut findings = Findings::default();
    let limits = json!({"concurrency_limit": LIMITED_CONCURRENCY, "rate_limit": LIMITED_RATE});
    let url = format!("{api}/queues/{LIMITED}");
    send(
        || http.patch(&url).json(&limits),
        "PATCH /queues/limited",
        until,
        &mut findings,
    )
    .await;
    let (pause, resume) = (
        format!("{api}/queues/{PAUSABLE}/pause"),
        format!("{api}/queues/{PAUSABLE}/resume"),
    );
    let mut next = Instant::now() + Duration::from_secs(2);
    while next + PAUSE_FOR < until {
        tokio::time::sleep_until(next).await;
        next += CYCLE;
        let Some(paused_at) = send(|| http.post(&pause), "pause", until, &mut findings).await
        else {
            continue;
        };
        tokio::time::sleep(PAUSE_FOR).await;
        // A queue left paused strands its jobs: keep asking well past the run.
        let give_up = Instant::now() + Duration::from_secs(120);
        // The pause ends for the audit when the resume is first asked for,
        // not when it is answered: an attempt whose reply was lost (the API
        // or PostgreSQL restarting) may have resumed the queue already,
        // and the answered retry carries a later `updated_at`. Same host,
        // so this clock and PostgreSQL's agree.
        let asked = Utc::now();
        if send(|| http.post(&resume), "resume", give_up, &mut findings)
            .await
            .is_some()
        {
            findings.pauses.push((paused_at, asked));
        }
    }
    findings
}

/// Attempts of `pausable` that started inside a pause (later than
/// [`PAUSE_TAKES_EFFECT`] after it), and the most attempts of `limited`
/// that overlapped, from the attempt history.
pub async fn audit(
    db: &DatabaseConnection,
    pauses: &[(DateTime<Utc>, DateTime<Utc>)],
) -> anyhow::Result<(Vec<String>, usize)> {
    let started = |queue: &str| {
        Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT a.job_id, a.started_at, a.ended_at FROM job_attempts a \
             JOIN jobs j ON j.id = a.job_id WHERE j.queue = $1 \
             UNION ALL SELECT id, started_at, now() FROM jobs \
             WHERE queue = $1 AND status = 'running'",
            [queue.into()],
        )
    };
    let mut violations = Vec::new();
    for row in db.query_all_raw(started(PAUSABLE)).await? {
        let id: uuid::Uuid = row.try_get("", "job_id")?;
        let at: DateTime<Utc> = row.try_get("", "started_at")?;
        let grace = chrono::Duration::from_std(PAUSE_TAKES_EFFECT)?;
        for (paused, resumed) in pauses {
            if at > *paused + grace && at < *resumed {
                violations.push(format!(
                    "job {id} of paused queue {PAUSABLE} started at {at}, inside the pause {paused} .. {resumed}"
                ));
            }
        }
    }
    let mut edges: Vec<(DateTime<Utc>, i32)> = Vec::new();
    for row in db.query_all_raw(started(LIMITED)).await? {
        let from: DateTime<Utc> = row.try_get("", "started_at")?;
        let to: DateTime<Utc> = row.try_get("", "ended_at")?;
        edges.push((from, 1));
        edges.push((to, -1));
    }
    // An end sorts before a start at the same instant.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    Ok((violations, most.max(0) as usize))
}
