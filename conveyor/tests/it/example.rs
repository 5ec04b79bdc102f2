//! The enqueue example: a Rust application enqueues without HTTP.

use redis::Commands;

use crate::support::store;

fn example_binary() -> std::path::PathBuf {
    // target/<profile>/deps/<this test> -> target/<profile>/examples/enqueue
    let mut path = std::env::current_exe().expect("test binary path");
    path.pop();
    path.pop();
    path.push("examples");
    path.push("enqueue");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enqueue_example_stores_and_publishes_a_job() {
    let binary = example_binary();
    if !binary.exists() {
        // `cargo test` builds examples, but a filtered run may not have.
        let built = std::process::Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "conveyor", "--example", "enqueue"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo");
        assert!(built.success(), "building the example failed");
    }
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
