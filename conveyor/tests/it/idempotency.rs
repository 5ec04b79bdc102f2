//! Idempotency keys: one row per key, however many callers race, and a
//! different request under a used key is a conflict.

use std::sync::Arc;

use conveyor::{Inserted, NewJob, StoreError};
use serde_json::json;
use tokio::sync::Barrier;

use crate::support::store;

fn keyed(key: &str, payload: serde_json::Value) -> NewJob {
    NewJob {
        idempotency_key: Some(key.to_owned()),
        ..NewJob::new("demo", payload)
    }
}

#[tokio::test]
async fn many_concurrent_inserts_with_one_key_create_one_row() {
    let (db, store) = store().await;
    let callers = 32;
    let barrier = Arc::new(Barrier::new(callers));
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let (store, barrier) = (store.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store.insert(&keyed("order-42", json!({"order": 42}))).await
        }));
    }
    let (mut created, mut replayed, mut ids) = (0, 0, Vec::new());
    for task in tasks {
        match task.await.expect("task").expect("insert ran") {
            Inserted::Created(job) => {
                created += 1;
                ids.push(job.id);
            }
            Inserted::Replayed(job) => {
                replayed += 1;
                ids.push(job.id);
            }
            Inserted::Conflict(job) => panic!("same request reported as conflict: {job:?}"),
        }
    }
    assert_eq!((created, replayed), (1, callers - 1));
    ids.dedup();
    assert_eq!(ids.len(), 1, "every caller sees the same job");

    let rows = sea_orm::ConnectionTrait::query_one_raw(
        &db.conn,
        sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*) AS n FROM jobs WHERE idempotency_key = 'order-42'",
        ),
    )
    .await
    .expect("count")
    .expect("row");
    assert_eq!(rows.try_get::<i64>("", "n").expect("n"), 1);

    let conflict = store
        .insert(&keyed("order-42", json!({"order": 43})))
        .await
        .expect("insert ran");
    let Inserted::Conflict(existing) = conflict else {
        panic!("different payload under a used key must conflict, got {conflict:?}");
    };
    assert_eq!(
        existing.payload,
        json!({"order": 42}),
        "the original is untouched"
    );
}

#[tokio::test]
async fn jobs_without_keys_are_always_created() {
    let (_db, store) = store().await;
    let a = store
        .insert(&NewJob::new("demo", json!({})))
        .await
        .expect("a");
    let b = store
        .insert(&NewJob::new("demo", json!({})))
        .await
        .expect("b");
    assert!(matches!(a, Inserted::Created(_)));
    assert!(matches!(b, Inserted::Created(_)));
    assert_ne!(a.job().id, b.job().id);
}

#[tokio::test]
async fn an_invalid_job_is_refused_before_any_write() {
    let (_db, store) = store().await;
    let mut job = NewJob::new("demo", json!({}));
    job.priority = 12;
    let err = store.insert(&job).await.expect_err("refused");
    assert!(matches!(err, StoreError::Invalid(ref invalid) if invalid.field == "priority"));
}

#[tokio::test]
async fn large_tables_report_waiting_jobs_exactly_and_finished_ones_as_estimates() {
    let (db, store) = store().await;
    db.execute(
        "INSERT INTO jobs (id, queue, payload, status, attempts, completed_at) \
         SELECT gen_random_uuid(), 'q', '{}', CASE WHEN n % 10 = 0 THEN 'queued' ELSE 'completed' END, \
                CASE WHEN n % 10 = 0 THEN 0 ELSE 1 END, CASE WHEN n % 10 = 0 THEN NULL ELSE now() END \
         FROM generate_series(1, 5000) AS n",
    )
    .await;
    db.execute("ANALYZE jobs").await;
    let exact = store.job_counts().await.expect("counts");
    assert!(exact.exact);
    // Pretend the table is large: queued stays exact, completed is sampled
    // (the sample covers the whole small table here, so it matches too).
    let estimated = store.job_counts_above(1_000).await.expect("counts");
    assert!(!estimated.exact);
    let count = |counts: &conveyor::store::JobCounts, status: &str| {
        counts
            .counts
            .iter()
            .filter(|c| c.status == status)
            .map(|c| c.count)
            .sum::<i64>()
    };
    assert_eq!(count(&exact, "queued"), 500);
    assert_eq!(count(&estimated, "queued"), 500);
    assert_eq!(count(&exact, "completed"), 4_500);
    assert_eq!(count(&estimated, "completed"), 4_500);
}

#[tokio::test]
async fn matching_jobs_are_counted_exactly_up_to_the_bound_then_estimated() {
    use conveyor::store::ListFilter;
    let (db, store) = store().await;
    db.execute(
        "INSERT INTO jobs (id, queue, payload) \
         SELECT gen_random_uuid(), CASE WHEN n % 4 = 0 THEN 'a' ELSE 'b' END, '{}' \
         FROM generate_series(1, 400) AS n",
    )
    .await;
    db.execute("ANALYZE jobs").await;
    let in_queue = |queue: &str| ListFilter {
        queue: Some(queue.to_owned()),
        ..ListFilter::default()
    };
    let exact = store
        .count_matching(&in_queue("a"), 100)
        .await
        .expect("count");
    assert_eq!((exact.count, exact.exact), (100, true));
    let estimated = store
        .count_matching(&in_queue("b"), 100)
        .await
        .expect("count");
    assert!(!estimated.exact);
    assert!(
        (101..=600).contains(&estimated.count),
        "at least what was seen, near the truth (300): {estimated:?}"
    );
    let none = store
        .count_matching(&in_queue("c"), 100)
        .await
        .expect("count");
    assert_eq!((none.count, none.exact), (0, true));
}
