//! Claims: a remote worker's queues swept in strict order (each queue's
//! lanes highest priority first, paused queues skipped, limited ones
//! within their limits) by the same atomic moves as `conveyor-worker`'s
//! fetch, then the ids claimed in PostgreSQL by the same guarded update.
//! When nothing is ready, a long-poll blocks on the first open queue's
//! default lane, a poll interval at a time, until the wait runs out.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{RemoteError, RemoteWorkers, redis_retried};
use crate::broker::{BlockingConnection, Held, RemoteSeen};
use crate::maintenance::promoter;
use crate::{BrokerError, ClaimToken, Job, JobId, JobStatus, Transition, WorkerId};

/// The shortest blocking pop worth making: Redis reads a timeout that
/// rounds to 0 ms as "block forever".
const SHORTEST_BLOCK: Duration = Duration::from_millis(10);
/// How long a long-poll waits before sweeping again when every queue is
/// paused or held back by its limits (a blocking pop cannot wait for a
/// limit to free up).
pub const GATED_WAIT: Duration = Duration::from_millis(50);

/// What a remote worker asks for.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub worker: WorkerId,
    /// In strict order: a job in an earlier queue always goes first.
    pub queues: Vec<String>,
    /// Most jobs to take.
    pub max: usize,
    /// How long to wait for the first job when none is ready.
    pub wait: Duration,
}

impl RemoteWorkers {
    /// Up to `request.max` jobs claimed for `request.worker`: each
    /// `running`, with its attempt counted, a lease of
    /// [`super::Settings::lease`] and a fresh claim token (the fence of
    /// every later write). Waits up to `request.wait` for the first when
    /// none is ready; empty when none came.
    ///
    /// Runs in a task of its own: a caller that goes away (a client that
    /// hangs up) cannot drop it between taking ids and claiming them. It
    /// ends the wait instead, and jobs claimed meanwhile are put back at
    /// once, their attempt not counted, rather than left to their lease.
    pub async fn claim(&self, request: ClaimRequest) -> Result<Vec<Job>, RemoteError> {
        let abandoned = CancellationToken::new();
        // Fires when this future is dropped, not when the task ends.
        let _caller_gone = abandoned.clone().drop_guard();
        let this = self.clone();
        super::detached(async move { this.claim_for(&request, &abandoned).await }).await
    }

    /// [`RemoteWorkers::claim`], in its task: `abandoned` fires when the
    /// caller is gone.
    async fn claim_for(
        &self,
        request: &ClaimRequest,
        abandoned: &CancellationToken,
    ) -> Result<Vec<Job>, RemoteError> {
        // A long-poll takes one of a bounded number of places; without one
        // (every place taken by other waiting workers) it does not wait.
        let place = if request.wait.is_zero() {
            None
        } else {
            self.inner.waiting.clone().try_acquire_owned().ok()
        };
        let wait = if place.is_some() {
            request.wait
        } else {
            Duration::ZERO
        };
        let deadline = Instant::now() + wait;
        let mut conn = self.blocking().await?;
        loop {
            let taken = match self.take(&mut conn, request, deadline, abandoned).await {
                Ok(taken) => taken,
                Err(err) => {
                    // A pop cut off by the error may have moved an id.
                    self.adopt_next_time(&request.worker);
                    return Err(err.into());
                }
            };
            if taken.is_empty() {
                self.give_back(conn);
                return Ok(Vec::new());
            }
            let jobs = self.claim_taken(&request.worker, taken).await?;
            if abandoned.is_cancelled() {
                self.put_back(&request.worker, jobs).await;
                self.give_back(conn);
                return Ok(Vec::new());
            }
            if !jobs.is_empty() {
                self.give_back(conn);
                return Ok(jobs);
            }
            // Every id taken was a duplicate or not claimable: take again
            // (a sweep at least, past the deadline: each consumes the ids
            // it took, so this ends).
        }
    }

    /// Ids for `request`, as `(queue, id)`: the worker's own left-overs
    /// when due for adoption, then a sweep; when both are empty, blocking
    /// pops until one comes or `deadline` passes. Empty only then (or when
    /// the caller is gone).
    async fn take(
        &self,
        conn: &mut BlockingConnection,
        request: &ClaimRequest,
        deadline: Instant,
        abandoned: &CancellationToken,
    ) -> Result<Vec<(String, String)>, BrokerError> {
        let worker = request.worker.as_str();
        let broker = self.broker();
        let lease = self.settings().lease;
        let mut gated_wait = GATED_WAIT;
        loop {
            // Registered before taking anything, and again on every round
            // of a long-poll, so dead-worker recovery never takes this
            // worker's lists from under a claim.
            self.touch(
                &request.worker,
                RemoteSeen {
                    queues: Some(request.queues.clone()),
                    claims_at_once: Some(request.max),
                    ..RemoteSeen::default()
                },
            )
            .await?;
            let gates = self.gates(&request.queues).await;
            let mut taken = Vec::new();
            if self.adoption_due(&request.worker) {
                for queue in &request.queues {
                    for id in broker.processing_ids(queue, worker).await? {
                        if taken.len() == request.max {
                            // The rest on the next claim.
                            self.adopt_next_time(&request.worker);
                            break;
                        }
                        tracing::info!(event = "job_adopted", job.id = %id, job.queue = %queue,
                            worker.id = %worker, "picking up id {id} left in the processing list of {worker}");
                        taken.push((queue.clone(), id));
                    }
                }
            }
            let mut held = false;
            for queue in &request.queues {
                let room = request.max - taken.len();
                if room == 0 {
                    break;
                }
                let gate = gates.get(queue).copied().unwrap_or_default();
                if gate.paused {
                    continue;
                }
                // Remote workers' queues may have no `conveyor-worker` to
                // promote their due retries and scheduled jobs: the claim
                // does it (the script is atomic; promoters racing move
                // each id once).
                while broker.promote_due(queue, promoter::BATCH).await? == promoter::BATCH {}
                let ids = if gate.limits.is_limited() {
                    let swept = broker
                        .sweep_limited(conn, queue, worker, room, &gate.limits, lease)
                        .await?;
                    match swept.held {
                        Held::No => {}
                        Held::Concurrency => {
                            held = true;
                            crate::metrics::queue_throttled(queue, "concurrency");
                        }
                        Held::Rate => {
                            held = true;
                            crate::metrics::queue_throttled(queue, "rate");
                        }
                    }
                    swept.ids
                } else {
                    broker.sweep(conn, queue, worker, room).await?
                };
                taken.extend(ids.into_iter().map(|id| (queue.clone(), id)));
            }
            if !taken.is_empty() {
                return Ok(taken);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining < SHORTEST_BLOCK
                || abandoned.is_cancelled()
                || self.inner.stopping.is_cancelled()
            {
                return Ok(taken);
            }
            let open = request
                .queues
                .iter()
                .find(|queue| !gates.get(*queue).copied().unwrap_or_default().paused);
            let (Some(first), false) = (open, held) else {
                // Longer each time, up to the poll interval: a queue held
                // by its limits for long costs a round a second.
                tokio::select! {
                    () = tokio::time::sleep(gated_wait.min(remaining)) => {}
                    () = abandoned.cancelled() => {}
                    () = self.inner.stopping.cancelled() => {}
                }
                gated_wait = (gated_wait * 2).min(self.settings().poll_interval.max(GATED_WAIT));
                continue;
            };
            // Not raced against `abandoned`: dropping a BRPOPLPUSH in
            // flight could lose the id it moved. It returns within the
            // poll interval (never 0, which Redis reads as "forever").
            let block = remaining
                .min(self.settings().poll_interval)
                .max(SHORTEST_BLOCK);
            let Some(id) = broker.wait_for_id(conn, first, 0, worker, block).await? else {
                continue;
            };
            let gate = gates.get(first).copied().unwrap_or_default();
            if gate.limits.is_limited()
                && !broker
                    .admit(conn, first, 0, worker, &id, &gate.limits, lease)
                    .await?
            {
                // Put back where it was; the next sweep sees the limit.
                continue;
            }
            return Ok(vec![(first.clone(), id)]);
        }
    }

    /// Claims the jobs behind `taken` for `worker`: every id it can in one
    /// statement, the rest one by one. Each id then leaves the worker's
    /// processing list: a won job is guarded by its lease from here on; a
    /// job not won is dealt with as `conveyor-worker` deals with it (one
    /// not due or in a paused queue goes back to Redis, a duplicate of a
    /// running one keeps that attempt's place under its queue's limit).
    /// Fails only when PostgreSQL failed and nothing was won; ids it could
    /// not claim stay in the processing list, adopted on the next claim.
    async fn claim_taken(
        &self,
        worker: &WorkerId,
        taken: Vec<(String, String)>,
    ) -> Result<Vec<Job>, RemoteError> {
        let store = self.store();
        let lease = self.settings().lease;
        let mut tokens: HashMap<&str, ClaimToken> = HashMap::with_capacity(taken.len());
        let mut batch: Vec<(JobId, ClaimToken)> = Vec::with_capacity(taken.len());
        for (_, raw) in &taken {
            if let (Ok(id), false) = (raw.parse::<JobId>(), tokens.contains_key(raw.as_str())) {
                let token = ClaimToken::new();
                tokens.insert(raw, token);
                batch.push((id, token));
            }
        }
        let mut won: HashMap<uuid::Uuid, Job> = HashMap::new();
        if batch.len() >= 2 {
            match store.claim_many(&batch, worker, lease).await {
                Ok(jobs) => won = jobs.into_iter().map(|job| (job.id, job)).collect(),
                Err(err) => {
                    tracing::debug!(error = %err, "batch claim failed; claiming one by one")
                }
            }
        }
        let mut jobs = Vec::new();
        let mut unlist = Vec::new();
        let mut ack = Vec::new();
        let mut deferred = Vec::new();
        let mut failure = None;
        for (queue, raw) in &taken {
            let Ok(id) = raw.parse::<JobId>() else {
                tracing::warn!(event = "job_skipped", reason = "malformed id", job.id = %raw, "dropping malformed id");
                ack.push((queue.clone(), raw.clone()));
                continue;
            };
            let claimed = match won.remove(&id.as_uuid()) {
                Some(job) => {
                    // A second delivery of this id in the same take must
                    // not claim with the token that won: the store would
                    // take it for this claim's lost reply and hand the
                    // same attempt out twice.
                    tokens.remove(raw.as_str());
                    Transition::Won(job)
                }
                // The batch's token for the first delivery of an id (so a
                // batch whose reply was lost is still recognised as ours),
                // a fresh one for a duplicate.
                None => {
                    let token = tokens.remove(raw.as_str()).unwrap_or_default();
                    match store.claim(id, worker, token, lease).await {
                        Ok(claimed) => claimed,
                        Err(err) => {
                            failure.get_or_insert(err);
                            continue;
                        }
                    }
                }
            };
            match claimed {
                Transition::Won(job) => {
                    unlist.push((queue.clone(), raw.clone()));
                    jobs.push(job);
                }
                Transition::Lost(job) if job.status.is_waiting() && !job.cancel_requested => {
                    // Not due by PostgreSQL's clock, or its queue was
                    // paused after the gates were read: back to Redis,
                    // and the gates read again.
                    self.forget_gate(&job.queue);
                    deferred.push(job);
                }
                Transition::Lost(job) if job.status == JobStatus::Running => {
                    // Running elsewhere: its place under the queue's limit
                    // is that attempt's.
                    unlist.push((queue.clone(), raw.clone()));
                }
                Transition::Lost(_) | Transition::NotFound => {
                    ack.push((queue.clone(), raw.clone()));
                }
            }
        }
        if failure.is_some() {
            self.adopt_next_time(worker);
        }
        let broker = self.broker();
        let me = worker.as_str();
        let mut cleared = redis_retried("taking claimed ids out of a processing list", || {
            broker.unlist_many(me, &unlist)
        })
        .await
        .is_some();
        cleared &= redis_retried("acknowledging skipped ids", || broker.ack_many(me, &ack))
            .await
            .is_some();
        for job in &deferred {
            cleared &= redis_retried("putting back a job not yet claimable", || {
                broker.ack_and_republish(me, job)
            })
            .await
            .is_some();
        }
        if !cleared {
            self.adopt_next_time(worker);
        }
        for job in &jobs {
            tracing::info!(event = "job_claimed", job.id = %job.id, job.r#type = %job.task_type,
                job.queue = %job.queue, job.attempt = job.attempts, job.claim = %ClaimToken::of(job), worker.id = %me,
                "claimed job {} for remote worker {me}", job.id);
            if let Some(started_at) = job.started_at {
                let waited = (started_at - job.run_at).to_std().unwrap_or_default();
                crate::metrics::wait_time(&job.queue, &job.task_type, waited);
            }
        }
        match failure {
            Some(err) if jobs.is_empty() => Err(err.into()),
            _ => Ok(jobs),
        }
    }

    /// Puts back jobs claimed for a caller that is gone: each to its lane,
    /// its attempt not counted. One that cannot be put back is left to its
    /// lease.
    async fn put_back(&self, worker: &WorkerId, jobs: Vec<Job>) {
        for job in jobs {
            let fence = super::fence(JobId::from(job.id), worker, ClaimToken::of(&job));
            match self.store().release(&fence).await {
                Ok(Transition::Won(after)) => {
                    tracing::info!(event = "job_released", job.id = %after.id, worker.id = %worker,
                        "put back job {}: the caller that claimed it hung up", after.id);
                    self.acknowledge(worker, &after).await;
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(job.id = %job.id, error = %err,
                        "could not put back job {} claimed for a caller that hung up; its lease will expire", job.id)
                }
            }
        }
    }
}
