//! A periodic schedule through every fault: one `noop` job a second,
//! created through the API at the start and paused at the end, with the
//! `all` missed-tick policy. Afterwards: exactly one job per tick, no tick
//! lost between the first and the last, and every one of them finished.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde_json::json;
use tokio::time::Instant;

/// The schedule's name.
pub const SCHEDULE: &str = "chaos-tick";

/// Sends the request until it is answered 2xx or `give_up` passes; 5xx
/// other than 503 are recorded.
async fn send(
    request: impl Fn() -> reqwest::RequestBuilder,
    what: &str,
    give_up: Instant,
    errors: &mut Vec<String>,
) -> bool {
    while Instant::now() < give_up {
        match request().send().await {
            Ok(response) if response.status().is_success() => return true,
            Ok(response)
                if response.status().is_server_error()
                    && response.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE =>
            {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                errors.push(format!("{what}: {status}: {text}"));
            }
            Ok(response) if response.status() == reqwest::StatusCode::CONFLICT => return true,
            Ok(response) if response.status().is_client_error() => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                errors.push(format!("{what}: unexpected {status}: {text}"));
                return false;
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Creates the schedule, waits for `until`, pauses it. Returns the 5xx
/// answers seen (other than 503).
pub async fn run(api: String, until: Instant) -> Vec<String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    let mut errors = Vec::new();
    let body = json!({
        "name": SCHEDULE,
        "cron": "* * * * * *",
        "job": {"type": "noop", "payload": {"from": SCHEDULE}},
        "missed": "all",
        "max_catch_up": 300,
    });
    let url = format!("{api}/schedules");
    send(
        || http.post(&url).json(&body),
        "POST /schedules",
        until,
        &mut errors,
    )
    .await;
    tokio::time::sleep_until(until).await;
    let pause = format!("{api}/schedules/{SCHEDULE}/pause");
    let give_up = Instant::now() + Duration::from_secs(60);
    send(
        || http.post(&pause),
        "pause the schedule",
        give_up,
        &mut errors,
    )
    .await;
    errors
}

/// What the schedule's jobs show: ticks with more than one job, ticks lost
/// between the first and the last, jobs not finished; and how many jobs.
pub async fn audit(db: &DatabaseConnection) -> anyhow::Result<(Vec<String>, usize)> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT schedule_tick, count(*) AS jobs, \
             count(*) FILTER (WHERE status NOT IN ('completed', 'failed', 'canceled')) AS open \
             FROM jobs WHERE schedule_name = $1 GROUP BY schedule_tick ORDER BY schedule_tick",
            [SCHEDULE.into()],
        ))
        .await?;
    let mut problems = Vec::new();
    let mut total = 0usize;
    let mut previous: Option<DateTime<Utc>> = None;
    for row in rows {
        let tick: DateTime<Utc> = row.try_get("", "schedule_tick")?;
        let jobs: i64 = row.try_get("", "jobs")?;
        let open: i64 = row.try_get("", "open")?;
        total += jobs as usize;
        if jobs > 1 {
            problems.push(format!("schedule tick {tick} made {jobs} jobs"));
        }
        if open > 0 {
            problems.push(format!("the job of schedule tick {tick} did not finish"));
        }
        if let Some(previous) = previous
            && tick - previous != chrono::Duration::seconds(1)
        {
            problems.push(format!("schedule ticks lost between {previous} and {tick}"));
        }
        previous = Some(tick);
    }
    Ok((problems, total))
}
