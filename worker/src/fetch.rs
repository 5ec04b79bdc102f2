//! Taking ids from Redis: sweep the lanes highest first, block only when
//! all are empty.

use std::sync::Arc;

use backoff::backoff::Backoff;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use std::collections::HashMap;

use conveyor::broker::Held;
use conveyor::{ClaimToken, Job, JobId};

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
    let mut conn: Option<conveyor::broker::BlockingConnection> = None;
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
                    runtime.outages.redis.succeeded("redis");
                    conn.insert(connection)
                }
                Err(err) => {
                    runtime.outages.redis.failed("redis", &err);
                    pause(&stopping, reconnect.next_backoff()).await;
                    continue;
                }
            },
        };
        match take_ids(&runtime, connection, permits.len()).await {
            Ok(ids) => {
                let mut claims = claim_batch(&runtime, &ids).await;
                for (queue, id) in ids {
                    let Some(permit) = permits.pop() else { break };
                    // The first delivery of an id takes the batch's claim (won,
                    // or its token to claim with); a duplicate gets a token
                    // of its own, so it cannot pass for the batch's claim.
                    let claim = claims.remove(&id).unwrap_or_default();
                    start(&runtime, &mut tasks, queue, id, claim, permit, &give_up);
                }
            }
            Err(err) => {
                runtime.outages.redis.failed("redis", &err);
                conn = None;
                adoption_due = true;
                pause(&stopping, reconnect.next_backoff()).await;
            }
        }
    }
    tasks
}

/// What the batch claim did for one id.
#[derive(Debug)]
enum Claim {
    /// Won: run it.
    Won(Box<Job>),
    /// Not won by the batch: claim it alone, with this token (the batch's,
    /// so a batch whose reply was lost is still recognised as ours).
    Pending(ClaimToken),
}

impl Default for Claim {
    fn default() -> Self {
        Claim::Pending(ClaimToken::new())
    }
}

/// Claims, in one statement, every job among several fetched ids that can
/// be claimed. Ids it does not win (a duplicate, a job not yet due, an
/// unknown id, or all of them if PostgreSQL is down) take the one-by-one
/// path, which knows what to do with each; a single id takes it directly, so
/// an idle worker's latency does not change.
async fn claim_batch(runtime: &Runtime, ids: &[(String, String)]) -> HashMap<String, Claim> {
    let mut claims: HashMap<String, Claim> = HashMap::with_capacity(ids.len());
    let mut batch: Vec<(JobId, ClaimToken)> = Vec::with_capacity(ids.len());
    for (_, raw) in ids {
        if let (Ok(id), false) = (raw.parse::<JobId>(), claims.contains_key(raw)) {
            let token = ClaimToken::new();
            claims.insert(raw.clone(), Claim::Pending(token));
            batch.push((id, token));
        }
    }
    if batch.len() < 2 {
        return claims;
    }
    match runtime
        .store
        .claim_many(&batch, &runtime.settings.worker_id, runtime.settings.lease)
        .await
    {
        Ok(jobs) => {
            runtime.outages.postgres.succeeded("postgres");
            for job in jobs {
                claims.insert(job.id.to_string(), Claim::Won(Box::new(job)));
            }
        }
        Err(err) => {
            tracing::debug!(error = %err, "batch claim failed; claiming one by one");
        }
    }
    claims
}

/// Starts the task that handles one id: runs the job if the batch claim
/// won it, otherwise claims it first.
fn start(
    runtime: &Arc<Runtime>,
    tasks: &mut JoinSet<()>,
    queue: String,
    id: String,
    claim: Claim,
    permit: OwnedSemaphorePermit,
    give_up: &CancellationToken,
) {
    runtime.begin(&id);
    let (runtime, give_up) = (runtime.clone(), give_up.clone());
    // Boxed: the job's future is over 12 KB, and tokio moves a task's
    // future (and its slot for the output, as large) several times while
    // spawning, polling the end and joining it; a box moves as a pointer.
    // Counted under callgrind, about 40 % of a worker's instructions per
    // job were those copies (docs/performance.md).
    tasks.spawn(Box::pin(async move {
        match claim {
            Claim::Won(job) => run_claimed(runtime.clone(), *job, give_up).await,
            Claim::Pending(token) => {
                process(runtime.clone(), queue, id.clone(), token, give_up).await
            }
        }
        runtime.end(&id);
        drop(permit);
    }));
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
                runtime.outages.redis.failed("redis", &err);
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
            start(
                runtime,
                tasks,
                queue.clone(),
                id,
                Claim::default(),
                permit,
                give_up,
            );
        }
    }
    true
}

/// How long a worker whose queues are all paused, or held back by their
/// limits, waits before it looks again (a blocking pop cannot wait for a
/// limit to free up).
pub const GATED_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// Up to `want` ids: a sweep of every queue in order (paused ones
/// skipped, limited ones within their limits), each queue's lanes highest
/// priority first; when everything is empty, one blocking pop on the first
/// open queue's default lane (priority 0), bounded by the poll interval so
/// that other lanes are swept again soon. When a limit held ids back, no
/// blocking pop: a short wait, then another sweep.
async fn take_ids(
    runtime: &Runtime,
    conn: &mut conveyor::broker::BlockingConnection,
    want: usize,
) -> Result<Vec<(String, String)>, conveyor::BrokerError> {
    let me = runtime.me();
    let lease = runtime.settings.lease;
    let mut taken = Vec::new();
    let mut held = false;
    for queue in &runtime.settings.queues {
        let room = want - taken.len();
        if room == 0 {
            break;
        }
        let gate = runtime.gates.of(queue);
        if gate.paused {
            continue;
        }
        let ids = if gate.limits.is_limited() {
            let swept = runtime
                .broker
                .sweep_limited(conn, queue, me, room, &gate.limits, lease)
                .await?;
            match swept.held {
                Held::No => {}
                Held::Concurrency => {
                    held = true;
                    conveyor::metrics::queue_throttled(queue, "concurrency");
                }
                Held::Rate => {
                    held = true;
                    conveyor::metrics::queue_throttled(queue, "rate");
                }
            }
            swept.ids
        } else {
            runtime.broker.sweep(conn, queue, me, room).await?
        };
        taken.extend(ids.into_iter().map(|id| (queue.clone(), id)));
    }
    if !taken.is_empty() {
        return Ok(taken);
    }
    let open = runtime
        .settings
        .queues
        .iter()
        .find(|queue| !runtime.gates.of(queue).paused);
    let (Some(first), false) = (open, held) else {
        tokio::time::sleep(GATED_WAIT).await;
        return Ok(taken);
    };
    // Not raced against shutdown: dropping a BRPOPLPUSH in flight could
    // lose the id it moved. It returns within the poll interval.
    let Some(id) = runtime
        .broker
        .wait_for_id(conn, first, 0, me, runtime.settings.poll_interval)
        .await?
    else {
        return Ok(taken);
    };
    // Read again: the gate may have changed during the wait.
    let gate = runtime.gates.of(first);
    if gate.limits.is_limited()
        && !runtime
            .broker
            .admit(conn, first, 0, me, &id, &gate.limits, lease)
            .await?
    {
        // Put back where it was; the next sweep sees the limit.
        return Ok(taken);
    }
    taken.push((first.clone(), id));
    Ok(taken)
}

async fn pause(stopping: &CancellationToken, delay: Option<std::time::Duration>) {
    let delay = delay.unwrap_or(std::time::Duration::from_secs(1));
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = stopping.cancelled() => {}
    }
}
