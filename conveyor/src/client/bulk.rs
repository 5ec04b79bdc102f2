//! Bulk actions: retry or cancel every job matching a filter, a bounded
//! number per call, with the same ordering rules as the single-job paths
//! (commit, then publish; a canceled waiting job leaves Redis; a running
//! one is told to stop).

use futures::StreamExt;

use super::Client;
use crate::JobStatus;
use crate::job::{InvalidJob, Job};
use crate::store::{ListFilter, MAX_BULK, StoreError};

/// A bulk action, and the statuses it moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkAction {
    Retry,
    Cancel,
}

impl BulkAction {
    pub fn statuses(self) -> &'static [JobStatus] {
        match self {
            BulkAction::Retry => &[JobStatus::Failed, JobStatus::Canceled],
            BulkAction::Cancel => &[JobStatus::Queued, JobStatus::Retrying, JobStatus::Running],
        }
    }

    fn name(self) -> &'static str {
        match self {
            BulkAction::Retry => "retry",
            BulkAction::Cancel => "cancel",
        }
    }
}

/// Refuses what a bulk action must not run with: no filter at all (every
/// job would match), a status the action cannot move, a limit outside
/// 1..=[`MAX_BULK`].
pub fn check_bulk(filter: &ListFilter, action: BulkAction, limit: u64) -> Result<(), InvalidJob> {
    let allowed = action.statuses();
    let names: Vec<&str> = allowed.iter().map(|status| status.as_str()).collect();
    if let Some(status) = filter.status
        && !allowed.contains(&status)
    {
        return Err(InvalidJob::new(
            "status",
            format!(
                "a {} applies to jobs that are {} (got {status})",
                action.name(),
                names.join(", ")
            ),
        ));
    }
    if filter.status.is_none()
        && filter.queue.is_none()
        && filter.task_type.is_none()
        && filter.created_before.is_none()
        && filter.created_after.is_none()
        && filter.schedule.is_none()
    {
        return Err(InvalidJob::new(
            "filters",
            format!(
                "give at least one filter (status, queue, type, created_before, created_after); \
                 to {} every such job, filter by status ({})",
                action.name(),
                names.join(" or ")
            ),
        ));
    }
    if !(1..=MAX_BULK).contains(&limit) {
        return Err(InvalidJob::new(
            "limit",
            format!("limit must be between 1 and {MAX_BULK} (got {limit})"),
        ));
    }
    Ok(())
}

/// Canceled jobs' ids taken out of Redis at once by a bulk cancel.
const FORGETS_AT_ONCE: usize = 16;

/// What a bulk cancel did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BulkCanceled {
    /// Waiting jobs now `canceled`.
    pub canceled: Vec<Job>,
    /// Running jobs whose workers were asked to stop them.
    pub requested: Vec<Job>,
    /// PostgreSQL failed after the waiting jobs were canceled (that much
    /// committed), before the running ones were asked to stop: ask again.
    pub unfinished: bool,
}

impl Client {
    /// Queues again up to `limit` failed or canceled jobs matching
    /// `filter` (as [`Client::retry`] does one) and publishes them. Runs
    /// to the end even if the caller stops waiting.
    pub async fn retry_matching(
        &self,
        filter: ListFilter,
        limit: u64,
    ) -> Result<Vec<Job>, StoreError> {
        check_bulk(&filter, BulkAction::Retry, limit)?;
        let client = self.clone();
        self.detached(async move {
            let jobs = client.store.requeue_matching(&filter, limit).await?;
            if !jobs.is_empty() {
                tracing::info!(
                    event = "jobs_requeued",
                    count = jobs.len(),
                    "{} jobs queued again by hand",
                    jobs.len()
                );
                client.publish_committed(&jobs).await;
            }
            Ok(jobs)
        })
        .await
    }

    /// Cancels up to `limit` waiting jobs matching `filter`, and asks the
    /// workers of up to `limit` running ones to stop them (as
    /// [`Client::cancel`] does one). Runs to the end even if the caller
    /// stops waiting.
    pub async fn cancel_matching(
        &self,
        filter: ListFilter,
        limit: u64,
    ) -> Result<BulkCanceled, StoreError> {
        check_bulk(&filter, BulkAction::Cancel, limit)?;
        let client = self.clone();
        self.detached(async move {
            let canceled = client.store.cancel_waiting_matching(&filter, limit).await?;
            // A few at a time: 10,000 ids one after another would take
            // seconds of round trips.
            futures::stream::iter(&canceled)
                .for_each_concurrent(FORGETS_AT_ONCE, |job| client.forget(job))
                .await;
            let room = limit.saturating_sub(canceled.len() as u64);
            let mut unfinished = false;
            let requested = if room == 0 {
                Vec::new()
            } else {
                match client.store.request_cancel_matching(&filter, room).await {
                    Ok(requested) => requested,
                    // The cancels made are committed: they are the answer,
                    // not an error that would read as "nothing was done".
                    Err(err) if !canceled.is_empty() => {
                        tracing::warn!(error = %err, canceled = canceled.len(),
                            "bulk cancel: the running jobs could not be asked to stop");
                        unfinished = true;
                        Vec::new()
                    }
                    Err(err) => return Err(err),
                }
            };
            for job in &requested {
                if let Err(err) = client
                    .broker
                    .notify_cancel(crate::JobId::from(job.id))
                    .await
                {
                    tracing::warn!(job.id = %job.id, error = %err,
                        "could not notify workers of a cancel; the next heartbeat carries it");
                    break;
                }
            }
            tracing::info!(
                event = "jobs_canceled",
                canceled = canceled.len(),
                requested = requested.len(),
                "bulk cancel"
            );
            Ok(BulkCanceled {
                canceled,
                requested,
                unfinished,
            })
        })
        .await
    }
}
