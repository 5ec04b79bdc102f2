//! The worker rides out Redis and PostgreSQL outages and resumes.

use std::time::Duration;

use conveyor::broker::RedisAddress;
use conveyor::{Broker, JobStatus, Store};
use serde_json::json;
use testkit::Proxy;
use testkit::proxy::target_of;

use crate::support::{Harness, id, job};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_survives_a_redis_outage_and_keeps_working() {
    let h = Harness::new().await;
    let proxy = Proxy::start(target_of(&h.redis.url)).await;
    let broker = Broker::connect(
        &RedisAddress::Single(proxy.url_through(&h.redis.url)),
        &h.redis.prefix,
        4,
    )
    .expect("broker");
    let worker = h.spawn_with(
        h.store.clone(),
        broker,
        h.settings("w"),
        worker::builtin_registry(),
    );
    let before = h.submit(job("noop", json!({}))).await;
    h.wait_for(id(&before), JobStatus::Completed, Duration::from_secs(10))
        .await;

    proxy.cut();
    let during = h.submit(job("noop", json!({}))).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        h.job(id(&during)).await.status,
        JobStatus::Queued,
        "no Redis, no delivery"
    );
    proxy.restore();

    h.wait_for(id(&during), JobStatus::Completed, Duration::from_secs(15))
        .await;
    let after = h.submit(job("noop", json!({}))).await;
    h.wait_for(id(&after), JobStatus::Completed, Duration::from_secs(10))
        .await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_holds_its_ids_through_a_postgres_outage_and_resumes() {
    let h = Harness::new().await;
    let proxy = Proxy::start(target_of(&h.db.url)).await;
    let store = Store::connect(&proxy.url_through(&h.db.url), 4)
        .await
        .expect("pool");
    let broker = crate::support::broker_for(&h.redis, 4);
    let worker = h.spawn_with(store, broker, h.settings("w"), worker::builtin_registry());
    let before = h.submit(job("noop", json!({}))).await;
    h.wait_for(id(&before), JobStatus::Completed, Duration::from_secs(10))
        .await;

    proxy.cut();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(h.submit(job("noop", json!({}))).await);
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    for job in &held {
        assert_eq!(h.job(id(job)).await.status, JobStatus::Queued);
    }
    proxy.restore();
    for job in &held {
        let done = h
            .wait_for(id(job), JobStatus::Completed, Duration::from_secs(20))
            .await;
        assert_eq!(done.attempts, 1, "nothing ran twice because of the outage");
    }
    worker.stop().await;
}
