//! Heartbeats: a remote worker names the attempts it holds (with their
//! tokens) and learns, for each, whether to go on. One statement extends
//! every lease that is still the worker's; what a `conveyor-worker` would
//! do to a handler at that point is done here to the attempt:
//!
//! - a client asked to cancel the job: the attempt ends `canceled`;
//! - it has run past its job's timeout: it ends as a failed attempt
//!   (retried after the backoff while attempts remain), as a handler
//!   timeout ends;
//! - its lease was lost (the job moved on without it): nothing is written.
//!
//! In each of those cases the caller is told to stop, and anything it
//! reports for that attempt afterwards is refused.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{RemoteError, RemoteWorkers};
use crate::broker::RemoteSeen;
use crate::store::LeaseRenewal;
use crate::{ClaimToken, Fence, JobId, JobStatus, Transition, WorkerId};

/// An attempt a remote worker says it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldAttempt {
    pub id: JobId,
    pub token: ClaimToken,
    /// Progress to record for it (only while the attempt is current).
    pub progress: Option<serde_json::Value>,
}

/// What a heartbeat found of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptState {
    /// Still the worker's: go on. The lease now holds until then.
    Running { lease_expires_at: DateTime<Utc> },
    /// A client canceled the job: the attempt ended `canceled`. Stop.
    Canceled,
    /// It ran past its job's timeout and ended as a failed attempt. Stop.
    TimedOut,
    /// Its outcome was already recorded (by this worker's own report).
    Finished,
    /// No longer the worker's (its lease expired and the job moved on,
    /// or no such job): stop; nothing it reports will be written.
    Lost,
}

impl RemoteWorkers {
    /// Keeps `worker` registered, extends the leases of the attempts it
    /// holds, records their progress, and says of each whether to go on.
    /// Answers in the order asked; `held` names each attempt once. Fails
    /// only when PostgreSQL did; Redis being away costs only the presence.
    /// Runs in a task of its own: a caller that goes away cannot cut an
    /// attempt it ends from the acknowledgement that must follow.
    pub async fn heartbeat(
        &self,
        worker: WorkerId,
        held: Vec<HeldAttempt>,
    ) -> Result<Vec<AttemptState>, RemoteError> {
        let this = self.clone();
        super::detached(async move { this.beat(&worker, &held).await }).await
    }

    async fn beat(
        &self,
        worker: &WorkerId,
        held: &[HeldAttempt],
    ) -> Result<Vec<AttemptState>, RemoteError> {
        let seen = RemoteSeen {
            running: Some(held.len()),
            ..RemoteSeen::default()
        };
        if let Err(err) = self.touch(worker, seen).await {
            tracing::warn!(worker.id = %worker, error = %err, "could not record a remote worker's heartbeat in Redis");
        }
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let renewals = self.renew(worker, held).await?;
        let mut renewed: HashMap<(uuid::Uuid, uuid::Uuid), LeaseRenewal> = renewals
            .into_iter()
            .map(|renewal| ((renewal.id, renewal.token), renewal))
            .collect();
        let mut states = Vec::with_capacity(held.len());
        let mut missing = Vec::new();
        let mut holding: HashMap<String, Vec<String>> = HashMap::new();
        for attempt in held {
            let key = (attempt.id.as_uuid(), attempt.token.as_uuid());
            let state = match renewed.remove(&key) {
                None => AttemptState::Lost,
                Some(renewal) => {
                    let fence = Fence {
                        attempt: renewal.attempts,
                        ..super::fence(attempt.id, worker, attempt.token)
                    };
                    if renewal.overdue {
                        self.time_out(&fence, &renewal).await?
                    } else if renewal.cancel_requested {
                        self.finish_canceled(&fence).await?
                    } else if let Some(lease_expires_at) = renewal.lease_expires_at {
                        holding
                            .entry(renewal.queue)
                            .or_default()
                            .push(attempt.id.to_string());
                        AttemptState::Running { lease_expires_at }
                    } else {
                        AttemptState::Lost
                    }
                }
            };
            if state == AttemptState::Lost {
                missing.push(states.len());
            }
            states.push(state);
        }
        self.hold_places(holding).await;
        self.settle_missing(worker, held, &missing, &mut states)
            .await?;
        Ok(states)
    }

    /// The lease extension, with the progress reports; when PostgreSQL
    /// refuses a report, without any, so that one bad report does not cost
    /// every attempt its lease.
    async fn renew(
        &self,
        worker: &WorkerId,
        held: &[HeldAttempt],
    ) -> Result<Vec<LeaseRenewal>, RemoteError> {
        let lease = self.settings().lease;
        let reports: Vec<(JobId, ClaimToken, Option<serde_json::Value>)> = held
            .iter()
            .map(|attempt| (attempt.id, attempt.token, attempt.progress.clone()))
            .collect();
        match self
            .store()
            .heartbeat_reporting(worker, &reports, lease)
            .await
        {
            Err(err) if !err.is_unavailable() && reports.iter().any(|(_, _, p)| p.is_some()) => {
                tracing::warn!(worker.id = %worker, error = %err, "a progress report was refused; renewing leases without it");
                let attempts: Vec<(JobId, ClaimToken)> =
                    reports.iter().map(|(id, token, _)| (*id, *token)).collect();
                Ok(self.store().heartbeat(worker, &attempts, lease).await?)
            }
            other => Ok(other?),
        }
    }

    /// Ends an attempt that ran past its job's timeout, as a handler
    /// timeout ends one: a failed attempt, retried after the backoff.
    async fn time_out(
        &self,
        fence: &Fence,
        renewal: &LeaseRenewal,
    ) -> Result<AttemptState, RemoteError> {
        let error = format!("attempt timed out after {} s", renewal.timeout_seconds);
        let delay = self
            .settings()
            .retry
            .delay_after(renewal.attempts.max(1) as u32);
        match self.store().end_timed_out(fence, &error, delay).await? {
            Transition::Won(after) => {
                self.ended(
                    fence,
                    &after,
                    "ran past its timeout; its worker is told to stop",
                );
                self.acknowledge(&fence.worker_id, &after).await;
                Ok(AttemptState::TimedOut)
            }
            // Its own report got there first (the caller then finds it
            // `finished`), or the lease rescuer did.
            _ => Ok(AttemptState::Lost),
        }
    }

    /// Ends an attempt whose job a client canceled.
    async fn finish_canceled(&self, fence: &Fence) -> Result<AttemptState, RemoteError> {
        match self.store().end_canceled(fence).await? {
            Transition::Won(after) => {
                self.ended(fence, &after, "its worker is told to stop");
                self.acknowledge(&fence.worker_id, &after).await;
                Ok(AttemptState::Canceled)
            }
            _ => Ok(AttemptState::Lost),
        }
    }

    /// Keeps the places of the attempts that go on under their queues'
    /// concurrency limits (a hold lapses a lease after its last renewal).
    async fn hold_places(&self, holding: HashMap<String, Vec<String>>) {
        if holding.is_empty() {
            return;
        }
        let queues: Vec<String> = holding.keys().cloned().collect();
        let gates = self.gates(&queues).await;
        for (queue, ids) in holding {
            let limited = gates
                .get(&queue)
                .is_some_and(|gate| gate.limits.concurrency.is_some());
            if limited
                && let Err(err) = self
                    .broker()
                    .hold(&queue, &ids, self.settings().lease)
                    .await
            {
                tracing::warn!(job.queue = %queue, error = %err, "could not hold running jobs' places under their queue's limit");
            }
        }
    }

    /// Tells apart, among attempts not renewed, those whose outcome this
    /// worker already recorded (the row still carries their token) from
    /// those taken from it.
    async fn settle_missing(
        &self,
        worker: &WorkerId,
        held: &[HeldAttempt],
        missing: &[usize],
        states: &mut [AttemptState],
    ) -> Result<(), RemoteError> {
        if missing.is_empty() {
            return Ok(());
        }
        let ids: Vec<JobId> = missing.iter().map(|index| held[*index].id).collect();
        let rows = self.store().find_many(&ids).await?;
        for index in missing {
            let attempt = &held[*index];
            let finished = rows.iter().any(|job| {
                job.id == attempt.id.as_uuid()
                    && attempt.token.is_on(job)
                    && job.status != JobStatus::Running
                    && job.worker_id.as_deref() == Some(worker.as_str())
            });
            if finished && states[*index] == AttemptState::Lost {
                states[*index] = AttemptState::Finished;
            }
        }
        Ok(())
    }
}
