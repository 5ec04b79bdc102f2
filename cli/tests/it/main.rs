//! `conveyor`, run as a user runs it, against one test's database and
//! Redis prefix.

use std::process::Output;

use conveyor::{Broker, Client, JobStatus, NewJob, Store};
use serde_json::{Value, json};
use testkit::{TestDb, TestRedis};

struct Setup {
    db: TestDb,
    redis: TestRedis,
    client: Client,
}

impl Setup {
    async fn new() -> Setup {
        let db = TestDb::new().await;
        let redis = TestRedis::new();
        let client = Client::new(
            Store::new(db.conn.clone()),
            Broker::connect(
                &conveyor::broker::RedisAddress::new(&redis.url, redis.cluster).expect("REDIS_URL"),
                &redis.prefix,
                2,
            )
            .expect("broker"),
        );
        Setup { db, redis, client }
    }

    /// Runs `conveyor args...` to the end.
    async fn run(&self, args: &[&str]) -> Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_conveyor"))
            .args(args)
            .env("DATABASE_URL", &self.db.url)
            .env("REDIS_URL", &self.redis.url)
            .env("CONVEYOR_PREFIX", &self.redis.prefix)
            .output()
            .await
            .expect("run conveyor")
    }

    /// Runs it with `--json`, which must succeed; its document.
    async fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let output = self.run(&all).await;
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("one JSON document")
    }

    async fn submit(&self, queue: &str) -> conveyor::Job {
        let mut new = NewJob::new("demo", json!({}));
        new.queue = queue.to_owned();
        self.client
            .enqueue(new)
            .await
            .expect("enqueue")
            .job()
            .clone()
    }
}

#[tokio::test]
async fn every_subcommand_has_help() {
    let setup = Setup::new().await;
    for args in [
        vec!["--help"],
        vec!["jobs", "--help"],
        vec!["jobs", "list", "--help"],
        vec!["jobs", "show", "--help"],
        vec!["jobs", "retry", "--help"],
        vec!["jobs", "cancel", "--help"],
        vec!["queues", "--help"],
        vec!["queues", "list", "--help"],
        vec!["queues", "pause", "--help"],
        vec!["queues", "resume", "--help"],
        vec!["queues", "configure", "--help"],
        vec!["recover-stuck", "--help"],
    ] {
        let output = setup.run(&args).await;
        assert!(output.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("Usage: conveyor"),
            "{args:?}"
        );
    }
}

#[tokio::test]
async fn queues_are_paused_configured_listed_and_resumed() {
    let setup = Setup::new().await;
    setup.submit("mail").await;
    let paused = setup.json(&["queues", "pause", "mail"]).await;
    assert_eq!(paused["paused"], true);
    let configured = setup
        .json(&[
            "queues",
            "configure",
            "mail",
            "--concurrency-limit",
            "3",
            "--rate-limit",
            "2.5",
            "--retain-completed",
            "2d",
            "--retain-failed",
            "forever",
        ])
        .await;
    assert_eq!(
        (
            &configured["paused"],
            &configured["concurrency_limit"],
            &configured["rate_limit"]
        ),
        (&json!(true), &json!(3), &json!(2.5))
    );
    assert_eq!(
        (
            &configured["retain_completed_secs"],
            &configured["retain_failed_secs"]
        ),
        (&json!(172_800), &json!(0))
    );
    let listed = setup.json(&["queues", "list"]).await;
    let mail = listed["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .find(|queue| queue["name"] == "mail")
        .expect("mail listed")
        .clone();
    assert_eq!(
        (&mail["ready"], &mail["settings"]["paused"]),
        (&json!(1), &json!(true))
    );
    let resumed = setup.json(&["queues", "resume", "mail"]).await;
    assert_eq!(
        (&resumed["paused"], &resumed["concurrency_limit"]),
        (&json!(false), &json!(3))
    );

    let table = setup.run(&["queues", "list"]).await;
    assert!(String::from_utf8_lossy(&table.stdout).contains("mail"));
    let bad = setup
        .run(&["queues", "configure", "mail", "--concurrency-limit", "0"])
        .await;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("concurrency_limit"));
    let bad = setup.run(&["queues", "pause", "Not A Queue"]).await;
    assert!(!bad.status.success());
}

#[tokio::test]
async fn jobs_are_listed_shown_canceled_and_retried_one_by_one_or_by_filter() {
    let setup = Setup::new().await;
    let first = setup.submit("a").await;
    setup.submit("a").await;
    setup.submit("b").await;

    let listed = setup.json(&["jobs", "list", "--queue", "a"]).await;
    assert_eq!(
        (
            listed["count"].as_u64(),
            listed["items"].as_array().map(Vec::len)
        ),
        (Some(2), Some(2))
    );
    let paged = setup.json(&["jobs", "list", "--limit", "1"]).await;
    let cursor = paged["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let next = setup
        .json(&["jobs", "list", "--limit", "1", "--after", &cursor])
        .await;
    assert_ne!(next["items"][0]["id"], paged["items"][0]["id"]);

    let id = first.id.to_string();
    let canceled = setup.json(&["jobs", "cancel", &id]).await;
    assert_eq!(canceled["items"][0]["status"], "canceled");
    // Cancelling it again fails, saying why, with a non-zero exit.
    let again = setup.run(&["jobs", "cancel", &id]).await;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("already canceled"));

    let shown = setup.json(&["jobs", "show", &id]).await;
    assert_eq!(shown["status"], "canceled");
    assert!(shown["attempts_history"].as_array().is_some());
    let retried = setup.json(&["jobs", "retry", &id]).await;
    assert_eq!(retried["items"][0]["status"], "queued");

    let bulk = setup
        .json(&[
            "jobs",
            "cancel",
            "--matching",
            "--queue",
            "a",
            "--limit",
            "1",
        ])
        .await;
    assert_eq!((&bulk["changed"], &bulk["more"]), (&json!(1), &json!(true)));
    let bulk = setup
        .json(&["jobs", "cancel", "--matching", "--queue", "a"])
        .await;
    assert_eq!(bulk["changed"], 1);
    let bulk = setup
        .json(&["jobs", "retry", "--matching", "--status", "canceled"])
        .await;
    assert_eq!(bulk["changed"], 2);
    let store = setup.client.store();
    let waiting = store
        .count_matching(
            &conveyor::store::ListFilter {
                status: Some(JobStatus::Queued),
                ..Default::default()
            },
            100,
        )
        .await
        .expect("count");
    assert_eq!(waiting.count, 3);

    let unfiltered = setup.run(&["jobs", "cancel", "--matching"]).await;
    assert!(!unfiltered.status.success());
    assert!(String::from_utf8_lossy(&unfiltered.stderr).contains("at least one filter"));
    let neither = setup.run(&["jobs", "retry"]).await;
    assert!(!neither.status.success());
    assert!(String::from_utf8_lossy(&neither.stderr).contains("--matching"));
    let unknown = setup
        .run(&["jobs", "show", &conveyor::JobId::new().to_string()])
        .await;
    assert!(!unknown.status.success());
    let malformed = setup.run(&["jobs", "show", "not-an-id"]).await;
    assert_eq!(malformed.status.code(), Some(2), "a usage error");
}

#[tokio::test]
async fn recover_stuck_fails_jobs_running_too_long() {
    let setup = Setup::new().await;
    let stuck = setup.submit("a").await;
    setup
        .db
        .execute(&format!(
            "UPDATE jobs SET status = 'running', attempts = 1, worker_id = 'gone', \
             started_at = now() - interval '2 hours', lease_expires_at = now() + interval '1 hour' \
             WHERE id = '{}'",
            stuck.id
        ))
        .await;
    let dry = setup.run(&["recover-stuck", "--dry-run"]).await;
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(String::from_utf8_lossy(&dry.stdout).contains(&stuck.id.to_string()));
    let output = setup
        .run(&["recover-stuck", "--timeout-minutes", "60"])
        .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let job = setup
        .client
        .store()
        .find(conveyor::JobId::from(stuck.id))
        .await
        .expect("find")
        .expect("job");
    assert_eq!(job.status, JobStatus::Failed);
}
