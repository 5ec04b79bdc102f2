//! Heartbeats extend leases; the janitor's edge acts only on expired ones,
//! once each, even with two janitors racing.

use std::sync::Arc;
use std::time::Duration;

use conveyor::JobStatus;
use tokio::sync::Barrier;

use crate::support::{OWNER, State, id, job_in, owner, owner_token, reload, store};

#[tokio::test]
async fn heartbeat_extends_only_the_attempts_the_worker_says_it_runs() {
    let (db, store) = store().await;
    let mine = job_in(&db, &store, State::Running).await;
    // Held by this worker too, but no task of it runs it (an outcome write
    // was refused, a claim reply lost): its lease must run out.
    let abandoned = job_in(&db, &store, State::Running).await;
    let cancel = job_in(&db, &store, State::RunningCancelRequested).await;
    // A job the worker thinks it runs, reclaimed meanwhile by another.
    let taken = job_in(&db, &store, State::Running).await;
    db.execute(&format!(
        "UPDATE jobs SET claim_token = gen_random_uuid() WHERE id = '{}'",
        taken.id
    ))
    .await;
    let taken = reload(&store, &taken).await;
    let queued = job_in(&db, &store, State::Queued).await;

    let renewed = store
        .heartbeat(
            &owner(),
            &[
                (id(&mine), owner_token()),
                (id(&cancel), owner_token()),
                (id(&taken), owner_token()),
                (id(&queued), owner_token()),
            ],
            Duration::from_secs(600),
        )
        .await
        .expect("heartbeat");
    let mut renewed: Vec<_> = renewed
        .into_iter()
        .map(|lease| (lease.id, lease.cancel_requested))
        .collect();
    renewed.sort();
    let mut expected = vec![(mine.id, false), (cancel.id, true)];
    expected.sort();
    assert_eq!(renewed, expected);
    assert!(reload(&store, &mine).await.lease_expires_at > mine.lease_expires_at);
    for untouched in [&abandoned, &taken, &queued] {
        assert_eq!(&reload(&store, untouched).await, untouched);
    }
    let none = store.heartbeat(&owner(), &[], Duration::from_secs(1)).await;
    assert!(none.expect("empty").is_empty());
}

#[tokio::test]
async fn expired_leases_are_retried_failed_or_canceled_as_the_job_requires() {
    let (db, store) = store().await;
    let retry = job_in(&db, &store, State::Running).await;
    let last = job_in(&db, &store, State::Running).await;
    let cancel = job_in(&db, &store, State::RunningCancelRequested).await;
    let healthy = job_in(&db, &store, State::Running).await;
    db.execute(&format!(
        "UPDATE jobs SET max_attempts = 1 WHERE id = '{}'",
        last.id
    ))
    .await;
    db.execute(&format!(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second' \
         WHERE id IN ('{}', '{}', '{}')",
        retry.id, last.id, cancel.id
    ))
    .await;

    let expired = store.expire_leases(100).await.expect("janitor");
    assert_eq!(expired.len(), 3);
    assert!(
        expired
            .iter()
            .all(|e| e.previous_worker.as_deref() == Some(OWNER))
    );
    assert_eq!(reload(&store, &retry).await.status, JobStatus::Retrying);
    assert_eq!(reload(&store, &last).await.status, JobStatus::Failed);
    assert_eq!(reload(&store, &cancel).await.status, JobStatus::Canceled);
    assert_eq!(reload(&store, &healthy).await, healthy);
    // Nothing left to do.
    assert!(store.expire_leases(100).await.expect("janitor").is_empty());
}

#[tokio::test]
async fn two_janitors_never_act_on_the_same_job() {
    let (db, store) = store().await;
    let mut jobs = Vec::new();
    for _ in 0..40 {
        jobs.push(job_in(&db, &store, State::Running).await);
    }
    db.execute("UPDATE jobs SET lease_expires_at = now() - interval '1 second'")
        .await;
    let barrier = Arc::new(Barrier::new(2));
    let janitor = |store: conveyor::Store, barrier: Arc<Barrier>| async move {
        barrier.wait().await;
        let mut acted = Vec::new();
        loop {
            let batch = store.expire_leases(7).await.expect("janitor");
            if batch.is_empty() {
                return acted;
            }
            acted.extend(batch.into_iter().map(|e| e.job.id));
        }
    };
    let (a, b) = tokio::join!(
        janitor(store.clone(), barrier.clone()),
        janitor(store.clone(), barrier.clone())
    );
    let mut all: Vec<_> = a.iter().chain(b.iter()).copied().collect();
    all.sort();
    all.dedup();
    assert_eq!(a.len() + b.len(), 40, "each job handled exactly once");
    assert_eq!(all.len(), 40);
    for job in &jobs {
        let after = reload(&store, job).await;
        assert_eq!(after.status, JobStatus::Retrying);
        assert_eq!(after.attempts, 1, "expiry does not count an attempt");
    }
}
