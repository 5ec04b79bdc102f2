//! The maintenance services under the faults that used to break them: a
//! dead worker recovered while PostgreSQL is cut off, ids left in the list
//! of a worker that is gone, a payload no one can decode, a leader that
//! lost its lease mid-pass.

use std::sync::Arc;
use std::time::Duration;

use conveyor::maintenance::dead_workers::recover_dead_workers;
use conveyor::maintenance::reconciler::reconcile_once;
use conveyor::maintenance::{Maintenance, MaintenanceError};
use conveyor::outage::Outages;
use conveyor::{JobStatus, Store};
use redis::Commands;
use serde_json::json;
use testkit::Proxy;

use crate::support::{Harness, id, job};

/// A job left in the processing list of `worker`, which is registered but
/// silent since the epoch: what a worker killed after a fetch leaves.
async fn left_by_dead_worker(h: &Harness, worker: &str) -> conveyor::Job {
    let waiting = h.insert_unpublished(job("noop", json!({}))).await;
    let mut conn = h.redis_conn();
    let keys = h.keys();
    let _: () = conn.zadd(keys.workers(), worker, 0).expect("register");
    let _: () = conn.sadd(keys.queues(), "default").expect("queues");
    let _: () = conn
        .lpush(keys.processing("default", worker), waiting.id.to_string())
        .expect("push");
    waiting
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_worker_leaves_the_registry_only_after_its_ids_are_back() {
    let h = Harness::new().await;
    let stranded = left_by_dead_worker(&h, "ghost").await;
    // The leader's PostgreSQL goes away while it recovers the dead worker.
    let proxy = Proxy::start(testkit::proxy::target_of(&h.db.url)).await;
    let store = Store::connect(&proxy.url_through(&h.db.url), 2)
        .await
        .expect("pool");
    let maintenance = Maintenance::new(
        store,
        h.broker.clone(),
        h.settings("leader").maintenance(),
        Arc::new(Outages::default()),
    );
    let ctx = maintenance.context().clone();
    assert!(ctx.take_lead().await.expect("campaign"));
    proxy.cut();
    let failed = recover_dead_workers(&ctx).await;
    assert!(
        matches!(failed, Err(MaintenanceError::Store(_))),
        "{failed:?}"
    );
    let mut conn = h.redis_conn();
    let keys = h.keys();
    let registered: Option<f64> = conn.zscore(keys.workers(), "ghost").expect("zscore");
    assert!(
        registered.is_some(),
        "still registered: the next pass must find it"
    );
    let held: Vec<String> = conn
        .lrange(keys.processing("default", "ghost"), 0, -1)
        .expect("lrange");
    assert_eq!(
        held,
        [stranded.id.to_string()],
        "its ids are where they were"
    );

    // PostgreSQL is back: the next pass finishes the job.
    proxy.restore();
    recover_dead_workers(&ctx).await.expect("recovered");
    let ready: Vec<String> = conn
        .lrange(keys.ready("default", 0), 0, -1)
        .expect("lrange");
    assert_eq!(
        ready,
        [stranded.id.to_string()],
        "the waiting job is back in Redis"
    );
    let registered: Option<f64> = conn.zscore(keys.workers(), "ghost").expect("zscore");
    assert_eq!(registered, None, "and only then deregistered");
    let lists: i64 = conn
        .exists(keys.processing("default", "ghost"))
        .expect("exists");
    assert_eq!(lists, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_in_the_list_of_an_unregistered_worker_are_not_held() {
    let h = Harness::new().await;
    let stranded = left_by_dead_worker(&h, "gone").await;
    let mut conn = h.redis_conn();
    // Its registry entry is gone, but its list was never handed back.
    let _: () = conn.zrem(h.keys().workers(), "gone").expect("zrem");
    let ctx = h.maintenance().await;
    let report = reconcile_once(&ctx, Duration::ZERO).await.expect("pass");
    assert_eq!(report.republished, 1, "{report:?}");
    let ready: Vec<String> = conn
        .lrange(h.keys().ready("default", 0), 0, -1)
        .expect("lrange");
    assert_eq!(ready, [stranded.id.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_in_a_live_remote_workers_list_are_not_held() {
    let h = Harness::new().await;
    // A remote worker (the worker protocol's) whose claim was cut off
    // after the fetch: it keeps calling, so it stays registered, but its
    // list holds only ids between fetch and claim.
    let remote = conveyor::WorkerId::remote("py-1");
    let stranded = left_by_dead_worker(&h, remote.as_str()).await;
    let seen = conveyor::broker::RemoteSeen {
        running: Some(0),
        ..conveyor::broker::RemoteSeen::default()
    };
    h.broker
        .touch_remote(remote.as_str(), &seen, Duration::from_secs(60))
        .await
        .expect("touch");
    let ctx = h.maintenance().await;
    let report = reconcile_once(&ctx, Duration::ZERO).await.expect("pass");
    assert_eq!(report.republished, 1, "{report:?}");
    let mut conn = h.redis_conn();
    let ready: Vec<String> = conn
        .lrange(h.keys().ready("default", 0), 0, -1)
        .expect("lrange");
    assert_eq!(ready, [stranded.id.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_that_cannot_be_read_back_does_not_stop_the_reconciler() {
    let h = Harness::new().await;
    // A number at the edge of the float range, and a large payload: the
    // reconciler reads neither.
    h.db.execute(
        "INSERT INTO jobs (id, type, payload) VALUES \
         (gen_random_uuid(), 'noop', '{\"x\": 1.7976931348623157e+308}'::jsonb), \
         (gen_random_uuid(), 'noop', jsonb_build_object('blob', repeat('x', 2000000)))",
    )
    .await;
    let ctx = h.maintenance().await;
    let report = reconcile_once(&ctx, Duration::ZERO).await.expect("pass");
    assert_eq!((report.checked, report.republished), (2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_stops_when_the_leaders_lease_has_lapsed() {
    let h = Harness::new().await;
    h.store
        .insert(&job("noop", json!({})))
        .await
        .expect("insert");
    let ctx = h.maintenance().await;
    // Another process takes the lease over (this one stalled past it).
    let mut conn = h.redis_conn();
    let _: () = conn.set(h.keys().leader(), "other").expect("set");
    assert!(
        !ctx.take_lead().await.expect("campaign"),
        "the other holds it"
    );
    let stopped = reconcile_once(&ctx, Duration::ZERO).await;
    assert!(
        matches!(stopped, Err(MaintenanceError::NotLeader)),
        "{stopped:?}"
    );
    let ready: i64 = conn.llen(h.keys().ready("default", 0)).expect("llen");
    assert_eq!(
        ready, 0,
        "nothing published by a process that does not lead"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_workers_leads_and_the_other_takes_over_when_it_stops() {
    let h = Harness::new().await;
    let first = h.spawn(h.settings("first"), worker::builtin_registry());
    let leader = || async {
        let mut conn = h.redis_conn();
        conn.get::<_, Option<String>>(h.keys().leader())
            .expect("get")
    };
    let elected = testkit::wait_until("a leader", Duration::from_secs(10), || async {
        leader().await
    })
    .await;
    assert_eq!(elected, first.id.as_str());
    let second = h.spawn(h.settings("second"), worker::builtin_registry());
    let second_id = second.id.clone();
    // A graceful stop gives the lease up; the other takes it at its next tick.
    first.stop().await;
    testkit::wait_until(
        "the other worker to lead",
        Duration::from_secs(10),
        || async { (leader().await.as_deref() == Some(second_id.as_str())).then_some(()) },
    )
    .await;
    // And the services still run: a job committed but never published runs.
    let orphan = h.insert_unpublished(job("noop", json!({}))).await;
    h.wait_for(id(&orphan), JobStatus::Completed, Duration::from_secs(15))
        .await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_ids_come_back_even_from_a_queue_that_left_the_known_set() {
    let h = Harness::new().await;
    let stranded = left_by_dead_worker(&h, "ghost").await;
    let mut conn = h.redis_conn();
    let keys = h.keys();
    // The queue was dropped as idle just as the id moved into the list of
    // a worker that had only just registered; its details name the queue.
    let _: () = conn.srem(keys.queues(), "default").expect("srem");
    let _: () = conn
        .hset(keys.worker_info("ghost"), "queues", "default")
        .expect("details");
    let ctx = h.maintenance().await;
    recover_dead_workers(&ctx).await.expect("recovered");
    let ready: Vec<String> = conn
        .lrange(keys.ready("default", 0), 0, -1)
        .expect("lrange");
    assert_eq!(
        ready,
        [stranded.id.to_string()],
        "found through its own queues"
    );
}
