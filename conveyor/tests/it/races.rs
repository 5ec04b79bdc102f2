//! Races provoked on purpose: many claimers for one job, and stale workers
//! writing after their attempt was taken from them.

use std::sync::Arc;
use std::time::Duration;

use conveyor::{ClaimToken, Fence, JobStatus, Transition, WorkerId};
use serde_json::json;
use tokio::sync::Barrier;

use crate::support::{OWNER, State, claim, claimed, id, job_in, owner, owner_fence, reload, store};

#[tokio::test]
async fn job_is_claimed_by_exactly_one_of_many_racing_workers() {
    let (db, store) = store().await;
    for _round in 0..5 {
        let job = job_in(&db, &store, State::Queued).await;
        let claimers = 8;
        let barrier = Arc::new(Barrier::new(claimers));
        let mut tasks = Vec::new();
        for n in 0..claimers {
            let (store, barrier, job_id) = (store.clone(), barrier.clone(), id(&job));
            tasks.push(tokio::spawn(async move {
                let me = WorkerId::new(format!("racer-{n}"));
                barrier.wait().await;
                store
                    .claim(job_id, &me, ClaimToken::new(), Duration::from_secs(30))
                    .await
            }));
        }
        let mut winners = 0;
        for task in tasks {
            if task.await.expect("task").expect("claim ran").is_won() {
                winners += 1;
            }
        }
        assert_eq!(winners, 1, "exactly one claim wins");
        let after = reload(&store, &job).await;
        assert_eq!(after.status, JobStatus::Running);
        assert_eq!(after.attempts, 1, "attempts go up by one, not by claimers");
    }
}

#[tokio::test]
async fn stale_worker_cannot_complete_fail_or_retry_a_reclaimed_job() {
    let (db, store) = store().await;
    let job = job_in(&db, &store, State::Running).await;
    let stale = owner_fence(id(&job));

    // The owner's lease runs out; the janitor puts the job back and another
    // worker claims it as attempt 2.
    db.execute(&format!(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = '{}'",
        job.id
    ))
    .await;
    let expired = store.expire_leases(100).await.expect("janitor");
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].job.status, JobStatus::Retrying);
    let successor = WorkerId::new("worker-successor");
    let reclaimed = claimed(&store, &job, &successor).await;
    assert_eq!(reclaimed.attempts, 2);

    // Every late write by the stale owner is refused and changes nothing.
    for attempt in [
        store.complete(&stale, json!({"late": true})).await,
        store.fail(&stale, "late failure").await,
        store
            .schedule_retry(&stale, "late retry", Duration::ZERO)
            .await,
        store.release(&stale).await,
    ] {
        assert_eq!(attempt.expect("ran"), Transition::Lost(reclaimed.clone()));
    }

    // The successor's outcome stands.
    let done = store
        .complete(
            &Fence::of(&reclaimed, &successor),
            json!({"by": "successor"}),
        )
        .await
        .expect("ran")
        .won()
        .expect("successor completes");
    assert_eq!(done.result, Some(json!({"by": "successor"})));
}

#[tokio::test]
async fn a_fence_with_another_claims_token_is_refused() {
    let (db, store) = store().await;
    let job = job_in(&db, &store, State::Running).await;
    // Same worker, same attempt number: only the token tells claims apart.
    let other_claim = Fence {
        token: ClaimToken::new(),
        ..owner_fence(id(&job))
    };
    assert_eq!(
        store.complete(&other_claim, json!({})).await.expect("ran"),
        Transition::Lost(job.clone())
    );
    assert_eq!(reload(&store, &job).await, job);
}

#[tokio::test]
async fn an_outcome_is_written_once_and_a_repeated_write_reads_it_back() {
    let (db, store) = store().await;
    let job = job_in(&db, &store, State::Running).await;
    let fence = owner_fence(id(&job));
    let first = store.complete(&fence, json!({"n": 1})).await.expect("ran");
    // The same write again, as after a lost reply: the row says it was
    // made (it carries this claim's token), and it is not made twice.
    let second = store.complete(&fence, json!({"n": 2})).await.expect("ran");
    let done = first.won().expect("first write wins");
    assert_eq!(second, Transition::Won(done.clone()));
    assert_eq!(reload(&store, &job).await.result, Some(json!({"n": 1})));
    // Any other outcome for the same attempt changes nothing either.
    let failed = store.fail(&fence, "late").await.expect("ran");
    assert_eq!(
        failed.job().map(|job| job.status),
        Some(JobStatus::Completed)
    );
    assert_eq!(reload(&store, &job).await, done);
}

#[tokio::test]
async fn a_claim_whose_reply_was_lost_is_recognised_by_its_token() {
    let (db, store) = store().await;
    let job = job_in(&db, &store, State::Queued).await;
    let token = ClaimToken::new();
    let first = store
        .claim(id(&job), &owner(), token, Duration::from_secs(30))
        .await
        .expect("claim")
        .won()
        .expect("won");
    // The reply is lost; the worker tries again with the same token.
    let again = store
        .claim(id(&job), &owner(), token, Duration::from_secs(30))
        .await
        .expect("claim");
    let Transition::Won(again) = again else {
        panic!("the claim is ours: {again:?}");
    };
    assert_eq!(
        (again.attempts, again.claim_token),
        (1, first.claim_token),
        "claimed once"
    );
    assert!(
        again.lease_expires_at >= first.lease_expires_at,
        "and its lease renewed"
    );
    let first = again;
    // A duplicate delivery, claimed with a token of its own, loses.
    let duplicate = claim(&store, &job, &owner()).await;
    assert_eq!(duplicate, Transition::Lost(first));

    // A reply lost for longer than the lease: the claim no longer stands.
    let token = ClaimToken::new();
    let late = job_in(&db, &store, State::Queued).await;
    let claimed = store
        .claim(id(&late), &owner(), token, Duration::from_millis(1))
        .await
        .expect("claim");
    assert!(claimed.is_won());
    db.execute(&format!(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = '{}'",
        late.id
    ))
    .await;
    let expired = store
        .claim(id(&late), &owner(), token, Duration::from_secs(30))
        .await
        .expect("claim");
    assert!(matches!(expired, Transition::Lost(_)), "{expired:?}");
}

#[tokio::test]
async fn a_retried_job_refuses_the_outcome_of_a_claim_from_before_the_retry() {
    let (db, store) = store().await;
    let job = job_in(&db, &store, State::Running).await;
    let paused = owner_fence(id(&job));
    // The owner is paused; its lease runs out and the janitor fails the
    // job (no attempts left); a client retries it by hand.
    db.execute(&format!(
        "UPDATE jobs SET max_attempts = 1, lease_expires_at = now() - interval '1 second' \
         WHERE id = '{}'",
        job.id
    ))
    .await;
    assert_eq!(store.expire_leases(10).await.expect("janitor").len(), 1);
    assert!(store.requeue(id(&job)).await.expect("requeue").is_won());
    // The same worker claims it again: attempt 1 again, by the same worker.
    let rerun = claimed(&store, &job, &owner()).await;
    assert_eq!(
        (rerun.attempts, rerun.worker_id.as_deref()),
        (1, Some(OWNER))
    );

    // The paused run resumes and reports: refused, nothing changes.
    let late = store.complete(&paused, json!({"late": true})).await;
    assert_eq!(late.expect("ran"), Transition::Lost(rerun.clone()));
    assert_eq!(reload(&store, &job).await, rerun);
    let current = Fence::of(&rerun, &owner());
    let done = store.complete(&current, json!({"rerun": true})).await;
    assert_eq!(
        done.expect("ran").won().map(|job| job.result),
        Some(Some(json!({"rerun": true})))
    );
}

#[tokio::test]
async fn racing_batch_claims_split_the_jobs_and_skip_the_unclaimable() {
    let (db, store) = store().await;
    let mut ids = Vec::new();
    for _ in 0..30 {
        ids.push(id(&job_in(&db, &store, State::Queued).await));
    }
    let done = job_in(&db, &store, State::Completed).await;
    let later = job_in(&db, &store, State::Queued).await;
    db.execute(&format!(
        "UPDATE jobs SET run_at = now() + interval '1 hour' WHERE id = '{}'",
        later.id
    ))
    .await;
    ids.push(id(&done));
    ids.push(id(&later));
    ids.push(conveyor::JobId::new());

    let barrier = Arc::new(Barrier::new(2));
    let claimer = |name: &'static str| {
        let (store, barrier, ids) = (store.clone(), barrier.clone(), ids.clone());
        async move {
            barrier.wait().await;
            let claims: Vec<_> = ids.iter().map(|id| (*id, ClaimToken::new())).collect();
            store
                .claim_many(&claims, &WorkerId::new(name), Duration::from_secs(30))
                .await
                .expect("claim_many")
        }
    };
    let (a, b) = tokio::join!(claimer("a"), claimer("b"));
    let mut won: Vec<_> = a.iter().chain(b.iter()).map(|job| job.id).collect();
    assert_eq!(won.len(), 30, "each claimable job won once");
    won.sort();
    won.dedup();
    assert_eq!(won.len(), 30, "no job won twice");
    assert!(
        a.iter()
            .chain(b.iter())
            .all(|job| job.attempts == 1 && job.status == JobStatus::Running)
    );
    assert_eq!(reload(&store, &done).await.status, JobStatus::Completed);
    assert_eq!(reload(&store, &later).await.status, JobStatus::Queued);
}

#[tokio::test]
async fn a_batch_of_outcomes_is_fenced_row_by_row() {
    let (db, store) = store().await;
    let mine = job_in(&db, &store, State::Running).await;
    let null_result = job_in(&db, &store, State::Running).await;
    let stale = job_in(&db, &store, State::Running).await;
    let done = job_in(&db, &store, State::Completed).await;
    let missing = conveyor::JobId::new();
    let items = vec![
        (owner_fence(id(&mine)), json!({"n": 1})),
        (owner_fence(id(&null_result)), serde_json::Value::Null),
        (
            Fence {
                token: ClaimToken::new(),
                ..owner_fence(id(&stale))
            },
            json!({"late": true}),
        ),
        (owner_fence(id(&done)), json!({"again": true})),
        (owner_fence(missing), json!({})),
        // The same attempt twice in one batch: written once.
        (owner_fence(id(&mine)), json!({"n": 2})),
    ];
    let transitions = store.complete_many(&items).await.expect("ran");
    assert_eq!(
        transitions.len(),
        items.len(),
        "one answer per item, in order"
    );

    let written = transitions[0].clone().won().expect("owner wins");
    assert_eq!(written.status, JobStatus::Completed);
    assert_eq!(written.result, Some(json!({"n": 1})));
    assert!(written.completed_at.is_some() && written.lease_expires_at.is_none());
    let null_written = transitions[1].clone().won().expect("owner wins");
    // Same stored value as the one-by-one edge writes for a null result.
    let single = job_in(&db, &store, State::Running).await;
    let single = store
        .complete(&owner_fence(id(&single)), serde_json::Value::Null)
        .await
        .expect("ran")
        .won()
        .expect("wins");
    assert_eq!(null_written.result, single.result);

    assert_eq!(transitions[2], Transition::Lost(stale.clone()));
    assert_eq!(
        reload(&store, &stale).await,
        stale,
        "stale write changed nothing"
    );
    assert_eq!(transitions[3], Transition::Lost(done.clone()));
    assert_eq!(transitions[4], Transition::NotFound);
    assert_eq!(
        transitions[5],
        Transition::Won(written.clone()),
        "the attempt's outcome is the first one, read back"
    );
    assert_eq!(reload(&store, &mine).await.result, Some(json!({"n": 1})));
    assert!(store.complete_many(&[]).await.expect("ran").is_empty());
}

#[tokio::test]
async fn a_stale_and_a_current_completion_in_one_batch_write_only_the_current() {
    let (db, store) = store().await;
    let job = job_in(&db, &store, State::Running).await;
    let stale = Fence {
        token: ClaimToken::new(),
        ..owner_fence(id(&job))
    };
    // The stale completion first: de-duplicating by job id would keep it
    // and drop the current one.
    let items = vec![
        (stale, json!({"by": "stale"})),
        (owner_fence(id(&job)), json!({"by": "current"})),
    ];
    let transitions = store.complete_many(&items).await.expect("ran");
    let written = transitions[1].clone().won().expect("current wins");
    assert_eq!(written.result, Some(json!({"by": "current"})));
    assert_eq!(transitions[0], Transition::Lost(written.clone()));
    assert_eq!(reload(&store, &job).await, written);
}

/// A worker's heartbeat and its batch of completions lock the same
/// running rows at once. Each locks them in id order, whatever order it was
/// given them in, so neither waits on the other in a cycle: a deadlock
/// would stall both for PostgreSQL's `deadlock_timeout` and fail one.
#[tokio::test]
async fn a_heartbeat_and_a_batch_of_completions_over_the_same_jobs_never_deadlock() {
    let (db, store) = store().await;
    db.execute(
        "INSERT INTO jobs (id, type, payload, status, attempts, started_at, completed_at) \
         SELECT gen_random_uuid(), 'noop', '{}'::jsonb, 'completed', 1, now(), now() \
         FROM generate_series(1, 5000)",
    )
    .await;
    let me = owner();
    let lease = Duration::from_secs(30);
    for _round in 0..5 {
        let mut batch = Vec::new();
        for _ in 0..200 {
            let job = job_in(&db, &store, State::Queued).await;
            batch.push((id(&job), ClaimToken::new()));
        }
        let won = store.claim_many(&batch, &me, lease).await.expect("claim");
        assert_eq!(won.len(), batch.len());
        // Rows out of id order in the heap (as any update leaves them, a
        // cancel request say), and statistics that show a small table: the
        // planner then joins by scanning `jobs`, in heap order, rather than
        // by probing its key in the array's order.
        let mut ids: Vec<uuid::Uuid> = batch.iter().map(|(job_id, _)| job_id.as_uuid()).collect();
        ids.sort();
        for job_id in ids.iter().rev().step_by(3) {
            db.execute(&format!(
                "UPDATE jobs SET cancel_requested = false WHERE id = '{job_id}'"
            ))
            .await;
        }
        db.execute("ANALYZE jobs").await;
        // Opposite orders: unsorted, the two statements meet in the middle.
        let ascending = batch.clone();
        let descending: Vec<(Fence, serde_json::Value)> = batch
            .iter()
            .rev()
            .map(|(job_id, token)| {
                let fence = Fence {
                    job_id: *job_id,
                    token: *token,
                    worker_id: me.clone(),
                    attempt: 1,
                    settles: true,
                };
                (fence, json!({"ok": true}))
            })
            .collect();
        let barrier = Arc::new(Barrier::new(2));
        let beat = {
            let (store, me, barrier) = (store.clone(), me.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.heartbeat(&me, &ascending, lease).await
            })
        };
        let complete = {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.complete_many(&descending).await
            })
        };
        beat.await.expect("task").expect("the heartbeat ran");
        let completed = complete.await.expect("task").expect("the completions ran");
        assert!(completed.iter().all(Transition::is_won), "{completed:?}");
    }
}
