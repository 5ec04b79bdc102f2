//! Output: a table for people, one JSON document for scripts (`--json`).

use conveyor::Job;
use conveyor::client::QueueOverview;
use conveyor::store::{AttemptRecord, QueueSettings, RunningAttempt};
use serde_json::{Value, json};

fn at(time: Option<chrono::DateTime<chrono::Utc>>) -> String {
    time.map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| "-".to_owned())
}

pub fn job_json(job: &Job) -> Value {
    json!({
        "id": job.id,
        "queue": job.queue,
        "type": job.task_type,
        "status": job.status.as_str(),
        "priority": job.priority,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "payload": job.payload,
        "result": job.result,
        "error_message": job.error_message,
        "progress": job.progress,
        "idempotency_key": job.idempotency_key,
        "worker_id": job.worker_id,
        "cancel_requested": job.cancel_requested,
        "run_at": job.run_at,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "completed_at": job.completed_at,
        "failed_at": job.failed_at,
        "canceled_at": job.canceled_at,
    })
}

/// One line per job.
pub fn job_rows(jobs: &[Job]) -> String {
    let mut out = format!(
        "{:<36}  {:<9}  {:<16}  {:<20}  {:>8}  {}\n",
        "ID", "STATUS", "QUEUE", "TYPE", "ATTEMPTS", "CREATED"
    );
    for job in jobs {
        out.push_str(&format!(
            "{:<36}  {:<9}  {:<16}  {:<20}  {:>8}  {}\n",
            job.id,
            job.status.as_str(),
            job.queue,
            job.task_type,
            format!("{}/{}", job.attempts, job.max_attempts),
            at(Some(job.created_at)),
        ));
    }
    out
}

pub fn attempt_json(attempt: &AttemptRecord) -> Value {
    json!({
        "attempt": attempt.attempt,
        "worker_id": attempt.worker_id,
        "started_at": attempt.started_at,
        "ended_at": attempt.ended_at,
        "outcome": attempt.outcome,
        "error": attempt.error,
        "duration_ms": attempt.duration_ms(),
    })
}

/// A job's fields, then its attempts.
pub fn job_detail(job: &Job, attempts: &[AttemptRecord]) -> String {
    let mut out = String::new();
    let mut field = |name: &str, value: String| out.push_str(&format!("{name:<16} {value}\n"));
    field("id", job.id.to_string());
    field("status", job.status.as_str().to_owned());
    field("queue", job.queue.clone());
    field("type", job.task_type.clone());
    field("priority", job.priority.to_string());
    field("attempts", format!("{}/{}", job.attempts, job.max_attempts));
    field("run_at", at(Some(job.run_at)));
    field("created_at", at(Some(job.created_at)));
    field("started_at", at(job.started_at));
    field(
        "worker",
        job.worker_id.clone().unwrap_or_else(|| "-".to_owned()),
    );
    field("payload", job.payload.to_string());
    if let Some(progress) = &job.progress {
        field("progress", progress.to_string());
    }
    if let Some(result) = &job.result {
        field("result", result.to_string());
    }
    if let Some(error) = &job.error_message {
        field("error", error.clone());
    }
    out.push_str(&format!(
        "\n{:>7}  {:<11}  {:<24}  {:<24}  {:>10}  {}\n",
        "ATTEMPT", "OUTCOME", "STARTED", "WORKER", "MS", "ERROR"
    ));
    for attempt in attempts {
        out.push_str(&format!(
            "{:>7}  {:<11}  {:<24}  {:<24}  {:>10}  {}\n",
            attempt.attempt,
            attempt.outcome,
            at(Some(attempt.started_at)),
            attempt.worker_id.as_deref().unwrap_or("-"),
            attempt.duration_ms(),
            attempt.error.as_deref().unwrap_or(""),
        ));
    }
    if let Some(running) = RunningAttempt::of(job) {
        out.push_str(&format!(
            "{:>7}  {:<11}  {:<24}  {:<24}  {:>10}\n",
            running.attempt,
            "running",
            at(Some(running.started_at)),
            running.worker_id.as_deref().unwrap_or("-"),
            "-",
        ));
    }
    out
}

/// A job's attempts as JSON: the ended ones, then the running one.
pub fn attempts_json(job: &Job, attempts: &[AttemptRecord]) -> Value {
    let mut items: Vec<Value> = attempts.iter().map(attempt_json).collect();
    if let Some(running) = RunningAttempt::of(job) {
        items.push(json!({
            "attempt": running.attempt,
            "worker_id": running.worker_id,
            "started_at": running.started_at,
            "ended_at": null,
            "outcome": "running",
            "error": null,
            "duration_ms": null,
        }));
    }
    Value::Array(items)
}

pub fn settings_json(name: &str, settings: Option<&QueueSettings>) -> Value {
    match settings {
        Some(s) => json!({
            "name": s.name,
            "paused": s.paused,
            "concurrency_limit": s.concurrency_limit,
            "rate_limit": s.rate_limit,
            "rate_burst": s.rate_burst,
            "retain_completed_secs": s.retain_completed_secs,
            "retain_failed_secs": s.retain_failed_secs,
            "retain_canceled_secs": s.retain_canceled_secs,
            "updated_at": s.updated_at,
        }),
        None => json!({
            "name": name, "paused": false, "concurrency_limit": null, "rate_limit": null,
            "rate_burst": null, "retain_completed_secs": null, "retain_failed_secs": null,
            "retain_canceled_secs": null, "updated_at": null,
        }),
    }
}

/// A queue's settings, one per line.
pub fn settings_detail(settings: &QueueSettings) -> String {
    let show = |value: Option<String>| value.unwrap_or_else(|| "default".to_owned());
    let limit = |value: Option<String>| value.unwrap_or_else(|| "none".to_owned());
    format!(
        "queue             {}\npaused            {}\nconcurrency_limit {}\nrate_limit        {}\n\
         rate_burst        {}\nretain_completed  {}\nretain_failed     {}\nretain_canceled   {}\n",
        settings.name,
        settings.paused,
        limit(settings.concurrency_limit.map(|n| n.to_string())),
        limit(settings.rate_limit.map(|r| format!("{r}/s"))),
        show(settings.rate_burst.map(|n| n.to_string())),
        show(settings.retain_completed_secs.map(secs)),
        show(settings.retain_failed_secs.map(secs)),
        show(settings.retain_canceled_secs.map(secs)),
    )
}

fn secs(secs: i64) -> String {
    if secs == 0 {
        "forever".to_owned()
    } else {
        format!("{secs}s")
    }
}

pub fn queue_json(queue: &QueueOverview) -> Value {
    json!({
        "name": queue.name,
        "settings": settings_json(&queue.name, queue.settings.as_ref()),
        "ready": queue.depths.ready.iter().sum::<u64>(),
        "delayed": queue.depths.delayed,
        "in_flight": queue.depths.processing,
        "running": queue.running,
    })
}

pub fn queue_rows(queues: &[QueueOverview]) -> String {
    let mut out = format!(
        "{:<24}  {:<6}  {:>11}  {:>9}  {:>8}  {:>8}  {:>9}  {:>8}\n",
        "QUEUE", "PAUSED", "CONCURRENCY", "RATE/S", "READY", "DELAYED", "IN-FLIGHT", "RUNNING"
    );
    for queue in queues {
        let settings = queue.settings.as_ref();
        out.push_str(&format!(
            "{:<24}  {:<6}  {:>11}  {:>9}  {:>8}  {:>8}  {:>9}  {:>8}\n",
            queue.name,
            if settings.is_some_and(|s| s.paused) {
                "yes"
            } else {
                "no"
            },
            settings
                .and_then(|s| s.concurrency_limit)
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
            settings
                .and_then(|s| s.rate_limit)
                .map_or_else(|| "-".to_owned(), |r| r.to_string()),
            queue.depths.ready.iter().sum::<u64>(),
            queue.depths.delayed,
            queue.depths.processing,
            queue.running,
        ));
    }
    out
}
