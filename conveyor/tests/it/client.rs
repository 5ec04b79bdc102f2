//! The client owns the order of writes: commit then publish, whatever the
//! caller does; lost replies settled by trying again; canceled jobs leave
//! Redis.

use std::time::Duration;

use conveyor::{Broker, Canceled, Client, Inserted, JobId, NewJob, Schedule, Store};
use redis::Commands;
use serde_json::json;
use testkit::{Proxy, TestDb, TestRedis, wait_until};

const DEADLINE: Duration = Duration::from_secs(5);

struct Setup {
    db: TestDb,
    redis: TestRedis,
    client: Client,
}

async fn setup() -> Setup {
    let db = TestDb::new().await;
    let redis = TestRedis::new();
    let broker = crate::support::broker_for(&redis, 4);
    let client = Client::new(Store::new(db.conn.clone()), broker);
    Setup { db, redis, client }
}

impl Setup {
    fn conn(&self) -> testkit::RedisConnection {
        self.redis.connection().expect("connection")
    }

    fn ready(&self, queue: &str, priority: i16) -> Vec<String> {
        let key = conveyor::Keys::new(&self.redis.prefix).ready(queue, priority);
        self.conn().lrange(key, 0, -1).expect("lrange")
    }

    fn delayed(&self, queue: &str) -> Vec<String> {
        let key = conveyor::Keys::new(&self.redis.prefix).delayed(queue);
        self.conn().zrange(key, 0, -1).expect("zrange")
    }

    /// Enqueues a no-op job due in `seconds` on the default queue.
    async fn enqueue_delayed(&self, seconds: u32) -> conveyor::Job {
        let mut job = NewJob::new("noop", json!({}));
        job.schedule = Schedule::DelaySeconds(seconds);
        self.client
            .enqueue(job)
            .await
            .expect("enqueue")
            .job()
            .clone()
    }

    async fn rows(&self) -> i64 {
        self.db.count("SELECT count(*) AS n FROM jobs").await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_goes_away_after_enqueueing_does_not_stop_the_publish() {
    let s = setup().await;
    for n in 0..20 {
        let job = NewJob::new("noop", json!({"n": n}));
        let id = job.id;
        // One poll starts the work; then the caller is gone (an HTTP client
        // hanging up drops its handler's future exactly like this).
        let abandoned = futures::FutureExt::now_or_never(s.client.enqueue(job));
        assert!(
            abandoned.is_none(),
            "one poll cannot have finished the enqueue"
        );
        wait_until(&format!("job {id} to be published"), DEADLINE, || async {
            s.ready("default", 0)
                .contains(&id.to_string())
                .then_some(())
        })
        .await;
    }
    assert_eq!(s.rows().await, 20);
}

#[tokio::test(flavor = "current_thread")]
async fn a_committed_insert_whose_reply_was_lost_is_answered_created_once() {
    let logs = testkit::LogCapture::default();
    let _guard = logs.install();
    let s = setup().await;
    let proxy = Proxy::start(testkit::proxy::target_of(&s.db.url)).await;
    // Plain text, so the proxy can see which reply is the insert's.
    let url = format!("{}?sslmode=disable", proxy.url_through(&s.db.url));
    let store = Store::connect(&url, 1).await.expect("pool");
    let broker = crate::support::broker_for(&s.redis, 2);
    let client = Client::new(store, broker);
    // Warm the one connection, so the next insert is one round trip whose
    // reply comes after the commit.
    let warm = client.enqueue(NewJob::new("noop", json!({}))).await;
    assert!(matches!(warm, Ok(Inserted::Created(_))));

    // The insert's reply (its command tag) is lost after the commit.
    proxy.lose_next_reply_containing(b"INSERT 0");
    let job = NewJob::new("noop", json!({"lost": "reply"}));
    let id = job.id;
    let answer = client.enqueue(job).await.expect("settled, not 503");
    let Inserted::Created(row) = answer else {
        panic!("the committed insert is reported as created, got {answer:?}");
    };
    assert_eq!(JobId::from(row.id), id);
    assert!(
        logs.text().contains("the reply to an insert was lost"),
        "the lost reply was met and settled: {}",
        logs.text()
    );
    assert_eq!(s.rows().await, 2, "one row for the job, not two");
    assert_eq!(
        s.ready("default", 0)
            .iter()
            .filter(|held| **held == id.to_string())
            .count(),
        1,
        "published once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_job_enqueued_twice_is_one_row() {
    let s = setup().await;
    let job = NewJob::new("noop", json!({}));
    let first = s.client.enqueue(job.clone()).await.expect("first");
    let again = s.client.enqueue(job.clone()).await.expect("again");
    assert_eq!(first, again, "the second try finds the first one's row");
    let mut changed = job;
    changed.payload = json!({"other": true});
    let conflict = s.client.enqueue(changed).await.expect("ran");
    assert!(matches!(conflict, Inserted::Conflict(_)), "{conflict:?}");
    assert_eq!(s.rows().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceling_a_waiting_job_takes_its_id_out_of_redis() {
    let s = setup().await;
    let mut later = NewJob::new("noop", json!({}));
    later.schedule = Schedule::DelaySeconds(365 * 24 * 3600);
    later.queue = "nobody-serves".to_owned();
    let mut ready = NewJob::new("noop", json!({}));
    ready.queue = "nobody-serves".to_owned();
    ready.priority = 4;
    let later = s.client.enqueue(later).await.expect("later").job().clone();
    let ready = s.client.enqueue(ready).await.expect("ready").job().clone();
    assert_eq!(s.delayed("nobody-serves").len(), 1);
    assert_eq!(s.ready("nobody-serves", 4), [ready.id.to_string()]);

    for job in [&later, &ready] {
        let canceled = s.client.cancel(JobId::from(job.id)).await.expect("cancel");
        assert!(matches!(canceled, Canceled::Canceled(_)), "{canceled:?}");
    }
    assert!(
        s.delayed("nobody-serves").is_empty(),
        "no member left for a year"
    );
    assert!(
        s.ready("nobody-serves", 4).is_empty(),
        "no id left in an unserved lane"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_is_measured_on_the_databases_clock() {
    let s = setup().await;
    let row = s.enqueue_delayed(60).await;
    assert_eq!(
        (row.run_at - row.created_at).num_seconds(),
        60,
        "run_at is the database's now() plus the delay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_job_is_never_scored_before_its_run_at() {
    // The promoter moves ids whose score has passed by Redis's clock in
    // whole milliseconds; `run_at` has microseconds. A score rounded down
    // delivered jobs up to a millisecond early, and their claim (by
    // PostgreSQL's clock) sent them back for another promoter pass.
    let s = setup().await;
    let key = conveyor::Keys::new(&s.redis.prefix).delayed("default");
    for _ in 0..5 {
        let row = s.enqueue_delayed(3600).await;
        let member = conveyor::broker::delayed_member(&row.id.to_string(), row.priority);
        let score: f64 = s.conn().zscore(&key, member).expect("zscore");
        let score_micros = score as i64 * 1_000;
        let run_at = row.run_at.timestamp_micros();
        assert!(
            (run_at..run_at + 1_000).contains(&score_micros),
            "score {score} ms for run_at {run_at} µs"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_cancel_or_retry_repairs_what_a_lost_reply_left_in_redis() {
    let s = setup().await;
    let later = s.enqueue_delayed(3600).await;
    // The cancel committed, but its reply was lost before the id left Redis.
    let store = s.client.store();
    assert!(
        store
            .cancel(JobId::from(later.id))
            .await
            .expect("cancel")
            .is_won()
    );
    assert_eq!(s.delayed("default").len(), 1);
    // The client asks again: the job is already canceled, and its id goes.
    let again = s
        .client
        .cancel(JobId::from(later.id))
        .await
        .expect("cancel");
    assert!(matches!(again, Canceled::Finished(_)), "{again:?}");
    assert!(s.delayed("default").is_empty());

    // The same for a manual retry whose reply was lost before the publish.
    assert!(
        store
            .requeue(JobId::from(later.id))
            .await
            .expect("requeue")
            .is_won()
    );
    assert!(s.ready("default", 0).is_empty());
    let again = s.client.retry(JobId::from(later.id)).await.expect("retry");
    assert!(matches!(again, conveyor::Transition::Lost(_)), "{again:?}");
    assert_eq!(s.ready("default", 0), [later.id.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_redis_missed_is_tried_again_without_waiting_for_the_reconciler() {
    let s = setup().await;
    let proxy = Proxy::start(testkit::proxy::target_of(&s.redis.url)).await;
    let broker = Broker::connect(
        &conveyor::broker::RedisAddress::Single(proxy.url_through(&s.redis.url)),
        &s.redis.prefix,
        2,
    )
    .expect("broker");
    let client = Client::new(Store::new(s.db.conn.clone()), broker);
    proxy.cut();
    let job = client
        .enqueue(NewJob::new("noop", json!({})))
        .await
        .expect("accepted with Redis down")
        .job()
        .clone();
    assert!(s.ready("default", 0).is_empty());
    // Redis comes back; no reconciler runs here, yet the job reaches its lane.
    proxy.restore();
    wait_until("the job to be published", DEADLINE, || async {
        s.ready("default", 0)
            .contains(&job.id.to_string())
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_postgres_refuses_fails_alone_in_a_batch() {
    use sea_orm::ConnectionTrait;
    let s = setup().await;
    // A value validation lets through but the table refuses, standing in
    // for any such value: the batch statement fails for this one job.
    s.db.conn
        .execute_unprepared(
            "ALTER TABLE jobs ADD CONSTRAINT test_refuse CHECK (NOT payload ? 'refuse')",
        )
        .await
        .expect("constraint");
    let jobs = vec![
        NewJob::new("noop", json!({"n": 1})),
        NewJob::new("noop", json!({"refuse": true})),
        NewJob::new("noop", json!({"n": 3})),
    ];
    let ids: Vec<String> = jobs.iter().map(|job| job.id.to_string()).collect();
    let outcomes = s.client.enqueue_many(jobs).await.expect("not an outage");
    assert!(
        matches!(outcomes[0], Ok(Inserted::Created(_))),
        "{outcomes:?}"
    );
    assert!(outcomes[1].is_err(), "{outcomes:?}");
    assert!(
        matches!(outcomes[2], Ok(Inserted::Created(_))),
        "{outcomes:?}"
    );
    assert_eq!(s.rows().await, 2);
    let mut ready = s.ready("default", 0);
    ready.sort();
    let mut want = vec![ids[0].clone(), ids[2].clone()];
    want.sort();
    assert_eq!(
        ready, want,
        "the created jobs are published, the refused one is not"
    );
}
