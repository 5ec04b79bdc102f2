//! The custom-worker example builds and runs a handler of its own.

use std::time::Duration;

use conveyor::JobStatus;
use serde_json::json;

use crate::support::{Harness, id, job};

fn example_binary() -> std::path::PathBuf {
    // target/<profile>/deps/<this test> -> target/<profile>/examples/custom_worker
    let mut path = std::env::current_exe().expect("test binary path");
    path.pop();
    path.pop();
    path.push("examples");
    path.push("custom_worker");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_custom_worker_example_runs_its_own_task_type() {
    let binary = example_binary();
    if !binary.exists() {
        // `cargo test` builds examples, but a filtered run may not have.
        let built = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "worker",
                "--example",
                "custom_worker",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo");
        assert!(built.success(), "building the example failed");
    }
    assert!(binary.exists(), "{} was not built", binary.display());
    let h = Harness::new().await;
    let mut child = tokio::process::Command::new(&binary)
        .env("DATABASE_URL", &h.db.url)
        .env("REDIS_URL", &h.redis.url)
        .env("CONVEYOR_PREFIX", &h.redis.prefix)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("start example");
    let greeting = h.submit(job("greet", json!({"name": "Ada"}))).await;
    let done = h
        .wait_for(id(&greeting), JobStatus::Completed, Duration::from_secs(20))
        .await;
    assert_eq!(done.result, Some(json!({"greeting": "Hello, Ada!"})));

    let rude = h.submit(job("greet", json!({"name": ""}))).await;
    let failed = h
        .wait_for(id(&rude), JobStatus::Failed, Duration::from_secs(20))
        .await;
    assert_eq!(
        failed.error_message.as_deref(),
        Some("name must not be empty")
    );

    let pid = child.id().expect("pid") as i32;
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("example exits after SIGTERM")
        .expect("wait");
    assert!(status.success(), "{status}");
}
