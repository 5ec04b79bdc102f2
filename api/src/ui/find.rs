//! `/ui/find`: a job by its id or its idempotency key.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Redirect;
use conveyor::JobId;
use conveyor::job::check_idempotency_key;
use serde::Deserialize;

use super::UiError;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct Find {
    #[serde(default)]
    q: String,
}

/// Goes to the job with this id or, failing that, this idempotency key.
pub async fn find(
    State(state): State<AppState>,
    query: Result<Query<Find>, QueryRejection>,
) -> Result<Redirect, UiError> {
    let raw = query.map(|Query(find)| find.q).map_err(|rejection| {
        UiError(ApiError::BadRequest {
            code: "invalid_query",
            detail: format!("the search cannot be read: {}", rejection.body_text()),
        })
    })?;
    let wanted = raw.trim();
    if wanted.is_empty() {
        return Ok(Redirect::to("/ui/jobs"));
    }
    let mut job = match wanted.parse::<JobId>() {
        Ok(id) => state.store.find(id).await?,
        Err(_) => None,
    };
    // Keys are matched as typed, then without surrounding spaces (a
    // pasted key often brings some). Text no key can be is not looked up.
    let keys = if raw == wanted {
        vec![wanted]
    } else {
        vec![raw.as_str(), wanted]
    };
    for key in keys {
        if job.is_none() && check_idempotency_key(key).is_ok() {
            job = state.store.find_by_key(key).await?;
        }
    }
    match job {
        Some(job) => Ok(Redirect::to(&format!("/ui/jobs/{}", job.id))),
        None => {
            // The lists show the end of each id; a person pastes that.
            let hint = if (8..=13).contains(&wanted.len())
                && wanted
                    .trim_start_matches('…')
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit())
            {
                " (the lists show only the end of an id: open the job, or hover over its short id, for the whole one)"
            } else {
                ""
            };
            Err(UiError(ApiError::NotFound {
                code: "job_not_found",
                detail: format!(
                    "no job has the id or idempotency key {:?}{hint}",
                    crate::ui::layout::plain(wanted)
                ),
            }))
        }
    }
}
