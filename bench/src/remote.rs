//! The `remote-drain` scenario: a backlog drained by workers of the worker
//! protocol (docs/worker-protocol.md) instead of `conveyor-worker`: tasks
//! in this process claim jobs over HTTP, 50 at a time, and report each
//! completed, as a worker in another language whose handlers take no time
//! would. What it measures is the API's side of the protocol: claims,
//! fenced completions, acknowledgements.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::bail;
use sea_orm::DatabaseConnection;
use serde_json::{Value, json};

use crate::Args;
use crate::scenarios::{DEADLINE, client, completed, submit_batches};
use crate::stack::count;

/// Remote workers (tasks here), each claiming this many jobs at a time.
const REMOTE_WORKERS: usize = 8;
const CLAIM_MAX: usize = 50;

/// Pre-loads `--remote-count` noop jobs and drains them over the worker
/// protocol: jobs/s.
pub async fn remote_drain(
    args: &Args,
    db: &DatabaseConnection,
) -> anyhow::Result<Vec<(&'static str, f64)>> {
    let already = completed(db).await?;
    submit_batches(args, args.remote_count, 8).await?;
    let loaded =
        count(db, "SELECT count(*) AS n FROM jobs WHERE status = 'queued'").await? as usize;
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..REMOTE_WORKERS {
        let (client, base, done) = (client(), args.api_url.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let worker = format!("bench-remote-{n}");
            while done.load(Ordering::Relaxed) < loaded && started.elapsed() < DEADLINE {
                let response = client
                    .post(format!("{base}/jobs/claim"))
                    .json(&json!({"worker": worker, "max": CLAIM_MAX, "wait_ms": 200}))
                    .send()
                    .await?;
                if response.status() == 204 {
                    continue;
                }
                if response.status() != 200 {
                    bail!("POST /jobs/claim answered {}", response.status());
                }
                let claimed: Value = response.json().await?;
                let jobs = claimed["jobs"].as_array().cloned().unwrap_or_default();
                let reports = jobs.iter().map(|job| {
                    let (client, base, worker) = (&client, &base, &worker);
                    async move {
                        let id = job["id"].as_str().unwrap_or_default();
                        let response = client
                            .post(format!("{base}/jobs/{id}/complete"))
                            .json(&json!({"worker": worker, "token": job["token"], "result": null}))
                            .send()
                            .await?;
                        if response.status() != 200 {
                            bail!("POST /jobs/{id}/complete answered {}", response.status());
                        }
                        Ok(())
                    }
                });
                for report in futures::future::join_all(reports).await {
                    report?;
                }
                done.fetch_add(jobs.len(), Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    let finished = completed(db).await? - already;
    if finished < loaded as i64 {
        bail!("the remote drain completed {finished} of {loaded} jobs before its deadline");
    }
    Ok(vec![(
        "remote_drain_jobs_per_sec",
        loaded as f64 / elapsed.as_secs_f64(),
    )])
}
