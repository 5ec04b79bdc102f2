//! The web dashboard under `/ui`: server-rendered pages (maud), one
//! stylesheet and one small script, all inside the binary. Every page
//! reads through the same core calls as the JSON API, and every button
//! posts a plain form to a route that calls the core client, so the
//! ordering rules stay in one place and the pages work without script.
//! The script only makes them live (see `assets/ui.js`).
//!
//! # Layout
//! - [`session`]: sign-in with the API token, form tokens, read-only.
//! - [`headers`]: the protective headers on every response.
//! - [`layout`]: the page shell and formatting (relative times, badges).
//! - [`assets`]: the stylesheet and the script.
//! - [`counts`]: job counts kept for the lists' live refreshes.
//! - [`find`]: a job by id or idempotency key.
//! - [`login`]: the login and logout routes, and the throttle on guessing.
//! - [`overview`], [`queues`], [`jobs`], [`job`], [`failed`],
//!   [`schedules`], [`workers`]: one module per page, with its actions.

pub mod assets;
pub mod counts;
pub mod failed;
pub mod find;
pub mod headers;
pub mod job;
pub mod jobs;
pub mod layout;
pub mod login;
pub mod overview;
pub mod queues;
pub mod schedules;
pub mod session;
pub mod workers;

use axum::Router;
use axum::extract::{FromRequestParts, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::AppState;
use layout::Shell;
use session::Csrf;

/// Every dashboard route. Pages need a session when a token is set; the
/// login form and the assets do not.
pub fn router(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/ui", get(overview::page))
        .route("/ui/queues", get(queues::page))
        .route("/ui/queues/{queue}/pause", post(queues::pause))
        .route("/ui/queues/{queue}/resume", post(queues::resume))
        .route("/ui/jobs", get(jobs::page))
        .route("/ui/jobs/retry", post(jobs::retry_matching))
        .route("/ui/jobs/cancel", post(jobs::cancel_matching))
        .route("/ui/find", get(find::find))
        .route("/ui/jobs/{id}", get(job::page))
        .route("/ui/jobs/{id}/retry", post(job::retry))
        .route("/ui/jobs/{id}/cancel", post(job::cancel))
        .route("/ui/failed", get(failed::page))
        .route("/ui/schedules", get(schedules::page))
        .route("/ui/schedules/{name}/pause", post(schedules::pause))
        .route("/ui/schedules/{name}/resume", post(schedules::resume))
        .route("/ui/schedules/{name}/trigger", post(schedules::trigger))
        .route("/ui/workers", get(workers::page))
        .route("/ui/logout", post(login::log_out))
        .route("/ui/{*rest}", any(not_found))
        .layer(from_fn_with_state(state, session::require_session));
    Router::new()
        .route("/ui/login", get(login::form).post(login::log_in))
        .route(assets::STYLE_PATH, get(assets::style))
        .route(assets::SCRIPT_PATH, get(assets::script))
        .route(assets::ICON_PATH, get(assets::icon))
        .merge(pages)
        .layer(from_fn(session::form_token))
}

/// A dashboard failure: the API's error (which picks the status code, in
/// one place), shown as a page rather than as JSON.
#[derive(Debug)]
pub struct UiError(pub ApiError);

impl From<ApiError> for UiError {
    fn from(err: ApiError) -> Self {
        UiError(err)
    }
}

impl From<conveyor::StoreError> for UiError {
    fn from(err: conveyor::StoreError) -> Self {
        UiError(ApiError::from(err))
    }
}

/// When a dashboard page last logged that Redis was unavailable (seconds
/// since the epoch): open tabs refresh every two seconds each, and one
/// warning in ten seconds says it.
static REDIS_DOWN_LOGGED: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

impl From<conveyor::BrokerError> for UiError {
    fn from(err: conveyor::BrokerError) -> Self {
        use std::sync::atomic::Ordering;
        let now = chrono::Utc::now().timestamp();
        let last = REDIS_DOWN_LOGGED.load(Ordering::Relaxed);
        if now - last >= 10
            && REDIS_DOWN_LOGGED
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(event = "redis_unavailable", error = %err, "dashboard pages cannot read Redis");
        }
        UiError(ApiError::Unavailable {
            code: "redis_unavailable",
            detail: "Redis is unavailable; this page will load again once it is back".to_owned(),
        })
    }
}

impl From<conveyor::client::OverviewError> for UiError {
    fn from(err: conveyor::client::OverviewError) -> Self {
        match err {
            conveyor::client::OverviewError::Store(err) => err.into(),
            conveyor::client::OverviewError::Broker(err) => err.into(),
        }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let problem = self.0.problem();
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let page = error_page(status, &problem.title, &problem.detail, &problem.code);
        (status, page).into_response()
    }
}

/// The page for a problem: its status, what was wrong, its code.
fn error_page(status: StatusCode, title: &str, detail: &str, code: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (layout::head(title, false))
            body {
                header.top {
                    a.brand href="/ui" { "Conveyor" }
                    nav aria-label="Pages" {
                        ul {
                            @for (path, label) in layout::PAGES {
                                li { a href=(path) { (label) } }
                            }
                        }
                    }
                }
                main #main.error-page {
                    h1 { (status.as_u16()) " " (title) }
                    p.detail { (detail) }
                    p.muted { "code: " code { (code) } }
                    p { a href="/ui" { "Back to the overview" } }
                }
            }
        }
    }
}

/// For dashboard paths: the protective headers on every answer, and a
/// page for every problem document answered before a dashboard handler
/// could (the API's limits, timeouts, cross-site check, body limit,
/// method check, panic guard), so a browser never shows raw JSON.
pub async fn dashboard_responses(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    if path != "/ui" && !path.starts_with("/ui/") {
        return next.run(request).await;
    }
    let mut response = next.run(request).await;
    headers::protect(response.headers_mut());
    let is_page = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|kind| kind.as_bytes().starts_with(b"text/html"));
    if is_page {
        headers::never_cache(response.headers_mut());
    }
    let is_problem = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|kind| kind.as_bytes().starts_with(b"application/problem+json"));
    if !is_problem {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Problem documents are small; a body that cannot be read shows the
    // status alone.
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let problem: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let text = |field: &str| problem[field].as_str().unwrap_or_default().to_owned();
    let page = error_page(parts.status, &text("title"), &text("detail"), &text("code"));
    parts.headers.remove(axum::http::header::CONTENT_TYPE);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    (parts, page).into_response()
}

/// A typed `/ui/jobs/` goes to `/ui/jobs`; anything else is a 404 page.
async fn not_found(uri: axum::http::Uri) -> Response {
    let path = uri.path();
    if path.len() > 1 && path.ends_with('/') && !path.ends_with("//") {
        let trimmed = path.trim_end_matches('/');
        let to = match uri.query() {
            Some(query) => format!("{trimmed}?{query}"),
            None => trimmed.to_owned(),
        };
        return Redirect::permanent(&to).into_response();
    }
    UiError(ApiError::NotFound {
        code: "page_not_found",
        detail: "the dashboard has no such page".to_owned(),
    })
    .into_response()
}

/// An API extractor (path parameters) whose refusal is shown as a page.
#[derive(Debug)]
pub struct Ui<T>(pub T);

impl<S, T> FromRequestParts<S> for Ui<T>
where
    S: Send + Sync,
    T: FromRequestParts<S, Rejection = ApiError>,
{
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, UiError> {
        T::from_request_parts(parts, state)
            .await
            .map(Ui)
            .map_err(UiError)
    }
}

/// What an action did, carried to the next page in its address: fixed
/// codes and counts, so a link can show no words of its own (only other
/// numbers), and the script drops them from the address once shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Done {
    Paused,
    Resumed,
    Retried,
    Canceled,
    CancelRequested,
    Triggered,
    Nothing,
}

#[derive(Debug, Default, Deserialize)]
pub struct Notice {
    done: Option<Done>,
    /// How many jobs a bulk action changed.
    n: Option<u64>,
    /// How many running jobs a bulk cancel asked to stop.
    m: Option<u64>,
}

impl Notice {
    fn text(&self) -> Option<String> {
        let jobs = |n: u64| {
            if n == 1 {
                "1 job".to_owned()
            } else {
                format!("{} jobs", layout::count(n))
            }
        };
        Some(match (self.done?, self.n) {
            (Done::Paused, _) => "Paused. Running jobs finish; no new ones start.".to_owned(),
            (Done::Resumed, _) => "Resumed.".to_owned(),
            (Done::Retried, Some(n)) => format!("Queued {} again.", jobs(n)),
            (Done::Retried, None) => "Queued again.".to_owned(),
            (Done::Canceled, Some(n)) => match self.m {
                Some(m) if m > 0 => format!(
                    "Canceled {}; asked {} running to stop (they end when their handlers notice).",
                    jobs(n),
                    layout::count(m)
                ),
                _ => format!("Canceled {}.", jobs(n)),
            },
            (Done::Canceled, None) => "Canceled.".to_owned(),
            (Done::CancelRequested, Some(n)) => {
                format!(
                    "Asked {} to stop; they end when their handlers notice.",
                    jobs(n)
                )
            }
            (Done::CancelRequested, None) => {
                "Asked the running attempt to stop; it ends when its handler notices.".to_owned()
            }
            (Done::Triggered, _) => "Enqueued a job from the schedule now.".to_owned(),
            (Done::Nothing, _) => "Nothing matched; nothing changed.".to_owned(),
        })
    }
}

/// The header the script's refreshes carry.
pub const LIVE_HEADER: &str = "x-conveyor-live";

/// What every page handler starts from: the shell's parts.
#[derive(Debug)]
pub struct PageContext {
    pub csrf: Csrf,
    pub notice: Option<String>,
    /// A live refresh (the script's `X-Conveyor-Live: 1`): only the live
    /// regions are wanted.
    pub live_only: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for PageContext {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, UiError> {
        let csrf = Csrf::from_request_parts(parts, state).await?;
        // A malformed notice is no notice, not an error page.
        let notice = Query::<Notice>::from_request_parts(parts, state)
            .await
            .ok()
            .and_then(|Query(notice)| notice.text());
        let live_only = parts
            .headers
            .get(LIVE_HEADER)
            .is_some_and(|value| value.as_bytes() == b"1");
        Ok(PageContext {
            csrf,
            notice,
            live_only,
        })
    }
}

impl PageContext {
    /// The shell for a page titled `title` under navigation entry `current`.
    pub async fn shell(
        self,
        state: &AppState,
        current: &'static str,
        title: impl Into<String>,
    ) -> Result<Shell, UiError> {
        Ok(Shell {
            current,
            title: title.into(),
            now: state.store.db_now().await?,
            csrf: self.csrf,
            read_only: state.settings.ui_read_only,
            login_required: state.settings.api_token.is_some(),
            notice: self.notice,
            live_only: self.live_only,
        })
    }
}

/// After an action: back to `to` with the notice of what was done
/// (303, so reloading the page does not post again).
pub fn done(to: &str, done: Done, n: Option<u64>) -> Redirect {
    done_with(to, done, n, None)
}

/// [`done`] with a second count (a bulk cancel's jobs asked to stop).
pub fn done_with(to: &str, done: Done, n: Option<u64>, m: Option<u64>) -> Redirect {
    let sep = if to.contains('?') { '&' } else { '?' };
    let code = match done {
        Done::Paused => "paused",
        Done::Resumed => "resumed",
        Done::Retried => "retried",
        Done::Canceled => "canceled",
        Done::CancelRequested => "cancel_requested",
        Done::Triggered => "triggered",
        Done::Nothing => "nothing",
    };
    let mut target = format!("{to}{sep}done={code}");
    for (name, count) in [("n", n), ("m", m)] {
        if let Some(count) = count {
            target.push_str(&format!("&{name}={count}"));
        }
    }
    Redirect::to(&target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_say_what_was_done_from_fixed_words() {
        let notice = |done, n, m| {
            Notice {
                done: Some(done),
                n,
                m,
            }
            .text()
        };
        assert_eq!(
            notice(Done::Retried, Some(1), None).as_deref(),
            Some("Queued 1 job again.")
        );
        assert_eq!(
            notice(Done::Canceled, Some(3), Some(2)).as_deref(),
            Some("Canceled 3 jobs; asked 2 running to stop (they end when their handlers notice).")
        );
        assert_eq!(Notice::default().text(), None);
    }

    #[test]
    fn a_redirect_after_an_action_carries_its_counts() {
        let location = |redirect: Redirect| {
            redirect.into_response().headers()[axum::http::header::LOCATION]
                .to_str()
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(
            location(done("/ui/queues", Done::Paused, None)),
            "/ui/queues?done=paused"
        );
        assert_eq!(
            location(done_with(
                "/ui/jobs?queue=a",
                Done::Canceled,
                Some(3),
                Some(2)
            )),
            "/ui/jobs?queue=a&done=canceled&n=3&m=2"
        );
    }
}
