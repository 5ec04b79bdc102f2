//! Every edge from every state: allowed ones win, all others lose and leave
//! the row exactly as it was.

use std::time::Duration;

use chrono::Utc;
use conveyor::{ClaimToken, JobStatus, Store, Transition};
use serde_json::json;

use crate::support::{State, claim, claimed, id, job_in, owner, owner_fence, reload, store};

#[derive(Debug, Clone, Copy)]
enum Edge {
    Claim,
    Complete,
    Fail,
    ScheduleRetry,
    FinishCanceled,
    Release,
    Cancel,
    RequestCancel,
    Requeue,
}

impl Edge {
    const ALL: [Edge; 9] = [
        Edge::Claim,
        Edge::Complete,
        Edge::Fail,
        Edge::ScheduleRetry,
        Edge::FinishCanceled,
        Edge::Release,
        Edge::Cancel,
        Edge::RequestCancel,
        Edge::Requeue,
    ];

    /// The states this edge may leave from, each with the status it leads to.
    fn rule(self) -> &'static [(State, JobStatus)] {
        use JobStatus as S;
        use State::*;
        match self {
            Edge::Claim => &[(Queued, S::Running), (Retrying, S::Running)],
            Edge::Complete => &[
                (Running, S::Completed),
                (RunningCancelRequested, S::Completed),
            ],
            Edge::Fail => &[(Running, S::Failed), (RunningCancelRequested, S::Failed)],
            // A failed or interrupted attempt of a job asked to cancel ends it.
            Edge::ScheduleRetry => &[
                (Running, S::Retrying),
                (RunningCancelRequested, S::Canceled),
            ],
            Edge::Release => &[
                (Running, S::Retrying),
                (RunningCancelRequested, S::Canceled),
            ],
            Edge::FinishCanceled => &[(RunningCancelRequested, S::Canceled)],
            Edge::Cancel => &[(Queued, S::Canceled), (Retrying, S::Canceled)],
            Edge::RequestCancel => &[(Running, S::Running)],
            Edge::Requeue => &[(Failed, S::Queued), (Canceled, S::Queued)],
        }
    }

    async fn take(self, store: &Store, job: &conveyor::Job) -> Transition {
        let fence = owner_fence(id(job));
        let outcome = match self {
            Edge::Claim => {
                store
                    .claim(
                        id(job),
                        &owner(),
                        ClaimToken::new(),
                        Duration::from_secs(30),
                    )
                    .await
            }
            Edge::Complete => store.complete(&fence, json!({"ok": true})).await,
            Edge::Fail => store.fail(&fence, "nope").await,
            Edge::ScheduleRetry => store.schedule_retry(&fence, "again", Duration::ZERO).await,
            Edge::FinishCanceled => store.finish_canceled(&fence).await,
            Edge::Release => store.release(&fence).await,
            Edge::Cancel => store.cancel(id(job)).await,
            Edge::RequestCancel => store.request_cancel(id(job)).await,
            Edge::Requeue => store.requeue(id(job)).await,
        };
        outcome.expect("transition ran")
    }
}

#[tokio::test]
async fn every_edge_wins_only_from_its_allowed_states() {
    let (db, store) = store().await;
    for edge in Edge::ALL {
        for state in State::ALL {
            let allowed = edge.rule().iter().find(|(from, _)| *from == state);
            let before = job_in(&db, &store, state).await;
            let outcome = edge.take(&store, &before).await;
            let after = reload(&store, &before).await;
            if let Some((_, leads_to)) = allowed {
                let Transition::Won(returned) = outcome else {
                    panic!("{edge:?} from {state:?} should win, got {outcome:?}");
                };
                assert_eq!(returned, after, "{edge:?} returns the row as written");
                assert_eq!(after.status, *leads_to, "{edge:?} from {state:?}");
                assert!(after.updated_at >= before.updated_at);
            } else {
                assert_eq!(
                    outcome,
                    Transition::Lost(before.clone()),
                    "{edge:?} from {state:?} should lose and report the row as found"
                );
                assert_eq!(after, before, "{edge:?} from {state:?} changed the row");
            }
        }
    }
}

#[tokio::test]
async fn an_unknown_id_is_not_found() {
    let (_db, store) = store().await;
    let missing = conveyor::JobId::new();
    assert_eq!(
        store.cancel(missing).await.expect("ran"),
        Transition::NotFound
    );
    assert_eq!(
        store
            .complete(&owner_fence(missing), json!({}))
            .await
            .expect("ran"),
        Transition::NotFound
    );
}

#[tokio::test]
async fn claim_counts_the_attempt_and_takes_a_lease() {
    let (db, store) = store().await;
    let job = job_in(&db, &store, State::Queued).await;
    let claimed = claimed(&store, &job, &owner()).await;
    assert_eq!(claimed.attempts, 1);
    assert_eq!(claimed.worker_id.as_deref(), Some(crate::support::OWNER));
    let lease = claimed.lease_expires_at.expect("lease") - claimed.started_at.expect("started");
    assert!((29..=31).contains(&lease.num_seconds()), "lease {lease}");
}

#[tokio::test]
async fn a_job_that_is_not_due_cannot_be_claimed() {
    let (db, store) = store().await;
    let job = job_in(&db, &store, State::Queued).await;
    db.execute(&format!(
        "UPDATE jobs SET run_at = now() + interval '1 hour' WHERE id = '{}'",
        job.id
    ))
    .await;
    let outcome = claim(&store, &job, &owner()).await;
    let Transition::Lost(found) = outcome else {
        panic!("not-due claim should lose, got {outcome:?}");
    };
    assert_eq!(found.status, JobStatus::Queued);
    assert!(found.run_at > Utc::now());
}

#[tokio::test]
async fn a_retry_at_the_last_attempt_fails_the_job() {
    let (db, store) = store().await;
    let job = job_in(&db, &store, State::Running).await;
    db.execute(&format!(
        "UPDATE jobs SET max_attempts = 1 WHERE id = '{}'",
        job.id
    ))
    .await;
    let after = store
        .schedule_retry(&owner_fence(id(&job)), "still broken", Duration::ZERO)
        .await
        .expect("ran")
        .won()
        .expect("fenced write won");
    assert_eq!(after.status, JobStatus::Failed);
    assert_eq!(after.error_message.as_deref(), Some("still broken"));
    assert!(after.failed_at.is_some());
}

#[tokio::test]
async fn a_retry_of_a_job_asked_to_cancel_cancels_it() {
    let (db, store) = store().await;
    let job = job_in(&db, &store, State::RunningCancelRequested).await;
    let after = store
        .schedule_retry(&owner_fence(id(&job)), "boom", Duration::ZERO)
        .await
        .expect("ran")
        .won()
        .expect("won");
    assert_eq!(after.status, JobStatus::Canceled);
    assert!(after.canceled_at.is_some());
}

#[tokio::test]
async fn release_does_not_count_the_interrupted_attempt() {
    let (db, store) = store().await;
    let job = job_in(&db, &store, State::Running).await;
    let after = store
        .release(&owner_fence(id(&job)))
        .await
        .expect("ran")
        .won()
        .expect("won");
    assert_eq!(after.status, JobStatus::Retrying);
    assert_eq!(after.attempts, 0);
    assert!(after.run_at <= Utc::now());
}

#[tokio::test]
async fn requeue_clears_the_previous_outcome() {
    let (db, store) = store().await;
    let job = job_in(&db, &store, State::Failed).await;
    let after = store
        .requeue(id(&job))
        .await
        .expect("ran")
        .won()
        .expect("won");
    assert_eq!(after.status, JobStatus::Queued);
    assert_eq!(after.attempts, 0);
    assert_eq!(after.error_message, None);
    assert_eq!(after.failed_at, None);
    // And it can run again.
    assert!(
        store
            .claim(
                id(&job),
                &owner(),
                ClaimToken::new(),
                Duration::from_secs(5)
            )
            .await
            .expect("claim")
            .is_won()
    );
}

#[tokio::test]
async fn a_retry_is_due_after_its_delay_by_the_databases_clock() {
    let (db, store) = store().await;
    let job = job_in(&db, &store, State::Running).await;
    let after = store
        .schedule_retry(
            &owner_fence(id(&job)),
            "later",
            Duration::from_millis(1_500),
        )
        .await
        .expect("ran")
        .won()
        .expect("won");
    // Both instants come from the same `now()`: exact to the microsecond,
    // whatever the worker's clock says.
    assert_eq!(
        (after.run_at - after.updated_at).num_microseconds(),
        Some(1_500_000)
    );
}
