//! `GET /jobs/summary`: job counts by status, overall and per queue.
//!
//! Counting reads the whole table (exactly up to 2 million rows, sampled
//! above), so one count at a time runs per process and its answer is served
//! for [`SUMMARY_TTL`]: a dashboard polling every second, or many of them,
//! costs one count per period, not one per request.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use conveyor::{JobStatus, Store};
use tokio::sync::Mutex;
use tokio::time::Instant;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::state::AppState;
use crate::views::{Accuracy, Summary};

/// How long a count is served before the next request counts again.
pub const SUMMARY_TTL: Duration = Duration::from_secs(2);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(summary))
}

/// The latest count (or its failure) and when it was made.
#[derive(Debug, Default)]
pub struct SummaryCache {
    latest: Mutex<Option<(Instant, Option<Summary>)>>,
}

impl SummaryCache {
    /// The latest summary if it is younger than [`SUMMARY_TTL`], else a
    /// new count. Callers arriving during a count wait for it. A count
    /// that failed is remembered for the same time, so that callers
    /// waiting behind a slow, failing count do not each run one more.
    async fn get(&self, store: &Store) -> Result<Summary, ApiError> {
        self.get_within(store, SUMMARY_TTL).await
    }

    /// [`SummaryCache::get`], serving a count up to `max_age` old.
    pub(crate) async fn get_within(
        &self,
        store: &Store,
        max_age: Duration,
    ) -> Result<Summary, ApiError> {
        let mut latest = self.latest.lock().await;
        if let Some((counted, summary)) = latest.as_ref()
            && counted.elapsed() < max_age
        {
            return summary.clone().ok_or_else(recently_failed);
        }
        let counted = count(store).await;
        *latest = Some((Instant::now(), counted.as_ref().ok().cloned()));
        counted
    }
}

fn recently_failed() -> ApiError {
    ApiError::Unavailable {
        code: "summary_unavailable",
        detail: "counting jobs failed moments ago; try again in a few seconds".to_owned(),
    }
}

/// Job counts by status, overall and per queue, at most two seconds old.
#[utoipa::path(get, path = "/jobs/summary", tag = "jobs",
    responses((status = 200, body = Summary)))]
pub async fn summary(State(state): State<AppState>) -> Result<Json<Summary>, ApiError> {
    Ok(Json(state.summaries.get(&state.store).await?))
}

async fn count(store: &Store) -> Result<Summary, ApiError> {
    let job_counts = store.job_counts().await?;
    let zeroes = || -> BTreeMap<String, i64> {
        JobStatus::ALL
            .iter()
            .map(|status| (status.as_str().to_owned(), 0))
            .collect()
    };
    let mut by_status = zeroes();
    let mut by_queue: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for count in job_counts.counts {
        *by_status.entry(count.status.clone()).or_default() += count.count;
        *by_queue
            .entry(count.queue)
            .or_insert_with(zeroes)
            .entry(count.status)
            .or_default() += count.count;
    }
    Ok(Summary {
        total: by_status.values().sum(),
        by_status,
        by_queue,
        accuracy: if job_counts.exact {
            Accuracy::Exact
        } else {
            Accuracy::Estimated
        },
        estimated_statuses: if job_counts.exact {
            Vec::new()
        } else {
            vec![
                "completed".to_owned(),
                "failed".to_owned(),
                "canceled".to_owned(),
            ]
        },
    })
}
