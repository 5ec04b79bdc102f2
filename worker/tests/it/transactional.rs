//! Jobs enqueued inside an application's own transaction: they exist if and
//! only if it commits, and run promptly after the commit, published by the
//! leader's commit listener (woken by the commit's notification, or on its
//! next tick from the outbox) rather than by a reconciliation pass.

use std::time::Duration;

use conveyor::{Inserted, JobStatus};
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::json;

use crate::support::{Harness, id, job};

/// Well inside the reconciler's quiet period in these tests (twice its
/// interval of an hour), so a job that runs within it was published by
/// the listener.
const PROMPTLY: Duration = Duration::from_secs(10);

/// The settings of a worker whose reconciler never publishes a fresh job.
fn patient_settings(h: &Harness, name: &str) -> worker::Settings {
    let mut settings = h.settings(name);
    settings.reconcile_interval = Duration::from_secs(3_600);
    settings
}

/// Those of a worker whose maintenance ticks are a minute apart, so that
/// only a notification can wake its listener within [`PROMPTLY`].
fn sleepy_settings(h: &Harness, name: &str) -> worker::Settings {
    let mut settings = patient_settings(h, name);
    settings.heartbeat = Duration::from_secs(60);
    settings.lease = Duration::from_secs(180);
    settings
}

/// Waits until a session of this test's database listens for committed
/// jobs.
async fn listening(h: &Harness) {
    testkit::wait_until("the leader to listen", Duration::from_secs(10), || async {
        let sessions =
            h.db.count(&format!(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
                 AND query = 'LISTEN \"{}\"'",
                conveyor::store::COMMITTED_CHANNEL
            ))
            .await;
        (sessions > 0).then_some(())
    })
    .await;
}

async fn orders_table(h: &Harness) {
    h.db.execute("CREATE TABLE orders (id bigint PRIMARY KEY, total integer NOT NULL)")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_enqueued_in_a_committed_transaction_runs_promptly() {
    let h = Harness::new().await;
    orders_table(&h).await;
    // Redis has its epoch, so the reconciler leaves fresh jobs alone for
    // its quiet period (two hours here).
    h.broker.set_epoch("before").await.expect("epoch");
    let worker = h.spawn(sleepy_settings(&h, "w"), worker::builtin_registry());
    listening(&h).await;
    // A first job: once it has run, the session's first look at the
    // outbox (right after its LISTEN) is over, and its next tick is a
    // minute away, so the next job can only be published because the
    // commit's notification woke the listener.
    let first = h.db.conn.begin().await.expect("begin");
    let warm_up = conveyor::enqueue_in(&first, job("noop", json!({})))
        .await
        .expect("enqueue")
        .job()
        .clone();
    first.commit().await.expect("commit");
    h.wait_for(id(&warm_up), JobStatus::Completed, PROMPTLY)
        .await;

    let txn = h.db.conn.begin().await.expect("begin");
    txn.execute_unprepared("INSERT INTO orders VALUES (1, 42)")
        .await
        .expect("the application's own write");
    let inserted = conveyor::enqueue_in(&txn, job("noop", json!({"order": 1})))
        .await
        .expect("enqueue in the transaction");
    let Inserted::Created(created) = inserted else {
        panic!("{inserted:?}")
    };
    // Not visible outside the transaction, so no worker can see it yet.
    assert!(h.store.find(id(&created)).await.expect("find").is_none());
    txn.commit().await.expect("commit");

    h.wait_for(id(&created), JobStatus::Completed, PROMPTLY)
        .await;
    assert_eq!(h.db.count("SELECT count(*) AS n FROM orders").await, 1);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_enqueued_in_a_rolled_back_transaction_never_existed() {
    let h = Harness::new().await;
    orders_table(&h).await;
    let worker = h.spawn(patient_settings(&h, "w"), worker::builtin_registry());
    listening(&h).await;

    let txn = h.db.conn.begin().await.expect("begin");
    txn.execute_unprepared("INSERT INTO orders VALUES (1, 42)")
        .await
        .expect("the application's own write");
    let rolled_back = conveyor::enqueue_in(&txn, job("noop", json!({})))
        .await
        .expect("enqueue in the transaction")
        .job()
        .clone();
    txn.rollback().await.expect("rollback");

    // The outbox is read oldest first: once a job committed after the
    // rollback has run, an announcement of the rolled-back one, had it
    // survived, would have been published before it.
    let after = h.db.conn.begin().await.expect("begin");
    let later = conveyor::enqueue_in(&after, job("noop", json!({})))
        .await
        .expect("enqueue")
        .job()
        .clone();
    after.commit().await.expect("commit");
    h.wait_for(id(&later), JobStatus::Completed, PROMPTLY).await;

    assert!(
        h.store
            .find(id(&rolled_back))
            .await
            .expect("find")
            .is_none()
    );
    assert_eq!(h.db.count("SELECT count(*) AS n FROM orders").await, 0);
    assert_eq!(h.db.count("SELECT count(*) AS n FROM jobs").await, 1);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_committed_while_nobody_listened_runs_once_a_leader_listens() {
    let h = Harness::new().await;
    // The commit's announcement reaches nobody: no worker runs (as when the
    // leader died between the commit and its publish).
    let txn = h.db.conn.begin().await.expect("begin");
    let missed = conveyor::enqueue_in(&txn, job("noop", json!({})))
        .await
        .expect("enqueue")
        .job()
        .clone();
    txn.commit().await.expect("commit");
    // Redis has its epoch (it did not lose its data), so the reconciler
    // would leave so fresh a job to the normal path for its quiet period.
    h.broker.set_epoch("before").await.expect("epoch");

    // A leader that starts listening empties the outbox at once, without
    // waiting for the reconciler's quiet period.
    let worker = h.spawn(patient_settings(&h, "w"), worker::builtin_registry());
    h.wait_for(id(&missed), JobStatus::Completed, PROMPTLY)
        .await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_committed_while_the_listening_connection_is_replaced_still_runs() {
    let h = Harness::new().await;
    let worker = h.spawn(patient_settings(&h, "w"), worker::builtin_registry());
    listening(&h).await;
    // The listening session dies (a restart, a proxy, an administrator);
    // jobs commit before a new one listens.
    h.db.execute(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query = 'LISTEN \"{}\"'",
        conveyor::store::COMMITTED_CHANNEL
    ))
    .await;
    let txn = h.db.conn.begin().await.expect("begin");
    let jobs = conveyor::enqueue_many_in(
        &txn,
        (0..3).map(|n| job("noop", json!({ "n": n }))).collect(),
    )
    .await
    .expect("enqueue");
    txn.commit().await.expect("commit");
    for inserted in &jobs {
        h.wait_for(id(inserted.job()), JobStatus::Completed, PROMPTLY)
            .await;
    }
    worker.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_used_inside_a_transaction_replays_after_the_commit() {
    let h = Harness::new().await;
    let keyed = || {
        let mut new = job("noop", json!({"order": 7}));
        new.idempotency_key = Some("order-7".to_owned());
        new
    };
    let txn = h.db.conn.begin().await.expect("begin");
    let first = conveyor::enqueue_in(&txn, keyed()).await.expect("enqueue");
    // The same key again in the same transaction sees its own row.
    let again = conveyor::enqueue_in(&txn, keyed()).await.expect("enqueue");
    txn.commit().await.expect("commit");
    assert!(matches!(first, Inserted::Created(_)), "{first:?}");
    assert!(
        matches!(&again, Inserted::Replayed(job) if job.id == first.job().id),
        "{again:?}"
    );
    // And through the client after the commit.
    let later = conveyor::Client::new(h.store.clone(), h.broker.clone())
        .enqueue(keyed())
        .await
        .expect("enqueue");
    assert!(
        matches!(&later, Inserted::Replayed(job) if job.id == first.job().id),
        "{later:?}"
    );
    assert_eq!(h.db.count("SELECT count(*) AS n FROM jobs").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announcement_whose_notification_was_lost_is_published_on_the_next_tick() {
    let h = Harness::new().await;
    h.broker.set_epoch("before").await.expect("epoch");
    let worker = h.spawn(patient_settings(&h, "w"), worker::builtin_registry());
    listening(&h).await;
    // What a commit leaves when its notification never arrives (a
    // connection that died silently): the job and its announcement.
    let lost = h.insert_unpublished(job("noop", json!({}))).await;
    h.db.execute(&format!(
        "INSERT INTO job_announcements (job_id) VALUES ('{}')",
        lost.id
    ))
    .await;
    h.wait_for(id(&lost), JobStatus::Completed, PROMPTLY).await;
    testkit::wait_until("the announcement to be forgotten", PROMPTLY, || async {
        (h.db
            .count("SELECT count(*) AS n FROM job_announcements")
            .await
            == 0)
            .then_some(())
    })
    .await;
    worker.stop().await;
}
