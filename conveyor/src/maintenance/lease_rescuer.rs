//! The lease rescuer: `running` jobs whose lease expired (their worker died,
//! stalled or was cut off) move on — `retrying` due now, `failed` when that
//! was the last attempt, `canceled` when cancellation was requested — and
//! the retrying ones are published again. Runs in every process: each row
//! is taken `FOR UPDATE SKIP LOCKED` and re-checked, so two rescuers never
//! act on one job.

use std::time::Duration;

use super::{Context, MaintenanceError, Pass, Scope, Service, Settings};
use crate::JobStatus;
use crate::job::Job;

/// Most jobs moved per statement.
pub const BATCH: u64 = 500;

#[derive(Debug)]
pub struct LeaseRescuer;

impl Service for LeaseRescuer {
    fn name(&self) -> &'static str {
        "lease_rescuer"
    }

    fn scope(&self) -> Scope {
        Scope::Everywhere
    }

    fn period(&self, settings: &Settings) -> Duration {
        settings.tick
    }

    fn pass<'a>(&'a self, ctx: &'a Context) -> Pass<'a> {
        Box::pin(rescue(ctx))
    }
}

/// Moves on every job whose lease has expired, a batch at a time.
pub async fn rescue(ctx: &Context) -> Result<(), MaintenanceError> {
    loop {
        let expired = ctx.store.expire_leases(BATCH).await?;
        ctx.outages.postgres.succeeded("postgres");
        let count = expired.len() as u64;
        crate::metrics::janitor_recovered("lease_expired", expired.len());
        let mut republish: Vec<Job> = Vec::new();
        for expiry in expired {
            let job = expiry.job;
            let claim = expiry
                .lost_claim
                .map(|claim| claim.to_string())
                .unwrap_or_default();
            tracing::warn!(event = "job_recovered", job.id = %job.id, job.r#type = %job.task_type,
                job.queue = %job.queue, job.attempt = job.attempts, job.claim = %claim, job.status = %job.status,
                worker.id = %ctx.settings.me, previous_worker = expiry.previous_worker.as_deref().unwrap_or("?"),
                "recovered job {} from an expired lease: now {}", job.id, job.status);
            if job.status == JobStatus::Retrying {
                republish.push(job);
            }
        }
        // A publish Redis missed is the reconciler's to repair.
        let _ = ctx.client.publish(&republish).await;
        if count < BATCH {
            return Ok(());
        }
    }
}
