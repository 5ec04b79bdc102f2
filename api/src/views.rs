//! The JSON shapes the API answers with. Field names are part of the
//! contract: renaming one is a breaking change.

pub use conveyor_api_types::{
    Accuracy, AttemptList, AttemptView, Health, JobList, JobResult, JobView, Readiness, Summary,
};

use conveyor::Job;

/// A job as `GET /jobs/{id}` shows it.
pub fn job_view(job: Job) -> JobView {
    let traceparent = conveyor::trace::TraceParent::of_job(&job).to_string();
    JobView {
        id: job.id,
        queue: job.queue,
        task_type: job.task_type,
        payload: job.payload,
        priority: job.priority,
        status: job.status.as_str().to_owned(),
        attempts: job.attempts,
        max_attempts: job.max_attempts,
        timeout_seconds: job.timeout_seconds,
        run_at: job.run_at,
        result: job.result,
        error_message: job.error_message,
        idempotency_key: job.idempotency_key,
        worker_id: job.worker_id,
        lease_expires_at: job.lease_expires_at,
        cancel_requested: job.cancel_requested,
        created_at: job.created_at,
        updated_at: job.updated_at,
        started_at: job.started_at,
        completed_at: job.completed_at,
        failed_at: job.failed_at,
        canceled_at: job.canceled_at,
        progress: job.progress,
        schedule: job.schedule_name,
        schedule_tick: job.schedule_tick,
        traceparent,
    }
}

/// An ended attempt as `GET /jobs/{id}/attempts` shows it.
pub fn attempt_view(record: conveyor::store::AttemptRecord) -> AttemptView {
    AttemptView {
        attempt: record.attempt,
        duration_ms: Some(record.duration_ms()),
        worker_id: record.worker_id,
        started_at: record.started_at,
        ended_at: Some(record.ended_at),
        outcome: record.outcome,
        error: record.error,
    }
}
