//! The manual retry: a failed or canceled job queued again from attempt 1.

use super::Client;
use crate::job::JobId;
use crate::store::{StoreError, Transition};

impl Client {
    /// `failed | canceled` → `queued`, then published. `Lost` with the row
    /// as found when the job is in another state. Runs to the end even if
    /// the caller stops waiting.
    pub async fn retry(&self, id: JobId) -> Result<Transition, StoreError> {
        let client = self.clone();
        self.detached(async move {
            let requeued = client.store.requeue(id).await?;
            match &requeued {
                Transition::Won(job) => {
                    tracing::info!(event = "job_requeued", job.id = %job.id, job.r#type = %job.task_type,
                        job.queue = %job.queue, "job {} queued again by hand", job.id);
                    client.publish_committed(std::slice::from_ref(job)).await;
                }
                // Already waiting: perhaps requeued by an earlier try whose
                // reply was lost, and never published. Publishing it again
                // costs at most a skipped duplicate delivery.
                Transition::Lost(job) if job.status.is_waiting() && !job.cancel_requested => {
                    let _ = client.publish(std::slice::from_ref(job)).await;
                }
                _ => {}
            }
            Ok(requeued)
        })
        .await
    }
}
