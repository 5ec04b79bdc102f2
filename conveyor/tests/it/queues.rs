//! The set of known queues: idle queues leave it, queues holding an id
//! anywhere stay, and depths come from the registry, not a keyspace scan.

use std::time::Duration;

use conveyor::broker::WorkerInfo;
use conveyor::{Broker, Keys};
use redis::Commands;
use testkit::TestRedis;

fn worker(id: &str, queues: &[&str]) -> WorkerInfo {
    WorkerInfo {
        id: id.to_owned(),
        host: "test".to_owned(),
        pid: 1,
        queues: queues.iter().map(|queue| (*queue).to_owned()).collect(),
        concurrency: 1,
        started_at: "2026-11-29T00:00:00Z".to_owned(),
        running: 0,
        heartbeat: std::time::Duration::from_secs(3),
    }
}

struct Setup {
    redis: TestRedis,
    broker: Broker,
    keys: Keys,
}

fn setup() -> Setup {
    let redis = TestRedis::new();
    let broker = Broker::connect(&redis.url, &redis.prefix, 2).expect("broker");
    let keys = Keys::new(&redis.prefix);
    Setup {
        redis,
        broker,
        keys,
    }
}

impl Setup {
    fn conn(&self) -> redis::Connection {
        redis::Client::open(self.redis.url.as_str())
            .expect("client")
            .get_connection()
            .expect("connection")
    }
}

#[tokio::test]
async fn idle_queues_leave_the_set_and_queues_holding_an_id_stay() {
    let s = setup();
    let mut conn = s.conn();
    s.broker
        .heartbeat(&worker("w1", &["held"]), Duration::from_secs(60))
        .await
        .expect("heartbeat");
    let () = conn.lpush(s.keys.ready("ready", 3), "id-1").expect("lpush");
    let () = conn
        .zadd(s.keys.delayed("later"), "id-2:0", 1)
        .expect("zadd");
    let () = conn
        .lpush(s.keys.processing("held", "w1"), "id-3")
        .expect("lpush");
    let names: Vec<String> = ["ready", "later", "held", "empty", "drained"]
        .iter()
        .map(|name| (*name).to_owned())
        .collect();
    s.broker.add_queues(&names).await.expect("sadd");

    assert_eq!(s.broker.forget_idle_queues().await.expect("forget"), 2);
    let mut known = s.broker.known_queues().await.expect("known");
    known.sort();
    assert_eq!(known, ["held", "later", "ready"]);

    assert_eq!(s.broker.known_queue_count().await.expect("scard"), 3);
    let mut some = s.broker.some_known_queues(10).await.expect("sscan");
    some.sort();
    assert_eq!(some, known);
    assert_eq!(s.broker.some_known_queues(1).await.expect("sscan").len(), 1);
    assert_eq!(s.broker.served_queues().await.expect("served"), ["held"]);

    let depths = s
        .broker
        .queue_depths_of(&["ready".to_owned(), "held".to_owned(), "empty".to_owned()])
        .await
        .expect("depths");
    assert_eq!(depths[0].ready[3], 1);
    assert_eq!(depths[1].processing, 1, "found through the registry");
    assert_eq!(depths[2].ready.iter().sum::<u64>(), 0);

    // The next publish brings a queue back.
    let () = conn.lpush(s.keys.ready("empty", 0), "id-4").expect("lpush");
    s.broker
        .add_queues(&["empty".to_owned()])
        .await
        .expect("sadd");
    assert_eq!(s.broker.forget_idle_queues().await.expect("forget"), 0);
    assert!(
        s.broker
            .known_queues()
            .await
            .expect("known")
            .contains(&"empty".to_owned())
    );
}
