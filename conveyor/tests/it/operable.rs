//! Operable queues at the store and broker level: the pause checked by the
//! claim, the attempt history the trigger writes, bulk actions, retention,
//! and the limit scripts.

use std::time::Duration;

use conveyor::broker::{Held, Limits};
use conveyor::store::{Change, ListFilter, QueueChange, QueueScope};
use conveyor::{Broker, ClaimToken, JobStatus, NewJob, Transition};
use serde_json::json;
use testkit::TestRedis;

use crate::support::*;

fn paused(paused: bool) -> QueueChange {
    QueueChange {
        paused: Some(paused),
        ..QueueChange::default()
    }
}

#[tokio::test]
async fn a_paused_queue_s_jobs_cannot_be_claimed_alone_or_in_a_batch() {
    let (db, store) = store().await;
    let one = job_in(&db, &store, State::Queued).await;
    let two = job_in(&db, &store, State::Queued).await;
    store
        .configure_queue("default", &paused(true))
        .await
        .expect("pause");
    assert!(
        matches!(claim(&store, &one, &owner()).await, Transition::Lost(job) if job.status == JobStatus::Queued)
    );
    let batch = [(id(&one), ClaimToken::new()), (id(&two), ClaimToken::new())];
    let won = store
        .claim_many(&batch, &owner(), Duration::from_secs(30))
        .await
        .expect("batch claim");
    assert!(won.is_empty(), "nothing claimed while paused: {won:?}");

    // Another queue is not affected; resuming lets them through.
    let mut other = NewJob::new("demo", json!({}));
    other.queue = "other".to_owned();
    let other = store.insert(&other).await.expect("insert").job().clone();
    claimed(&store, &other, &owner()).await;
    store
        .configure_queue("default", &paused(false))
        .await
        .expect("resume");
    claimed(&store, &one, &owner()).await;
}

#[tokio::test]
async fn settings_change_only_what_is_given_and_null_clears() {
    let (_db, store) = store().await;
    let set = QueueChange {
        concurrency_limit: Change::Set(3),
        rate_limit: Change::Set(2.5),
        retain_completed_secs: Change::Set(0),
        ..QueueChange::default()
    };
    let first = store
        .configure_queue("mail", &set)
        .await
        .expect("configure");
    assert_eq!(
        (
            first.paused,
            first.concurrency_limit,
            first.rate_limit,
            first.burst()
        ),
        (false, Some(3), Some(2.5), Some(3))
    );
    let second = store
        .configure_queue("mail", &paused(true))
        .await
        .expect("pause");
    assert_eq!((second.paused, second.concurrency_limit), (true, Some(3)));
    let cleared = store
        .configure_queue(
            "mail",
            &QueueChange {
                concurrency_limit: Change::Clear,
                ..QueueChange::default()
            },
        )
        .await
        .expect("clear");
    assert_eq!(
        (
            cleared.paused,
            cleared.concurrency_limit,
            cleared.rate_limit,
            cleared.retain_completed_secs
        ),
        (true, None, Some(2.5), Some(0))
    );
    let refused = store
        .configure_queue(
            "mail",
            &QueueChange {
                concurrency_limit: Change::Set(0),
                ..QueueChange::default()
            },
        )
        .await
        .expect_err("the table refuses a zero limit");
    assert!(refused.is_refused_row(), "{refused}");
}

#[tokio::test]
async fn every_ended_attempt_is_recorded_and_a_manual_retry_keeps_them() {
    let (db, store) = store().await;
    let me = owner();
    let job = job_in(&db, &store, State::Queued).await;
    db.execute(&format!(
        "UPDATE jobs SET max_attempts = 3 WHERE id = '{}'",
        job.id
    ))
    .await;

    // Attempt 1 fails and is retried; attempt 2 is interrupted by a
    // shutdown (it does not count); attempt 2 again loses its lease;
    // attempt 3 fails for good.
    let running = claimed(&store, &job, &me).await;
    let fence = conveyor::Fence::of(&running, &me);
    store
        .schedule_retry(&fence, "boom 1", Duration::ZERO)
        .await
        .expect("retry")
        .won()
        .expect("won");
    let running = claimed(&store, &job, &me).await;
    store
        .release(&conveyor::Fence::of(&running, &me))
        .await
        .expect("release")
        .won()
        .expect("won");
    claimed(&store, &job, &me).await;
    db.execute(&format!(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = '{}'",
        job.id
    ))
    .await;
    assert_eq!(store.expire_leases(10).await.expect("rescue").len(), 1);
    let running = claimed(&store, &job, &me).await;
    store
        .fail(&conveyor::Fence::of(&running, &me), "boom 3")
        .await
        .expect("fail")
        .won()
        .expect("won");

    let history = store.attempts(id(&job)).await.expect("history");
    let seen: Vec<(i32, &str, Option<&str>)> = history
        .iter()
        .map(|a| (a.attempt, a.outcome.as_str(), a.error.as_deref()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (1, "failed", Some("boom 1")),
            (2, "interrupted", None),
            (2, "lost", Some(conveyor::store::LEASE_EXPIRED_ERROR)),
            (3, "failed", Some("boom 3")),
        ]
    );
    assert!(
        history
            .iter()
            .all(|a| a.worker_id.as_deref() == Some(me.as_str()))
    );
    assert!(history.iter().all(|a| a.ended_at >= a.started_at));

    // A manual retry starts again from attempt 1 and keeps the history.
    store
        .requeue(id(&job))
        .await
        .expect("requeue")
        .won()
        .expect("won");
    let running = claimed(&store, &job, &me).await;
    assert_eq!(running.attempts, 1);
    store
        .complete(&conveyor::Fence::of(&running, &me), json!({"ok": true}))
        .await
        .expect("complete");
    let history = store.attempts(id(&job)).await.expect("history");
    assert_eq!(history.len(), 5);
    let last = history.last().expect("last");
    assert_eq!(
        (last.attempt, last.outcome.as_str(), last.error.as_deref()),
        (1, "completed", None)
    );
}

#[tokio::test]
async fn progress_is_written_by_the_heartbeat_and_cleared_by_the_next_claim() {
    let (db, store) = store().await;
    let job = job_in(&db, &store, State::Running).await;
    let report = json!({"done": 3, "of": 10});
    let renewed = store
        .heartbeat_reporting(
            &owner(),
            &[(id(&job), owner_token(), Some(report.clone()))],
            Duration::from_secs(30),
        )
        .await
        .expect("heartbeat");
    assert_eq!(renewed.len(), 1);
    assert_eq!(reload(&store, &job).await.progress, Some(report.clone()));
    // A beat without a report leaves it.
    store
        .heartbeat(
            &owner(),
            &[(id(&job), owner_token())],
            Duration::from_secs(30),
        )
        .await
        .expect("heartbeat");
    assert_eq!(reload(&store, &job).await.progress, Some(report));
    // A stale attempt's report is not written.
    store
        .heartbeat_reporting(
            &owner(),
            &[(id(&job), ClaimToken::new(), Some(json!("stale")))],
            Duration::from_secs(30),
        )
        .await
        .expect("heartbeat");
    assert_ne!(reload(&store, &job).await.progress, Some(json!("stale")));
    let fence = owner_fence(id(&job));
    store
        .schedule_retry(&fence, "again", Duration::ZERO)
        .await
        .expect("retry");
    let next = claimed(&store, &job, &owner()).await;
    assert_eq!(next.progress, None);
}

#[tokio::test]
async fn bulk_retry_and_cancel_change_only_matching_jobs_up_to_the_limit() {
    let (db, store) = store().await;
    let mut failed = Vec::new();
    for _ in 0..5 {
        failed.push(job_in(&db, &store, State::Failed).await);
    }
    let completed = job_in(&db, &store, State::Completed).await;
    let queued = job_in(&db, &store, State::Queued).await;
    let running = job_in(&db, &store, State::Running).await;

    let all = ListFilter::default();
    let retried = store.requeue_matching(&all, 3).await.expect("retry");
    assert_eq!(retried.len(), 3, "bounded by the limit");
    assert!(
        retried
            .iter()
            .all(|job| job.status == JobStatus::Queued && job.attempts == 0)
    );
    let retried = store.requeue_matching(&all, 100).await.expect("retry");
    assert_eq!(retried.len(), 2, "the rest; completed jobs are not retried");
    assert_eq!(
        reload(&store, &completed).await.status,
        JobStatus::Completed
    );

    // Created before the first failed job: nothing.
    let none = ListFilter {
        created_before: Some(failed[0].created_at),
        ..ListFilter::default()
    };
    assert!(
        store
            .cancel_waiting_matching(&none, 100)
            .await
            .expect("cancel")
            .is_empty()
    );

    let canceled = store
        .cancel_waiting_matching(&all, 100)
        .await
        .expect("cancel");
    assert_eq!(canceled.len(), 6, "the five requeued and the queued one");
    assert_eq!(reload(&store, &queued).await.status, JobStatus::Canceled);
    let asked = store.request_cancel_matching(&all, 100).await.expect("ask");
    assert_eq!(asked.len(), 1);
    assert!(reload(&store, &running).await.cancel_requested);
    assert!(
        store
            .request_cancel_matching(&all, 100)
            .await
            .expect("ask")
            .is_empty(),
        "asked once"
    );

    // A status the action cannot move matches nothing.
    let completed_only = ListFilter {
        status: Some(JobStatus::Completed),
        ..ListFilter::default()
    };
    assert!(
        store
            .requeue_matching(&completed_only, 100)
            .await
            .expect("retry")
            .is_empty()
    );
}

#[tokio::test]
async fn retention_deletes_old_finished_jobs_and_their_history_per_queue() {
    let (db, store) = store().await;
    let old = job_in(&db, &store, State::Completed).await;
    let fresh = job_in(&db, &store, State::Completed).await;
    let old_failed = job_in(&db, &store, State::Failed).await;
    let queued = job_in(&db, &store, State::Queued).await;
    db.execute(&format!(
        "UPDATE jobs SET created_at = now() - interval '2 hours', completed_at = now() - interval '1 hour', \
         failed_at = CASE WHEN failed_at IS NULL THEN NULL ELSE now() - interval '1 hour' END \
         WHERE id IN ('{}', '{}', '{}')",
        old.id, old_failed.id, queued.id
    ))
    .await;
    db.execute(&format!(
        "INSERT INTO job_attempts (job_id, attempt, worker_id, started_at, ended_at, outcome) \
         VALUES ('{}', 1, 'w', now(), now(), 'completed')",
        old.id
    ))
    .await;
    let everywhere = QueueScope::AllBut(Vec::new());
    let pruned = store
        .prune_finished(JobStatus::Completed, &everywhere, 60, 100)
        .await
        .expect("prune");
    assert_eq!(pruned, 1);
    assert!(store.find(id(&old)).await.expect("find").is_none());
    assert!(store.attempts(id(&old)).await.expect("history").is_empty());
    assert!(store.find(id(&fresh)).await.expect("find").is_some());
    assert!(
        store.find(id(&queued)).await.expect("find").is_some(),
        "waiting jobs are never pruned"
    );
    // 0 keeps forever; a queue with its own retention is left to it.
    assert_eq!(
        store
            .prune_finished(JobStatus::Failed, &everywhere, 0, 100)
            .await
            .expect("prune"),
        0
    );
    let others = QueueScope::AllBut(vec!["default".to_owned()]);
    assert_eq!(
        store
            .prune_finished(JobStatus::Failed, &others, 60, 100)
            .await
            .expect("prune"),
        0
    );
    let own = QueueScope::Only("default".to_owned());
    assert_eq!(
        store
            .prune_finished(JobStatus::Failed, &own, 60, 100)
            .await
            .expect("prune"),
        1
    );
}

fn limits(concurrency: Option<u32>, rate: Option<(f64, u32)>) -> Limits {
    Limits { concurrency, rate }
}

async fn push_ids(broker: &Broker, queue: &str, n: usize) {
    let mut conn = broker.connection().await.expect("conn");
    for i in 0..n {
        let _: i64 = redis::cmd("LPUSH")
            .arg(broker.keys().ready(queue, 0))
            .arg(format!("id-{i}"))
            .query_async(&mut conn)
            .await
            .expect("push");
    }
}

#[tokio::test]
async fn the_concurrency_limit_is_shared_by_every_taker_and_freed_by_acks() {
    let redis = TestRedis::new();
    let broker = broker_for(&redis, 2);
    push_ids(&broker, "q", 5).await;
    let mut conn = broker
        .blocking_connection(Duration::from_secs(1))
        .await
        .expect("conn");
    let gate = limits(Some(2), None);
    let lease = Duration::from_secs(30);
    let a = broker
        .sweep_limited(&mut conn, "q", "a", 10, &gate, lease)
        .await
        .expect("sweep");
    assert_eq!((a.ids.len(), a.held), (2, Held::Concurrency));
    let b = broker
        .sweep_limited(&mut conn, "q", "b", 10, &gate, lease)
        .await
        .expect("sweep");
    assert_eq!((b.ids.len(), b.held), (0, Held::Concurrency));
    assert_eq!(broker.held_count("q").await.expect("count"), 2);
    // A plain ack (a stale attempt's, a duplicate's) keeps the place: it
    // may belong to the attempt running elsewhere.
    broker.ack("q", "a", &a.ids[1]).await.expect("ack");
    assert_eq!(broker.held_count("q").await.expect("count"), 2);
    broker
        .ack_many("a", &[("q".to_owned(), a.ids[0].clone())])
        .await
        .expect("ack");
    let b = broker
        .sweep_limited(&mut conn, "q", "b", 10, &gate, lease)
        .await
        .expect("sweep");
    assert_eq!(b.ids.len(), 1, "one place freed");
    // A popped id over the limit goes back to the head of its lane.
    let popped = broker
        .wait_for_id(&mut conn, "q", 0, "c", Duration::from_millis(100))
        .await
        .expect("pop")
        .expect("an id");
    assert!(
        !broker
            .admit(&mut conn, "q", 0, "c", &popped, &gate, lease)
            .await
            .expect("admit")
    );
    let next = broker
        .wait_for_id(&mut conn, "q", 0, "c", Duration::from_millis(100))
        .await
        .expect("pop")
        .expect("an id");
    assert_eq!(next, popped, "put back where it was");
}

#[tokio::test]
async fn the_rate_limit_lets_a_burst_through_then_refills_at_the_rate() {
    let redis = TestRedis::new();
    let broker = broker_for(&redis, 2);
    push_ids(&broker, "q", 10).await;
    let mut conn = broker
        .blocking_connection(Duration::from_secs(1))
        .await
        .expect("conn");
    let gate = limits(None, Some((20.0, 3)));
    let lease = Duration::from_secs(30);
    // Timed from before the first sweep: a stall of this test after it
    // only adds to the time measured.
    let started = std::time::Instant::now();
    let first = broker
        .sweep_limited(&mut conn, "q", "a", 10, &gate, lease)
        .await
        .expect("sweep");
    assert_eq!((first.ids.len(), first.held), (3, Held::Rate), "the burst");
    let mut taken = 3;
    while taken < 10 && started.elapsed() < Duration::from_secs(10) {
        let swept = broker
            .sweep_limited(&mut conn, "q", "a", 10, &gate, lease)
            .await
            .expect("sweep");
        taken += swept.ids.len();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(taken, 10);
    // Seven more at 20 per second take at least 300 ms (less a token's
    // worth for the one that may be nearly full when the burst ends).
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

/// Queue latency from the heads of the ready lanes: only ids whose jobs
/// still wait and are due count, by PostgreSQL's clock; other text is
/// ignored.
#[tokio::test]
async fn the_longest_due_counts_only_waiting_due_jobs() {
    let (db, store) = store().await;
    let due = job_in(&db, &store, State::Queued).await;
    let retrying = job_in(&db, &store, State::Retrying).await;
    let later = job_in(&db, &store, State::Queued).await;
    let canceled = job_in(&db, &store, State::Canceled).await;
    db.execute(&format!(
        "UPDATE jobs SET run_at = now() - interval '90 seconds' WHERE id = '{}'",
        due.id
    ))
    .await;
    db.execute(&format!(
        "UPDATE jobs SET run_at = now() + interval '1 hour', queue = 'later' WHERE id = '{}'",
        later.id
    ))
    .await;
    db.execute(&format!(
        "UPDATE jobs SET run_at = now() - interval '1 day', queue = 'gone' WHERE id = '{}'",
        canceled.id
    ))
    .await;
    let ids: Vec<String> = [&due, &retrying, &later, &canceled]
        .iter()
        .map(|job| job.id.to_string())
        .chain(["not-an-id".to_owned()])
        .collect();
    let longest = store.longest_due(&ids).await.expect("longest due");
    let queues: Vec<&str> = longest.keys().map(String::as_str).collect();
    assert_eq!(queues, ["default"], "{longest:?}");
    let due_for = longest["default"];
    assert!(
        (Duration::from_secs(90)..Duration::from_secs(120)).contains(&due_for),
        "{due_for:?}"
    );
    assert!(store.longest_due(&[]).await.expect("none").is_empty());
}
