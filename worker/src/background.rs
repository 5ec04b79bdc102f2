//! The loops every worker runs beside its jobs and its maintenance
//! services: the heartbeat and the cancellation listener.

use std::sync::Arc;
use std::time::Duration;

use backoff::backoff::Backoff;
use conveyor::broker::WorkerInfo;
use conveyor::{ClaimToken, JobId, JobStatus};
use tokio_util::sync::CancellationToken;

use crate::runtime::{Runtime, StopReason};

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

/// One heartbeat: this worker's presence in Redis and its attempts' leases
/// in PostgreSQL, at once and each bounded in time, so that neither a slow
/// Redis nor a hung query stops the other or the next beat.
pub async fn beat(runtime: &Runtime, info: &WorkerInfo) {
    let limit = runtime.settings.lease / 2;
    let info = WorkerInfo {
        running: runtime.running_count(),
        ..info.clone()
    };
    let presence = async {
        let presence = async {
            runtime
                .broker
                .heartbeat(&info, runtime.settings.lease * 2)
                .await?;
            // The attempts ended since the last beat (a batch not
            // confirmed is sent again; Redis counts each batch once).
            runtime.send_tally().await?;
            hold_places(runtime).await
        };
        match tokio::time::timeout(limit, presence).await {
            Ok(Ok(())) => runtime.outages.redis.succeeded("redis"),
            Ok(Err(err)) => runtime.outages.redis.failed("redis", &err),
            Err(_) => runtime
                .outages
                .redis
                .failed("redis", &"the heartbeat timed out"),
        }
    };
    tokio::join!(presence, renew_leases(runtime, limit));
}

/// Keeps the places of the jobs running here under their queues'
/// concurrency limits (and puts them back if Redis lost its data).
async fn hold_places(runtime: &Runtime) -> Result<(), conveyor::BrokerError> {
    for (queue, ids) in runtime.running_by_queue() {
        if runtime.gates.of(&queue).limits.concurrency.is_some() {
            runtime
                .broker
                .hold(&queue, &ids, runtime.settings.lease)
                .await?;
        }
    }
    Ok(())
}

/// Stops, on a clock of its own (a renewal can take up to half a lease),
/// every attempt whose lease no renewal has reached for a lease period less
/// one heartbeat: it is stopped before its lease can expire in PostgreSQL,
/// so before another worker can be given the job.
pub async fn lease_watchdog(runtime: Arc<Runtime>, stop: CancellationToken) {
    let margin = runtime.settings.heartbeat;
    let mut ticker = every(runtime.settings.heartbeat / 2);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        for (id, token) in runtime.overdue_attempts(margin) {
            tracing::warn!(event = "job_lease_lost", job.id = %id, worker.id = %runtime.me(),
                "no renewal of job {id}'s lease got through in time; stopping its handler \
                 before the lease runs out; its outcome will not be written");
            runtime.stop_attempt(id, token, StopReason::LeaseLost);
        }
    }
}

/// Renews the leases of the attempts this worker's tasks run, and stops the
/// handlers of those it could not renew or whose job a client canceled.
async fn renew_leases(runtime: &Runtime, limit: std::time::Duration) {
    // Only attempts a task of this worker runs: a row that names this worker
    // but that no task holds (its outcome write was refused, its claim
    // reply lost) must not be kept alive by us; its lease expires and the
    // lease rescuer moves it on.
    let reports = runtime.attempts_reporting();
    if reports.is_empty() {
        // Nothing to renew, and nothing learned about PostgreSQL.
        return;
    }
    let attempts: Vec<(JobId, ClaimToken)> =
        reports.iter().map(|(id, token, _)| (*id, *token)).collect();
    let sent = tokio::time::Instant::now();
    let renewal = async {
        let worker = &runtime.settings.worker_id;
        let lease = runtime.settings.lease;
        match runtime
            .store
            .heartbeat_reporting(worker, &reports, lease)
            .await
        {
            // A progress report PostgreSQL will not store must not cost
            // every attempt here its lease: renew without the reports
            // (they are dropped).
            Err(err) if !err.is_unavailable() && reports.iter().any(|(_, _, p)| p.is_some()) => {
                tracing::warn!(error = %err, "a progress report was refused; renewing leases without it");
                runtime.store.heartbeat(worker, &attempts, lease).await
            }
            other => other,
        }
    };
    let renewed = match tokio::time::timeout(limit, renewal).await {
        Ok(Ok(renewed)) => renewed,
        Ok(Err(err)) if err.is_unavailable() => {
            runtime.outages.postgres.failed("postgres", &err);
            runtime.restore_progress(reports);
            return;
        }
        Ok(Err(err)) => {
            tracing::error!(error = %err, "lease extension refused");
            return;
        }
        Err(_) => {
            runtime
                .outages
                .postgres
                .failed("postgres", &"the lease renewal timed out");
            runtime.restore_progress(reports);
            return;
        }
    };
    runtime.outages.postgres.succeeded("postgres");
    let renewed: std::collections::HashMap<(uuid::Uuid, uuid::Uuid), bool> = renewed
        .into_iter()
        .map(|lease| ((lease.id, lease.token), lease.cancel_requested))
        .collect();
    let mut kept = Vec::new();
    let mut missing = Vec::new();
    for (id, token) in attempts {
        match renewed.get(&(id.as_uuid(), token.as_uuid())) {
            Some(cancel_requested) => {
                kept.push((id, token));
                if *cancel_requested {
                    runtime.stop_attempt(id, token, StopReason::Canceled);
                }
            }
            None => missing.push((id, token)),
        }
    }
    runtime.renewed(&kept, sent);
    // If this times out, the attempts are looked at again on the next beat.
    let _ = tokio::time::timeout(limit, stop_lost_attempts(runtime, missing)).await;
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
            job.id == id.as_uuid()
                && token.is_on(job)
                && job.status != JobStatus::Running
                && job.worker_id.as_deref() == Some(runtime.me())
        });
        let already_stopping = runtime.is_stopping(id, token);
        if !finished_by_us && !already_stopping {
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
                runtime.outages.redis.failed("redis", &err);
                let delay = reconnect.next_backoff().unwrap_or(Duration::from_secs(1));
                tokio::select! {
                    () = tokio::time::sleep(delay) => continue,
                    () = stop.cancelled() => return,
                }
            }
        };
        loop {
            tokio::select! {
                message = pubsub.next() => match message {
                    Some(message) => {
                        if let Ok(id) = message.parse::<JobId>() {
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
