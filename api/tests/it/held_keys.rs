//! An idempotency key held by an application's open transaction
//! (`conveyor::enqueue_in`, not yet committed) holds up only the requests
//! that use it: the insert writer gives up on the lock after the API's
//! `lock_timeout` and writes the other jobs of its batch alone.

use std::time::Duration;

use sea_orm::TransactionTrait;
use serde_json::{Value, json};

use crate::support::{Options, TestApp};

fn keyed(key: &str) -> Value {
    json!({"type": "noop", "payload": {"order": 42}, "idempotency_key": key})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_held_by_an_open_transaction_holds_up_only_its_own_requests() {
    let app = TestApp::with(Options {
        write_pool: Some(conveyor::store::PoolSettings {
            // Far longer than the test waits: without the lock timeout,
            // every request queued behind the held key would wait this long.
            statement_timeout: Some(Duration::from_secs(120)),
            // Long enough that the requests sent after the first one has
            // blocked all join the writer's next batch.
            lock_timeout: Some(Duration::from_secs(2)),
            ..conveyor::store::PoolSettings::new(8)
        }),
        ..Options::default()
    })
    .await;
    let mut held = conveyor::NewJob::new("noop", json!({"order": 42}));
    held.idempotency_key = Some("order-42".to_owned());
    let txn = app.db.conn.begin().await.expect("begin");
    let in_txn = conveyor::enqueue_in(&txn, held)
        .await
        .expect("enqueue in the transaction")
        .job()
        .clone();

    // A request under the held key blocks the insert writer ...
    let first = tokio::spawn({
        let (client, url) = (app.client.clone(), app.url("/jobs"));
        async move { client.post(url).json(&keyed("order-42")).send().await }
    });
    testkit::wait_until(
        "an insert to wait for the held key",
        Duration::from_secs(10),
        || async {
            let waiting = app
                .db
                .count(
                    "SELECT count(*) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                )
                .await;
            (waiting > 0).then_some(())
        },
    )
    .await;
    // ... so these queue up behind it and form the writer's next batch,
    // with another request under the held key among them.
    let second = tokio::spawn({
        let (client, url) = (app.client.clone(), app.url("/jobs"));
        async move { client.post(url).json(&keyed("order-42")).send().await }
    });
    let others: Vec<_> = (0..10)
        .map(|n| {
            let (client, url) = (app.client.clone(), app.url("/jobs"));
            tokio::spawn(async move {
                client
                    .post(url)
                    .json(&json!({"type": "noop", "payload": {"n": n}}))
                    .send()
                    .await
            })
        })
        .collect();

    // Every other job is created while the transaction is still open.
    let answers = tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(others))
        .await
        .expect("the other requests were answered while the key was held");
    for answer in answers {
        let status = answer.expect("task").expect("answer").status().as_u16();
        assert_eq!(status, 201);
    }
    // The requests under the held key are told to try again.
    for request in [first, second] {
        let response = request.await.expect("task").expect("answer");
        assert_eq!(response.status().as_u16(), 503);
        let problem: Value = response.json().await.expect("problem");
        assert_eq!(problem["code"], "database_busy", "{problem}");
    }

    // Once the transaction commits, the same request is its job's replay.
    txn.commit().await.expect("commit");
    let (status, job) = app.post_json("/jobs", &keyed("order-42")).await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["id"], in_txn.id.to_string());
}
