//! `/ui/failed`: the dead-letter view — jobs that failed for good, newest
//! first, with their last error; retry one or every one that matches.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use maud::Markup;

use super::jobs::{JobQuery, listing, read_query};
use super::{PageContext, UiError};
use crate::state::AppState;

pub async fn page(
    State(state): State<AppState>,
    context: PageContext,
    query: Result<Query<JobQuery>, QueryRejection>,
) -> Result<Markup, UiError> {
    let query = JobQuery {
        status: "failed".to_owned(),
        ..read_query(query)?
    };
    let shell = context.shell(&state, "/ui/failed", "Failed jobs").await?;
    let body = listing(&state, &shell, &query, "/ui/failed", true).await?;
    Ok(shell.page(body))
}
