//! Higher priorities first within a queue; earlier queues first.

use std::time::Duration;

use conveyor::JobStatus;
use serde_json::json;

use crate::support::{Calls, Harness, id, job, registry_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_worker_and_a_backlog_priorities_and_queue_order_hold() {
    let h = Harness::new().await;
    let calls = Calls::default();
    // Submitted in an order that is wrong on purpose.
    let plan = [
        ("low", 9),
        ("default", 0),
        ("default", 5),
        ("critical", 0),
        ("default", 9),
        ("critical", 7),
        ("default", 5),
        ("low", 0),
    ];
    let mut submitted = Vec::new();
    for (queue, priority) in plan {
        let mut new = job("counted", json!({}));
        new.queue = queue.to_owned();
        new.priority = priority;
        submitted.push((queue, priority, h.submit(new).await));
    }
    let mut settings = h.settings("solo");
    settings.concurrency = 1;
    settings.queues = vec!["critical".into(), "default".into(), "low".into()];
    let worker = h.spawn(settings, registry_with(&calls));
    for (_, _, job) in &submitted {
        h.wait_for(id(job), JobStatus::Completed, Duration::from_secs(10))
            .await;
    }
    worker.stop().await;

    let order: Vec<(&str, i16)> = calls
        .all()
        .iter()
        .map(|(job_id, _, _)| {
            let (queue, priority, _) = submitted
                .iter()
                .find(|(_, _, job)| id(job) == *job_id)
                .expect("known job");
            (*queue, *priority)
        })
        .collect();
    assert_eq!(
        order,
        [
            ("critical", 7),
            ("critical", 0),
            ("default", 9),
            ("default", 5),
            ("default", 5),
            ("default", 0),
            ("low", 9),
            ("low", 0),
        ]
    );
    // Within one lane, first in, first out.
    let fives: Vec<_> = submitted
        .iter()
        .filter(|(q, p, _)| *q == "default" && *p == 5)
        .map(|(_, _, j)| id(j))
        .collect();
    let ran: Vec<_> = calls
        .all()
        .iter()
        .map(|(j, _, _)| *j)
        .filter(|j| fives.contains(j))
        .collect();
    assert_eq!(ran, fives);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_picks_up_a_job_in_any_lane_promptly() {
    let h = Harness::new().await;
    let mut settings = h.settings("idle");
    settings.queues = vec!["default".into(), "other".into()];
    let worker = h.spawn(settings, worker::builtin_registry());
    // Let it go idle (blocked on the default lane), then submit elsewhere.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut elsewhere = job("noop", json!({}));
    elsewhere.queue = "other".into();
    elsewhere.priority = 3;
    let elsewhere = h.submit(elsewhere).await;
    let default_lane = h.submit(job("noop", json!({}))).await;
    h.wait_for(
        id(&default_lane),
        JobStatus::Completed,
        Duration::from_secs(5),
    )
    .await;
    h.wait_for(id(&elsewhere), JobStatus::Completed, Duration::from_secs(5))
        .await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_job_runs_when_due_and_not_before() {
    let h = Harness::new().await;
    let worker = h.spawn(h.settings("w"), worker::builtin_registry());
    let mut later = job("noop", json!({}));
    later.schedule = conveyor::Schedule::DelaySeconds(1);
    let later = h.submit(later).await;
    let done = h
        .wait_for(id(&later), JobStatus::Completed, Duration::from_secs(10))
        .await;
    assert!(
        done.started_at.expect("started") >= later.run_at,
        "ran before it was due"
    );
    worker.stop().await;
}
