//! The loops every worker runs beside its jobs: heartbeat, janitor,
//! promoter and the cancellation listener.

use std::sync::Arc;
use std::time::Duration;

use backoff::backoff::Backoff;
use conveyor::broker::WorkerInfo;
use conveyor::{ClaimToken, JobId, JobStatus};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::runtime::{Runtime, StopReason};

/// Most jobs the janitor moves per statement.
const JANITOR_BATCH: u64 = 500;
/// Most ids the promoter moves per script call.
const PROMOTE_BATCH: usize = 1_000;

/// A ticker whose first tick is one `period` from now.
fn every(period: Duration) -> tokio::time::Interval {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker
}

/// Refreshes this worker's presence in Redis and its leases in PostgreSQL,
/// and stops handlers whose jobs a client asked to cancel.
pub async fn heartbeat_loop(runtime: Arc<Runtime>, stop: CancellationToken, info: WorkerInfo) {
    // `Worker::run` beats once before starting this loop.
    let mut ticker = every(runtime.settings.heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        beat(&runtime, &info).await;
    }
}

/// One heartbeat.
pub async fn beat(runtime: &Runtime, info: &WorkerInfo) {
    let info = WorkerInfo {
        running: runtime.running_count(),
        ..info.clone()
    };
    match runtime
        .broker
        .heartbeat(&info, runtime.settings.lease * 2)
        .await
    {
        Ok(()) => runtime.redis.succeeded("redis"),
        Err(err) => runtime.redis.failed("redis", &err),
    }
    // Only attempts a task of this worker runs: a row that names this worker
    // but that no task holds (its outcome write was refused, its claim
    // reply lost) must not be kept alive by us; its lease expires and the
    // janitor moves it on.
    let attempts = runtime.running_attempts();
    match runtime
        .store
        .heartbeat(&attempts, runtime.settings.lease)
        .await
    {
        Ok(renewed) => {
            runtime.postgres.succeeded("postgres");
            let renewed: std::collections::HashMap<uuid::Uuid, bool> = renewed
                .into_iter()
                .map(|lease| (lease.id, lease.cancel_requested))
                .collect();
            let mut missing = Vec::new();
            for (id, token) in attempts {
                match renewed.get(&id.as_uuid()) {
                    Some(true) => {
                        runtime.stop(id, StopReason::Canceled);
                    }
                    Some(false) => {}
                    None => missing.push((id, token)),
                }
            }
            stop_lost_attempts(runtime, missing).await;
        }
        Err(err) if err.is_unavailable() => runtime.postgres.failed("postgres", &err),
        Err(err) => tracing::error!(error = %err, "lease extension refused"),
    }
}

/// Stops the handlers of attempts the heartbeat did not renew, unless their
/// own outcome was written meanwhile (the row still carries their token):
/// the others were taken from this worker.
async fn stop_lost_attempts(runtime: &Runtime, missing: Vec<(JobId, ClaimToken)>) {
    if missing.is_empty() {
        return;
    }
    let ids: Vec<JobId> = missing.iter().map(|(id, _)| *id).collect();
    let Ok(rows) = runtime.store.find_many(&ids).await else {
        // Asked again on the next beat.
        return;
    };
    for (id, token) in missing {
        let finished_by_us = rows.iter().any(|job| {
            job.id == id.as_uuid() && token.is_on(job) && job.status != JobStatus::Running
        });
        if !finished_by_us {
            tracing::warn!(event = "job_lease_lost", job.id = %id, worker.id = %runtime.me(),
                "lost the lease of job {id}; stopping its handler, its outcome will not be written");
            runtime.stop_attempt(id, token, StopReason::LeaseLost);
        }
    }
}

/// Stops handlers as soon as the API announces a cancellation; the
/// heartbeat catches any notice this misses.
pub async fn cancel_listener(runtime: Arc<Runtime>, stop: CancellationToken) {
    let mut reconnect = runtime.settings.retry.backoff();
    while !stop.is_cancelled() {
        let mut pubsub = match runtime.broker.subscribe_cancels().await {
            Ok(pubsub) => {
                reconnect.reset();
                pubsub
            }
            Err(err) => {
                runtime.redis.failed("redis", &err);
                let delay = reconnect.next_backoff().unwrap_or(Duration::from_secs(1));
                tokio::select! {
                    () = tokio::time::sleep(delay) => continue,
                    () = stop.cancelled() => return,
                }
            }
        };
        let mut messages = pubsub.on_message();
        loop {
            tokio::select! {
                message = messages.next() => match message {
                    Some(message) => {
                        let id = message.get_payload::<String>().ok().and_then(|id| id.parse::<JobId>().ok());
                        if let Some(id) = id {
                            runtime.stop(id, StopReason::Canceled);
                        }
                    }
                    None => break,
                },
                () = stop.cancelled() => return,
            }
        }
    }
}

/// Moves due ids from `delayed` to the ready lanes of this worker's queues.
pub async fn promoter_loop(runtime: Arc<Runtime>, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(runtime.settings.promote_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        for queue in &runtime.settings.queues {
            loop {
                match runtime.broker.promote_due(queue, PROMOTE_BATCH).await {
                    Ok(moved) if moved == PROMOTE_BATCH => continue,
                    Ok(_) => break,
                    Err(err) => {
                        runtime.redis.failed("redis", &err);
                        break;
                    }
                }
            }
        }
    }
}

/// Recovers what dead workers left: running jobs whose lease expired go back
/// to `retrying` (or `failed`/`canceled`), and ids in a silent worker's
/// processing lists are published again if their jobs still wait.
pub async fn janitor_loop(runtime: Arc<Runtime>, stop: CancellationToken) {
    let mut ticker = every(runtime.settings.heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        sweep_once(&runtime).await;
    }
}

/// One janitor pass.
pub async fn sweep_once(runtime: &Runtime) {
    expire_leases(runtime).await;
    let silent = match runtime.broker.silent_workers(runtime.settings.lease).await {
        Ok(silent) => silent,
        Err(err) => {
            runtime.redis.failed("redis", &err);
            return;
        }
    };
    for worker in silent.into_iter().filter(|worker| worker != runtime.me()) {
        // Only the janitor that removes the entry cleans up after it.
        match runtime.broker.remove_worker(&worker).await {
            Ok(true) => {
                tracing::warn!(event = "worker_presumed_dead", worker.id = %worker,
                    "worker {worker} stopped heartbeating; recovering its ids");
                recover_processing(runtime, &worker).await;
            }
            Ok(false) => {}
            Err(err) => runtime.redis.failed("redis", &err),
        }
    }
}

async fn expire_leases(runtime: &Runtime) {
    loop {
        let expired = match runtime.store.expire_leases(JANITOR_BATCH).await {
            Ok(expired) => expired,
            Err(err) => {
                if err.is_unavailable() {
                    runtime.postgres.failed("postgres", &err);
                } else {
                    tracing::error!(error = %err, "lease expiry refused");
                }
                return;
            }
        };
        let count = expired.len() as u64;
        conveyor::metrics::janitor_recovered("lease_expired", expired.len());
        let mut republish = Vec::new();
        for expiry in expired {
            let job = expiry.job;
            tracing::warn!(event = "job_recovered", job.id = %job.id, job.r#type = %job.task_type,
                job.queue = %job.queue, job.attempt = job.attempts, job.status = %job.status,
                worker.id = %runtime.me(), previous_worker = expiry.previous_worker.as_deref().unwrap_or("?"),
                "recovered job {} from an expired lease: now {}", job.id, job.status);
            if job.status == JobStatus::Retrying {
                republish.push(job);
            }
        }
        if let Err(err) = runtime.broker.publish(&republish).await {
            // The reconciler publishes waiting jobs that Redis lacks.
            runtime.redis.failed("redis", &err);
        }
        if count < JANITOR_BATCH {
            return;
        }
    }
}

/// Publishes again the waiting jobs whose ids sit in `worker`'s processing
/// lists, then deletes those lists. Running or finished jobs are left alone:
/// their leases and outcomes are PostgreSQL's business.
pub async fn recover_processing(runtime: &Runtime, worker: &str) -> bool {
    let queues = match runtime.broker.known_queues().await {
        Ok(queues) => queues,
        Err(err) => {
            runtime.redis.failed("redis", &err);
            return false;
        }
    };
    let mut complete = true;
    for queue in queues {
        let ids = match runtime.broker.processing_ids(&queue, worker).await {
            Ok(ids) => ids,
            Err(err) => {
                runtime.redis.failed("redis", &err);
                complete = false;
                continue;
            }
        };
        if ids.is_empty() {
            continue;
        }
        let parsed: Vec<JobId> = ids.iter().filter_map(|id| id.parse().ok()).collect();
        let waiting: Vec<_> = match runtime.store.find_many(&parsed).await {
            Ok(jobs) => jobs
                .into_iter()
                .filter(|job| job.status.is_waiting())
                .collect(),
            Err(err) => {
                runtime.postgres.failed("postgres", &err);
                complete = false;
                continue;
            }
        };
        conveyor::metrics::janitor_recovered("dead_worker", waiting.len());
        for job in &waiting {
            tracing::info!(event = "job_recovered", job.id = %job.id, job.queue = %job.queue,
                job.status = %job.status, previous_worker = worker,
                "republished job {} from the processing list of {worker}", job.id);
        }
        let published = runtime.broker.publish(&waiting).await;
        if published.is_ok() {
            if let Err(err) = runtime.broker.drop_processing(&queue, worker).await {
                runtime.redis.failed("redis", &err);
                complete = false;
            }
        } else {
            complete = false;
        }
    }
    complete
}

/// Runs the reconciler whenever this worker holds the reconciler lock: a
/// full pass every reconcile interval, and at once when the epoch key is
/// gone (Redis lost its data).
pub async fn reconciler_loop(runtime: Arc<Runtime>, stop: CancellationToken) {
    let settings = &runtime.settings;
    let mut ticker = tokio::time::interval(settings.epoch_check_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let lock_ttl = settings.epoch_check_interval * 3 + settings.reconcile_interval;
    let mut last_pass: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        match runtime
            .broker
            .take_reconciler_lock(runtime.me(), lock_ttl)
            .await
        {
            Ok(true) => {}
            Ok(false) => continue,
            Err(err) => {
                runtime.redis.failed("redis", &err);
                continue;
            }
        }
        let due = last_pass.is_none_or(|at| at.elapsed() >= settings.reconcile_interval);
        let reset = matches!(runtime.broker.epoch_exists().await, Ok(false));
        if !(due || reset) {
            continue;
        }
        let quiet = settings.reconcile_interval * 2;
        match crate::reconcile::reconcile_once(&runtime.store, &runtime.broker, quiet).await {
            Ok(_) => last_pass = Some(tokio::time::Instant::now()),
            Err(crate::reconcile::ReconcileError::Store(err)) => {
                runtime.postgres.failed("postgres", &err)
            }
            Err(crate::reconcile::ReconcileError::Broker(err)) => {
                runtime.redis.failed("redis", &err)
            }
        }
    }
}
