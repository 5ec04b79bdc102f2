//! The examples: a Rust application enqueues without HTTP, alone or
//! inside its own transaction.

use redis::Commands;

use crate::support::store;

/// The example `name`, built if a filtered run has not built it.
fn example_binary(name: &str) -> std::path::PathBuf {
    // target/<profile>/deps/<this test> -> target/<profile>/examples/<name>
    let mut path = std::env::current_exe().expect("test binary path");
    path.pop();
    path.pop();
    path.push("examples");
    path.push(name);
    if !path.exists() {
        let built = std::process::Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "conveyor", "--example", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo");
        assert!(built.success(), "building the example failed");
    }
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enqueue_example_stores_and_publishes_a_job() {
    let binary = example_binary("enqueue");
    let (db, store) = store().await;
    let redis = testkit::TestRedis::new();
    let run = |key: &str| {
        std::process::Command::new(&binary)
            .args(["greet", r#"{"name": "Ada"}"#, key])
            .env("DATABASE_URL", &db.url)
            .env("REDIS_URL", &redis.url)
            .env("CONVEYOR_PREFIX", &redis.prefix)
            .output()
            .expect("run the example")
    };
    let first = run("example-1");
    assert!(first.status.success(), "{first:?}");
    let stdout = String::from_utf8_lossy(&first.stdout);
    let id = stdout
        .trim()
        .strip_prefix("created ")
        .unwrap_or_else(|| panic!("unexpected output: {stdout}"))
        .to_owned();
    let job = store
        .find(id.parse().expect("a job id"))
        .await
        .expect("find")
        .expect("the job is stored");
    assert_eq!(
        (job.task_type.as_str(), job.payload["name"].as_str()),
        ("greet", Some("Ada"))
    );
    let lane = conveyor::Keys::new(&redis.prefix).ready("default", 0);
    let mut conn = redis.connection().expect("connection");
    let published: Vec<String> = conn.lrange(lane, 0, -1).expect("lrange");
    assert_eq!(published, std::slice::from_ref(&id));

    let again = run("example-1");
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        format!("replayed {id}")
    );
}

#[tokio::test]
async fn the_transactional_example_commits_the_order_and_its_job_together_or_neither() {
    let binary = example_binary("transactional");
    let (db, store) = store().await;
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&binary)
            .args(args)
            .env("DATABASE_URL", &db.url)
            .output()
            .expect("run the example");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let committed = run(&["42"]);
    let id = committed
        .strip_prefix("committed ")
        .unwrap_or_else(|| panic!("unexpected output: {committed}"));
    let job = store
        .find(id.parse().expect("a job id"))
        .await
        .expect("find")
        .expect("the job is stored");
    assert_eq!(job.payload["order"], 42);
    assert_eq!(
        db.count("SELECT count(*) AS n FROM orders WHERE id = 42")
            .await,
        1
    );

    let rolled_back = run(&["43", "--roll-back"]);
    let id = rolled_back
        .strip_prefix("rolled back ")
        .unwrap_or_else(|| panic!("unexpected output: {rolled_back}"));
    assert!(
        store
            .find(id.parse().expect("a job id"))
            .await
            .expect("find")
            .is_none()
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM orders WHERE id = 43")
            .await,
        0
    );
    assert_eq!(db.count("SELECT count(*) AS n FROM jobs").await, 1);
}
