//! Taking ids from Redis: sweep the lanes highest first, block only when
//! all are empty.

use std::sync::Arc;

use backoff::backoff::Backoff;
use redis::aio::MultiplexedConnection;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use std::collections::HashMap;

use conveyor::{Job, JobId};

use crate::execute::{process, run_claimed};
use crate::runtime::Runtime;
use crate::settings::MAX_FETCH_BATCH;

/// Fetches ids while a concurrency slot is free, and starts a task for each,
/// until `stopping` fires. Returns the tasks still running.
pub async fn fetch_loop(
    runtime: Arc<Runtime>,
    stopping: CancellationToken,
    give_up: CancellationToken,
) -> JoinSet<()> {
    let slots = Arc::new(Semaphore::new(runtime.settings.concurrency));
    let mut tasks = JoinSet::new();
    let mut conn: Option<MultiplexedConnection> = None;
    let mut reconnect = runtime.settings.retry.backoff();
    let mut last_adoption = tokio::time::Instant::now();
    let mut adoption_due = false;
    while !stopping.is_cancelled() {
        while tasks.try_join_next().is_some() {}
        // Wait for a free slot, then take every free slot, up to a batch.
        let first = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = stopping.cancelled() => break,
        };
        let mut permits = vec![first];
        while permits.len() < MAX_FETCH_BATCH {
            match slots.clone().try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }

        // After a Redis error, and now and then, look for ids in this
        // worker's own processing lists that no task of it handles: a reply
        // lost with a dropped connection (the server moved the id, we never
        // heard of it), or a claim abandoned on an error. They are ours.
        if adoption_due || last_adoption.elapsed() >= runtime.settings.lease {
            if adopt_orphans(&runtime, &mut permits, &mut tasks, &give_up).await {
                adoption_due = false;
                last_adoption = tokio::time::Instant::now();
            }
            if permits.is_empty() {
                continue;
            }
        }

        let connection = match &mut conn {
            Some(connection) => connection,
            None => match runtime
                .broker
                .blocking_connection(runtime.settings.poll_interval)
                .await
            {
                Ok(connection) => {
                    reconnect.reset();
                    runtime.redis.succeeded("redis");
                    conn.insert(connection)
                }
                Err(err) => {
                    runtime.redis.failed("redis", &err);
                    pause(&stopping, reconnect.next_backoff()).await;
                    continue;
                }
            },
        };
        match take_ids(&runtime, connection, permits.len()).await {
            Ok(ids) => {
                let mut claimed = claim_batch(&runtime, &ids).await;
                for (queue, id) in ids {
                    let Some(permit) = permits.pop() else { break };
                    let job = claimed.remove(&id);
                    start(&runtime, &mut tasks, queue, id, job, permit, &give_up);
                }
            }
            Err(err) => {
                runtime.redis.failed("redis", &err);
                conn = None;
                adoption_due = true;
                pause(&stopping, reconnect.next_backoff()).await;
            }
        }
    }
    tasks
}

/// Claims, in one statement, every job among several fetched ids that can
/// be claimed. Ids it does not win (a duplicate, a job not yet due, an
/// unknown id, or all of them if PostgreSQL is down) take the one-by-one
/// path, which knows what to do with each; a single id takes it directly, so
/// an idle worker's latency does not change.
async fn claim_batch(runtime: &Runtime, ids: &[(String, String)]) -> HashMap<String, Job> {
    if ids.len() < 2 {
        return HashMap::new();
    }
    let parsed: Vec<JobId> = ids.iter().filter_map(|(_, id)| id.parse().ok()).collect();
    match runtime
        .store
        .claim_many(&parsed, &runtime.settings.worker_id, runtime.settings.lease)
        .await
    {
        Ok(jobs) => {
            runtime.postgres.succeeded("postgres");
            jobs.into_iter()
                .map(|job| (job.id.to_string(), job))
                .collect()
        }
        Err(err) => {
            tracing::debug!(error = %err, "batch claim failed; claiming one by one");
            HashMap::new()
        }
    }
}

/// Starts the task that handles one id: runs `claimed` if the batch claim
/// won it, otherwise claims it first.
fn start(
    runtime: &Arc<Runtime>,
    tasks: &mut JoinSet<()>,
    queue: String,
    id: String,
    claimed: Option<Job>,
    permit: OwnedSemaphorePermit,
    give_up: &CancellationToken,
) {
    runtime.begin(&id);
    let (runtime, give_up) = (runtime.clone(), give_up.clone());
    tasks.spawn(async move {
        match claimed {
            Some(job) => run_claimed(runtime.clone(), job, give_up).await,
            None => process(runtime.clone(), queue, id.clone(), give_up).await,
        }
        runtime.end(&id);
        drop(permit);
    });
}

/// Starts tasks for ids in this worker's processing lists that no task of
/// it handles, as far as `permits` allow. False if Redis could not be read
/// or permits ran out first.
async fn adopt_orphans(
    runtime: &Arc<Runtime>,
    permits: &mut Vec<OwnedSemaphorePermit>,
    tasks: &mut JoinSet<()>,
    give_up: &CancellationToken,
) -> bool {
    for queue in &runtime.settings.queues {
        let ids = match runtime.broker.processing_ids(queue, runtime.me()).await {
            Ok(ids) => ids,
            Err(err) => {
                runtime.redis.failed("redis", &err);
                return false;
            }
        };
        for id in ids {
            if runtime.is_in_flight(&id) {
                continue;
            }
            let Some(permit) = permits.pop() else {
                return false;
            };
            tracing::info!(event = "job_adopted", job.id = %id, job.queue = %queue, worker.id = %runtime.me(),
                "picking up id {id} left in this worker's processing list");
            start(runtime, tasks, queue.clone(), id, None, permit, give_up);
        }
    }
    true
}

/// Up to `want` ids: a sweep of every queue in order, each queue's lanes
/// highest priority first; when everything is empty, one blocking pop on the
/// first queue's default lane (priority 0), bounded by the poll interval so
/// that other lanes are swept again soon.
async fn take_ids(
    runtime: &Runtime,
    conn: &mut MultiplexedConnection,
    want: usize,
) -> Result<Vec<(String, String)>, conveyor::BrokerError> {
    let me = runtime.me();
    let mut taken = Vec::new();
    for queue in &runtime.settings.queues {
        let room = want - taken.len();
        if room == 0 {
            break;
        }
        let ids = runtime.broker.sweep(conn, queue, me, room).await?;
        taken.extend(ids.into_iter().map(|id| (queue.clone(), id)));
    }
    if taken.is_empty() {
        let Some(first) = runtime.settings.queues.first() else {
            return Ok(taken);
        };
        // Not raced against shutdown: dropping a BRPOPLPUSH in flight could
        // lose the id it moved. It returns within the poll interval.
        if let Some(id) = runtime
            .broker
            .wait_for_id(conn, first, 0, me, runtime.settings.poll_interval)
            .await?
        {
            taken.push((first.clone(), id));
        }
    }
    Ok(taken)
}

async fn pause(stopping: &CancellationToken, delay: Option<std::time::Duration>) {
    let delay = delay.unwrap_or(std::time::Duration::from_secs(1));
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = stopping.cancelled() => {}
    }
}
