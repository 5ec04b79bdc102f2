//! Dead-worker recovery: a worker that stopped heartbeating (by Redis's
//! clock) leaves ids in its processing lists that no one else will take.
//! The leader publishes again those whose jobs still wait, deletes the
//! lists, and only then removes the worker from the registry: if any step
//! fails (PostgreSQL or Redis unreachable, a reply lost), the worker stays
//! registered and the next pass does it all again. Publishing an id twice
//! costs a skipped delivery; forgetting one would strand its job until the
//! reconciler's next pass, so recovery errs on the side of repeating.
//!
//! Ids of running jobs are left to the lease rescuer (the dead worker's
//! leases expire), and ids of finished jobs are simply dropped.

use std::time::Duration;

use super::{Context, MaintenanceError, Pass, Scope, Service, Settings};
use crate::{Broker, Store};

#[derive(Debug)]
pub struct DeadWorkers;

impl Service for DeadWorkers {
    fn name(&self) -> &'static str {
        "dead_workers"
    }

    fn scope(&self) -> Scope {
        Scope::Leader
    }

    fn period(&self, settings: &Settings) -> Duration {
        settings.tick
    }

    fn pass<'a>(&'a self, ctx: &'a Context) -> Pass<'a> {
        Box::pin(recover_dead_workers(ctx))
    }
}

/// One pass: every worker silent for longer than a lease is recovered and
/// then deregistered.
pub async fn recover_dead_workers(ctx: &Context) -> Result<(), MaintenanceError> {
    let silent = ctx.broker.silent_workers(ctx.settings.lease).await?;
    for worker in silent
        .into_iter()
        .filter(|worker| worker != ctx.settings.me.as_str())
    {
        ctx.still_leader()?;
        let republished = hand_back(&ctx.store, &ctx.broker, &worker).await?;
        // Only now, with its ids safely back, does it leave the registry.
        ctx.broker.remove_worker(&worker).await?;
        crate::metrics::janitor_recovered("dead_worker", republished);
        tracing::warn!(event = "worker_presumed_dead", worker.id = %worker, republished,
            "worker {worker} stopped heartbeating; republished {republished} waiting job(s) it held");
    }
    Ok(())
}

/// Publishes again the waiting jobs whose ids sit in `worker`'s processing
/// lists (of every known queue), then deletes those lists; returns how many
/// it published. Used for dead workers and by a worker shutting down for
/// the ids it took but never claimed. An error leaves the remaining lists
/// in place, so a second call picks up where this one failed.
pub async fn hand_back(
    store: &Store,
    broker: &Broker,
    worker: &str,
) -> Result<usize, MaintenanceError> {
    let mut republished = 0;
    // The queues it served as well as the known ones: an idle queue may
    // have left the set while an id moved into this worker's list.
    let mut queues = broker.known_queues().await?;
    queues.extend(broker.worker_queues(worker).await?);
    queues.sort_unstable();
    queues.dedup();
    for queue in queues {
        let ids: Vec<uuid::Uuid> = broker
            .processing_ids(&queue, worker)
            .await?
            .iter()
            .filter_map(|id| id.parse().ok())
            .collect();
        if !ids.is_empty() {
            let waiting = store.still_waiting(&ids, Duration::ZERO).await?;
            broker.publish_waiting(&waiting).await?;
            for job in &waiting {
                tracing::info!(event = "job_recovered", job.id = %job.id, job.queue = %job.queue,
                    previous_worker = worker,
                    "republished job {} from the processing list of {worker}", job.id);
            }
            republished += waiting.len();
        }
        broker.drop_processing(&queue, worker).await?;
    }
    Ok(republished)
}
