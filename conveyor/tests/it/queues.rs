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
    let broker = crate::support::broker_for(&redis, 2);
    let keys = Keys::new(&redis.prefix);
    Setup {
        redis,
        broker,
        keys,
    }
}

impl Setup {
    fn conn(&self) -> testkit::RedisConnection {
        self.redis.connection().expect("connection")
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

/// A worker has processing lists only for the queues it serves, so only
/// those are counted; a worker whose details expired may have any.
#[tokio::test]
async fn depths_count_the_lists_of_the_workers_serving_each_queue() {
    let s = setup();
    let mut conn = s.conn();
    for (id, queues) in [("w1", &["a"][..]), ("w2", &["b"][..])] {
        s.broker
            .heartbeat(&worker(id, queues), Duration::from_secs(60))
            .await
            .expect("heartbeat");
    }
    // w3 registered, its details gone.
    s.broker
        .heartbeat(&worker("w3", &["a"]), Duration::from_secs(60))
        .await
        .expect("heartbeat");
    let () = conn.del(s.keys.worker_info("w3")).expect("del");
    for (queue, worker) in [("a", "w1"), ("a", "w3"), ("b", "w2")] {
        let () = conn
            .lpush(
                s.keys.processing(queue, worker),
                format!("{queue}-{worker}"),
            )
            .expect("lpush");
    }
    let () = conn.lpush(s.keys.ready("c", 0), "waiting").expect("lpush");
    let depths = s
        .broker
        .queue_depths_of(&["a".to_owned(), "b".to_owned(), "c".to_owned()])
        .await
        .expect("depths");
    let seen: Vec<(u64, u64)> = depths.iter().map(|d| (d.processing, d.workers)).collect();
    // a: w1's list and the silent w3's; one worker says it serves a.
    // b: w2's. c: nobody serves it, its id waits.
    assert_eq!(seen, [(2, 1), (1, 1), (0, 0)]);
    assert_eq!(depths[2].ready[0], 1);
    assert_eq!(s.broker.worker_count().await.expect("zcard"), 3);
}

/// The dashboard's counts: each batch once, however often it is sent;
/// the hour reads as sixty minutes, oldest first; old minutes go.
#[tokio::test]
async fn tallies_count_each_batch_once_and_keep_two_hours() {
    use conveyor::broker::{TALLY_MINUTES, Tally};
    let s = setup();
    let empty = s.broker.recent_tally().await.expect("read");
    assert_eq!(empty.len(), TALLY_MINUTES);
    assert!(empty.iter().all(|minute| minute.tally.is_empty()));

    let some = Tally {
        completed: 5,
        retried: 2,
        failed: 1,
    };
    assert!(s.broker.add_tally("w1", 1, &some).await.expect("add"));
    assert!(
        !s.broker.add_tally("w1", 1, &some).await.expect("resend"),
        "a resend"
    );
    assert!(
        s.broker
            .add_tally("w2", 1, &some)
            .await
            .expect("another sender")
    );
    assert!(
        s.broker
            .add_tally("w1", 2, &some)
            .await
            .expect("the next batch")
    );
    let mut hour = Tally::default();
    for minute in s.broker.recent_tally().await.expect("read") {
        hour.add(&minute.tally);
    }
    assert_eq!(
        hour,
        Tally {
            completed: 15,
            retried: 6,
            failed: 3
        }
    );
    assert_eq!(hour.failure_rate(), Some(9.0 / 24.0));

    // Minutes older than two hours are deleted when a new minute begins,
    // as are the batch numbers of senders silent that long.
    let mut conn = s.conn();
    let key = format!("{}:tally", s.redis.prefix);
    let (now, _): (i64, i64) = redis::cmd("TIME").query(&mut conn).expect("time");
    let minute = now / 60;
    for old in 0..400 {
        let () = conn
            .hset(&key, format!("{}:completed", minute - 121 - old), 1)
            .expect("hset");
    }
    let () = conn
        .hset(&key, "sent:gone", format!("7:{}", minute - 200))
        .expect("hset");
    let () = conn
        .hset(&key, format!("{}:completed", minute + 1), 1)
        .expect("hset");
    let () = conn
        .hdel(&key, format!("{minute}:completed"))
        .expect("hdel");
    // The first count of this minute (again) trims.
    assert!(s.broker.add_tally("w1", 3, &some).await.expect("add"));
    let fields: Vec<String> = conn.hkeys(&key).expect("hkeys");
    assert!(
        fields.len() < 20 && !fields.contains(&"sent:gone".to_owned()),
        "{fields:?}"
    );
    assert!(fields.contains(&"sent:w1".to_owned()), "{fields:?}");
}
