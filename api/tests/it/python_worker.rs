//! The Python example worker (`examples/python/conveyor_worker.py`, the
//! standard library only) against the API: it claims, heartbeats,
//! completes, fails, is canceled, and is SIGKILLed mid-job, whose job
//! then runs again elsewhere.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use testkit::wait_until;

use crate::remote::{app_with, quick, run_rescuer};
use crate::support::TestApp;

/// The example worker's process, SIGKILLed when dropped (a failing test
/// must not leave it running).
struct PythonWorker(Child);

impl PythonWorker {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for PythonWorker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts the example worker on queue `python` as `name`.
fn python_worker(app: &TestApp, name: &str) -> PythonWorker {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/python/conveyor_worker.py"
    );
    let child = Command::new("python3")
        .arg(script)
        .env("CONVEYOR_URL", &app.base)
        .env("CONVEYOR_QUEUES", "python")
        .env("CONVEYOR_WORKER_NAME", name)
        .env("CONVEYOR_CONCURRENCY", "4")
        .env("CONVEYOR_SHUTDOWN_GRACE_SECS", "0.5")
        .stdin(Stdio::null())
        .spawn()
        .expect("python3 runs the example worker (install python3)");
    PythonWorker(child)
}

async fn job_when(app: &TestApp, id: &Value, done: impl Fn(&Value) -> bool) -> Value {
    let path = format!("/jobs/{}", id.as_str().expect("id"));
    wait_until(
        &format!("job {id} to get there"),
        Duration::from_secs(30),
        || async {
            let (status, job) = app.get(&path).await;
            (status == 200 && done(&job)).then_some(job)
        },
    )
    .await
}

fn finished(job: &Value) -> bool {
    matches!(
        job["status"].as_str(),
        Some("completed" | "failed" | "canceled")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_runs_fails_and_survives_a_sigkill() {
    // Leases shorter than the sleeps: only heartbeats keep them.
    let app = app_with(quick(Duration::from_secs(3))).await;
    let _rescuer = run_rescuer(&app);
    let mut worker = python_worker(&app, "py-a");
    let create = |task: &str, payload: Value| {
        app.create(json!({"queue": "python", "type": task, "payload": payload, "max_attempts": 3}))
    };

    let echo = create("py.echo", json!({"hello": "world"})).await;
    let flaky = create("py.flaky", json!({"succeed_on": 2})).await;
    let reject = create("py.reject", json!({"reason": "bad input"})).await;
    let long = create("py.sleep", json!({"ms": 4500})).await;
    let to_cancel = create("py.sleep", json!({"ms": 20000})).await;

    let done = job_when(&app, &echo["id"], finished).await;
    assert_eq!(
        (done["status"].as_str(), &done["result"]),
        (Some("completed"), &json!({"hello": "world"}))
    );
    let done = job_when(&app, &flaky["id"], finished).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 2, "retried once, then succeeded");
    let done = job_when(&app, &reject["id"], finished).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(
        (done["attempts"].as_i64(), done["error_message"].as_str()),
        (Some(1), Some("bad input"))
    );
    // Longer than the lease: its heartbeats kept it, and reported progress.
    let done = job_when(&app, &long["id"], finished).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 1, "never lost its lease");
    let slept = done["progress"]["slept_ms"].as_i64().unwrap_or_default();
    assert!(
        (1..=4500).contains(&slept),
        "a heartbeat carried its progress: {done}"
    );

    // A cancel reaches it through the next heartbeat.
    job_when(&app, &to_cancel["id"], |job| job["status"] == "running").await;
    let id = to_cancel["id"].as_str().expect("id");
    let (status, _) = app.post(&format!("/jobs/{id}/cancel")).await;
    assert_eq!(status, 202);
    let done = job_when(&app, &to_cancel["id"], finished).await;
    assert_eq!(done["status"], "canceled", "{done}");
    assert_eq!(
        done["error_message"],
        Value::Null,
        "ended by the heartbeat, not by a lapsed lease: {done}"
    );

    // SIGKILL mid-job: the lease runs out, the rescuer takes the job back,
    // and another worker runs it again.
    let doomed = create("py.sleep", json!({"ms": 3000})).await;
    job_when(&app, &doomed["id"], |job| job["status"] == "running").await;
    worker.kill();
    let rescued = job_when(&app, &doomed["id"], |job| job["status"] != "running").await;
    assert_eq!(
        rescued["error_message"],
        conveyor::store::LEASE_EXPIRED_ERROR
    );
    let mut second = python_worker(&app, "py-b");
    let done = job_when(&app, &doomed["id"], finished).await;
    second.kill();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 2);
    assert_eq!(done["worker_id"], "remote:py-b");
    drop(second);

    // SIGTERM: what still runs when the grace period ends is put back,
    // its attempt not counted.
    let mut third = python_worker(&app, "py-c");
    let held = create("py.sleep", json!({"ms": 60000})).await;
    // Running under py-c (a claim py-b left waiting when it was killed may
    // take it first, and put it back: its caller is gone).
    job_when(&app, &held["id"], |job| {
        job["status"] == "running" && job["worker_id"] == "remote:py-c"
    })
    .await;
    let terminated = Command::new("kill")
        .args(["-TERM", &third.0.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(terminated.success());
    let exited = third.0.wait().expect("wait");
    assert!(exited.success(), "a clean exit after SIGTERM: {exited:?}");
    let put_back = job_when(&app, &held["id"], |job| job["status"] != "running").await;
    assert_eq!(
        (put_back["status"].as_str(), put_back["attempts"].as_i64()),
        (Some("retrying"), Some(0)),
        "released, the attempt not counted: {put_back}"
    );
}
