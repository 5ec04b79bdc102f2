//! The worker's metrics and lifecycle events match what happened.

use std::time::Duration;

use conveyor::JobStatus;
use serde_json::json;

use testkit::prometheus::{sample, sum};

use crate::support::{Harness, id, job};

async fn scrape() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(worker::observe::serve(listener, std::future::pending()));
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    server.abort();
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
    response
}

#[tokio::test(flavor = "current_thread")]
async fn outcomes_durations_and_events_are_counted_once_per_transition() {
    let logs = testkit::LogCapture::default();
    let _guard = logs.install();
    let h = Harness::new().await;
    let queue = format!("obs-{}", &h.redis.prefix[6..]);
    let mut settings = h.settings("obs");
    settings.queues = vec![queue.clone()];
    let worker = h.spawn(settings, worker::builtin_registry());
    let submit = |task_type: &str, payload: serde_json::Value, max_attempts: i32| {
        let mut new = job(task_type, payload);
        new.queue = queue.clone();
        new.max_attempts = max_attempts;
        h.submit(new)
    };
    let ok = submit("noop", json!({}), 4).await;
    let failed = submit("demo", json!({"fail": true}), 4).await;
    let retried = submit("demo", json!({"transient_fail": true}), 2).await;
    let canceled = submit("sleep", json!({"ms": 60_000}), 4).await;
    h.wait_for(id(&ok), JobStatus::Completed, Duration::from_secs(10))
        .await;
    h.wait_for(id(&failed), JobStatus::Failed, Duration::from_secs(10))
        .await;
    h.wait_for(id(&retried), JobStatus::Failed, Duration::from_secs(10))
        .await;
    h.wait_for(id(&canceled), JobStatus::Running, Duration::from_secs(10))
        .await;
    h.store
        .request_cancel(id(&canceled))
        .await
        .expect("request");
    h.broker.notify_cancel(id(&canceled)).await.expect("notify");
    h.wait_for(id(&canceled), JobStatus::Canceled, Duration::from_secs(5))
        .await;
    worker.stop().await;

    let text = scrape().await;
    let finished = |task_type: &str, outcome: &str| {
        sample(
            &text,
            "conveyor_jobs_finished_total",
            &[("queue", &queue), ("type", task_type), ("outcome", outcome)],
        )
    };
    assert_eq!(finished("noop", "completed"), Some(1.0));
    assert_eq!(
        finished("demo", "failed"),
        Some(2.0),
        "one permanent, one out of attempts"
    );
    assert_eq!(finished("demo", "retried"), Some(1.0));
    assert_eq!(finished("sleep", "canceled"), Some(1.0));
    let attempts = sample(
        &text,
        "conveyor_job_attempt_duration_seconds_count",
        &[("queue", &queue)],
    );
    assert!(attempts.is_some(), "{text}");
    let total_attempts: f64 = text
        .lines()
        .filter(|line| {
            line.starts_with("conveyor_job_attempt_duration_seconds_count") && line.contains(&queue)
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(
        total_attempts, 5.0,
        "noop 1 + fail 1 + transient 2 + sleep 1"
    );
    let waits = sum(
        &text,
        "conveyor_job_wait_seconds_count",
        &[("queue", &queue)],
    );
    assert_eq!(waits, 5.0);
    assert!(text.contains("conveyor_worker_jobs_running"));

    // Each lifecycle event once per transition, for each job.
    let log = logs.text();
    let events = |job: &conveyor::Job, event: &str| {
        log.lines()
            .filter(|line| {
                line.contains(&job.id.to_string())
                    && line.contains(&format!("\"event\":\"{event}\""))
            })
            .count()
    };
    assert_eq!(
        (events(&ok, "job_claimed"), events(&ok, "job_completed")),
        (1, 1)
    );
    assert_eq!(
        (
            events(&failed, "job_claimed"),
            events(&failed, "job_failed")
        ),
        (1, 1)
    );
    assert_eq!(events(&retried, "job_claimed"), 2);
    assert_eq!(events(&retried, "job_retry_scheduled"), 1);
    assert_eq!(events(&retried, "job_failed"), 1);
    assert_eq!(events(&canceled, "job_canceled"), 1);
    assert_eq!(log.matches("\"event\":\"worker_started\"").count(), 1);
    assert_eq!(log.matches("\"event\":\"worker_stopping\"").count(), 1);
    assert!(!log.contains("60000"), "payloads are never logged");
}

#[tokio::test(flavor = "current_thread")]
async fn every_completion_goes_through_the_group_commit_writer() {
    let h = Harness::new().await;
    let queue = format!("group-{}", &h.redis.prefix[6..]);
    let mut settings = h.settings("group");
    settings.queues = vec![queue.clone()];
    settings.concurrency = 50;
    let mut jobs = Vec::new();
    for _ in 0..200 {
        let mut new = job("noop", json!({}));
        new.queue = queue.clone();
        jobs.push(h.submit(new).await);
    }
    let worker = h.spawn(settings, worker::builtin_registry());
    let worker_id = worker.id.clone();
    for job in &jobs {
        h.wait_for(id(job), JobStatus::Completed, Duration::from_secs(20))
            .await;
    }
    worker.stop().await;

    let text = scrape().await;
    let writer = [("writer", "completions")];
    let written = sample(&text, "conveyor_group_commit_batch_size_sum", &writer);
    let statements = sample(&text, "conveyor_group_commit_batch_size_count", &writer);
    assert_eq!(written, Some(200.0), "{text}");
    let statements = statements.expect("a count");
    assert!((1.0..=200.0).contains(&statements), "{statements}");
    eprintln!("200 completions in {statements} statements");
    // Every id acknowledged, through the acknowledgement pipeline.
    let acks = [("writer", "acks")];
    assert_eq!(
        sample(&text, "conveyor_group_commit_batch_size_sum", &acks),
        Some(200.0),
        "{text}"
    );
    let processing = h.keys().processing(&queue, worker_id.as_str());
    let left: i64 = redis::Commands::llen(&mut h.redis_conn(), &processing).expect("llen");
    assert_eq!(left, 0, "no id left in the processing list");
}

/// The dashboard's throughput: every attempt a worker ends is counted once
/// in the current minute, by outcome, and handed to Redis by the
/// heartbeat (or at shutdown).
#[tokio::test]
async fn ended_attempts_are_tallied_for_the_dashboard() {
    let h = Harness::new().await;
    let worker = h.spawn(h.settings("tally"), worker::builtin_registry());
    let mut jobs = Vec::new();
    for _ in 0..3 {
        jobs.push(h.submit(job("noop", json!({}))).await);
    }
    jobs.push(h.submit(job("demo", json!({"fail": true}))).await);
    let mut flaky = job("demo", json!({"transient_fail": true}));
    flaky.max_attempts = 2;
    jobs.push(h.submit(flaky).await);
    for job in &jobs {
        let status = if job.task_type == "noop" {
            JobStatus::Completed
        } else {
            JobStatus::Failed
        };
        h.wait_for(id(job), status, Duration::from_secs(10)).await;
    }
    let expected = conveyor::broker::Tally {
        completed: 3,
        retried: 1,
        failed: 2,
    };
    let hour = || async {
        let mut hour = conveyor::broker::Tally::default();
        for minute in h.broker.recent_tally().await.expect("tally") {
            hour.add(&minute.tally);
        }
        hour
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while hour().await != expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "tallied {:?}, expected {expected:?}",
            hour().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.stop().await;
    assert_eq!(
        hour().await,
        expected,
        "counted once, not again at shutdown"
    );
    let minutes = h.broker.recent_tally().await.expect("tally");
    assert_eq!(minutes.len(), conveyor::broker::TALLY_MINUTES);
    assert!(
        minutes
            .windows(2)
            .all(|w| w[1].minute - w[0].minute == chrono::Duration::minutes(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_into_a_pipe_carry_no_colour_codes() {
    // A log collector reads a pipe; ANSI escapes would reach it as text.
    let h = Harness::new().await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_conveyor-worker"))
        .env("DATABASE_URL", &h.db.url)
        .env("REDIS_URL", &h.redis.url)
        .env("CONVEYOR_PREFIX", &h.redis.prefix)
        .env("RUST_LOG", "info")
        .env_remove("LOG_FORMAT")
        .env_remove("NO_COLOR")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start conveyor-worker");
    let stdout = child.stdout.take().expect("piped");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let started = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.expect("read") {
            if line.contains("worker_started") {
                return line;
            }
        }
        panic!("the worker's output ended before it started");
    })
    .await
    .expect("the worker logs worker_started within 20 s");
    assert!(started.contains(" INFO "), "text format: {started}");
    assert!(!started.contains('\u{1b}'), "no escape codes: {started:?}");
    let _ = child.kill().await;
}
