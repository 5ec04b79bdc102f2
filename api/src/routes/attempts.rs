//! `GET /jobs/{id}/attempts`: a job's attempt history.

use axum::Json;
use axum::extract::State;
use conveyor::store::RunningAttempt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, Problem};
use crate::extract::JobIdPath;
use crate::state::AppState;
use crate::views::{AttemptList, AttemptView};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_attempts))
}

/// Every attempt of a job, oldest first: worker, start, end, outcome,
/// error and duration of each, then the running one. A manual retry keeps
/// the earlier attempts.
#[utoipa::path(get, path = "/jobs/{id}/attempts", tag = "jobs",
    params(("id" = uuid::Uuid, Path, description = "Job id")),
    responses(
        (status = 200, body = AttemptList),
        (status = 404, description = "No such job", body = Problem),
        (status = 422, description = "Malformed id", body = Problem),
    ))]
pub async fn list_attempts(
    State(state): State<AppState>,
    JobIdPath(id): JobIdPath,
) -> Result<Json<AttemptList>, ApiError> {
    let (job, ended) = tokio::join!(state.store.find(id), state.store.attempts(id));
    let job = job?.ok_or_else(|| ApiError::job_not_found(id))?;
    let mut items: Vec<AttemptView> = ended?.into_iter().map(crate::views::attempt_view).collect();
    if let Some(running) = RunningAttempt::of(&job) {
        items.push(AttemptView {
            attempt: running.attempt,
            worker_id: running.worker_id,
            started_at: running.started_at,
            ended_at: None,
            outcome: "running".to_owned(),
            error: None,
            duration_ms: None,
        });
    }
    Ok(Json(AttemptList {
        job_id: job.id,
        items,
    }))
}
