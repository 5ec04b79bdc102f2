//! `/ui/login` and `/ui/logout`: the token for a session cookie, and back.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use super::layout;
use super::session::{self, Csrf, Post};
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct Next {
    next: Option<String>,
}

fn login_page(csrf: &Csrf, next: &str, failed: bool) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (layout::head("Log in", false))
            body {
                main #main.error-page {
                    h1 { "Conveyor" }
                    p { "This dashboard is protected by the API token (" code { "CONVEYOR_API_TOKEN" } ")." }
                    @if failed {
                        p.notice.error-text role="alert" { "That is not the token. Try again." }
                    }
                    form method="post" action="/ui/login" {
                        (csrf.field())
                        input type="hidden" name="next" value=(next);
                        p.filters {
                            label for="token" { "API token"
                                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                            }
                            button #log-in type="submit" { "Log in" }
                        }
                    }
                }
            }
        }
    }
}

/// The login form; straight to the dashboard when no token is set or
/// the browser is already signed in.
pub async fn form(
    State(state): State<AppState>,
    headers: HeaderMap,
    csrf: Csrf,
    next: Result<Query<Next>, QueryRejection>,
) -> Response {
    let next =
        session::safe_next(next.as_ref().ok().and_then(|Query(n)| n.next.as_deref())).to_owned();
    if session::signed_in(&state, &headers) {
        return Redirect::to(&next).into_response();
    }
    login_page(&csrf, &next, false).into_response()
}

/// Checks the token; on success sets the session cookie and goes on.
pub async fn log_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    csrf: Csrf,
    Post(fields): Post,
) -> Response {
    let next = session::safe_next(fields.get("next")).to_owned();
    if state.settings.api_token.is_none() {
        return Redirect::to(&next).into_response();
    }
    if !state.logins.allows() {
        return crate::ui::UiError(crate::error::ApiError::TooManyRequests {
            code: "too_many_logins",
            detail: "too many wrong tokens in the last minute; try again in a minute".to_owned(),
        })
        .into_response();
    }
    let presented = fields.get("token").unwrap_or("");
    match session::sign_in(&state, &headers, presented) {
        Some(cookie) => {
            tracing::info!(event = "ui_login", "a browser signed in to the dashboard");
            ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
        }
        None => {
            state.logins.failed();
            tracing::warn!(
                event = "ui_login_refused",
                "a dashboard login presented a wrong token"
            );
            (StatusCode::UNAUTHORIZED, login_page(&csrf, &next, true)).into_response()
        }
    }
}

/// Ends the session (the cookie is cleared).
pub async fn log_out(headers: HeaderMap, Post(_): Post) -> Response {
    (
        [(header::SET_COOKIE, session::sign_out(&headers))],
        Redirect::to("/ui/login"),
    )
        .into_response()
}

/// Most wrong tokens one API process takes in a minute; after that every
/// login is refused (429) until the minute is over. Guessing a 16-character
/// token at 20 a minute is hopeless; the price is that someone guessing can
/// keep people out for as long as they keep guessing (the JSON API is not
/// affected).
pub const MAX_FAILED_LOGINS_PER_MINUTE: u32 = 20;

/// Failed logins in the current minute, per process.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    window: std::sync::Mutex<Option<(std::time::Instant, u32)>>,
}

impl LoginThrottle {
    fn with_window<T>(&self, f: impl FnOnce(&mut u32) -> T) -> T {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        let (started, failures) = window.get_or_insert((now, 0));
        if now.duration_since(*started) >= std::time::Duration::from_secs(60) {
            *started = now;
            *failures = 0;
        }
        f(failures)
    }

    /// Whether a login may be tried now.
    pub fn allows(&self) -> bool {
        self.with_window(|failures| *failures < MAX_FAILED_LOGINS_PER_MINUTE)
    }

    pub fn failed(&self) {
        let now_refusing = self.with_window(|failures| {
            *failures = failures.saturating_add(1);
            *failures == MAX_FAILED_LOGINS_PER_MINUTE
        });
        if now_refusing {
            tracing::warn!(
                event = "ui_login_throttled",
                "{MAX_FAILED_LOGINS_PER_MINUTE} wrong tokens this minute: dashboard logins are refused until it is over"
            );
        }
    }
}
