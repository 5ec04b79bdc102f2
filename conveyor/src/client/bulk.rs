//! Bulk actions: retry or cancel every job matching a filter, a bounded
//! number per call, with the same ordering rules as the single-job paths
//! (commit, then publish; a canceled waiting job leaves Redis; a running
//! one is told to stop).

use futures::StreamExt;

use super::Client;
use crate::job::Job;
use crate::store::{ListFilter, StoreError};

/// Canceled jobs' ids taken out of Redis at once by a bulk cancel.
const FORGETS_AT_ONCE: usize = 16;

/// What a bulk cancel did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BulkCanceled {
    /// Waiting jobs now `canceled`.
    pub canceled: Vec<Job>,
    /// Running jobs whose workers were asked to stop them.
    pub requested: Vec<Job>,
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
        let client = self.clone();
        self.detached(async move {
            let canceled = client.store.cancel_waiting_matching(&filter, limit).await?;
            // A few at a time: 10,000 ids one after another would take
            // seconds of round trips.
            futures::stream::iter(&canceled)
                .for_each_concurrent(FORGETS_AT_ONCE, |job| client.forget(job))
                .await;
            let room = limit.saturating_sub(canceled.len() as u64);
            let requested = if room > 0 {
                client.store.request_cancel_matching(&filter, room).await?
            } else {
                Vec::new()
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
            })
        })
        .await
    }
}
