//! Who may use the dashboard, and that every change comes from its own
//! pages.
//!
//! - **Sign-in.** With `CONVEYOR_API_TOKEN` set, the login form trades the
//!   token for a session cookie: `<expiry>.<HMAC-SHA256 of the expiry,
//!   keyed by the token>`, `HttpOnly` (no script reads it) and
//!   `SameSite=Strict` (no other site's page sends it). Nothing is stored
//!   server-side, so every API replica accepts it, and changing the token
//!   ends every session.
//! - **Forms.** Every state-changing form carries a random token that must
//!   equal the `conveyor_csrf` cookie (double submit): another site can
//!   make a browser post a form, but can neither read the cookie nor set
//!   it. The API-wide `Sec-Fetch-Site`/`Origin` check
//!   ([`crate::auth::refuse_cross_site`]) applies on top, and so does
//!   `SameSite=Strict` on both cookies.
//! - **Read-only.** `CONVEYOR_UI_READ_ONLY=true` hides every action and
//!   makes its route answer 403 ([`Action`]).

use std::collections::HashMap;

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use hmac::{Hmac, Mac};
use maud::{Markup, html};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::UiError;
use crate::error::ApiError;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "conveyor_session";
pub const CSRF_COOKIE: &str = "conveyor_csrf";
/// How long a sign-in lasts.
pub const SESSION_SECS: i64 = 12 * 3_600;
/// How far apart API replicas' clocks may be for a session made on one to
/// be taken by another.
const CLOCK_SLACK_SECS: i64 = 300;
/// Name of the hidden field that carries the form token.
pub const CSRF_FIELD: &str = "csrf";

/// The form token of this browser (its `conveyor_csrf` cookie, or a new
/// one the response sets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Csrf(String);

impl Csrf {
    fn fresh() -> Self {
        let bytes: [u8; 32] = rand::random();
        Csrf(hex::encode(bytes))
    }

    /// Whether `text` could be a token this module made (so a cookie of
    /// another shape is replaced, not echoed into pages).
    fn is_token(text: &str) -> bool {
        text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
    }

    /// The hidden input every state-changing form carries.
    pub fn field(&self) -> Markup {
        html! { input type="hidden" name=(CSRF_FIELD) value=(self.0); }
    }

    fn matches(&self, presented: &str) -> bool {
        bool::from(self.0.as_bytes().ct_eq(presented.as_bytes()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Csrf {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, UiError> {
        parts.extensions.get::<Csrf>().cloned().ok_or_else(|| {
            UiError::from(ApiError::Internal("the form-token layer is missing".into()))
        })
    }
}

/// The value of cookie `name`, if the request has it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value for the dashboard's path. `Secure` when the
/// request came over HTTPS (as a proxy says in `X-Forwarded-Proto`):
/// browsers refuse `Secure` cookies over plain HTTP to other hosts than
/// localhost, and a dashboard on `http://api:8000` must still work.
fn set_cookie(headers: &HeaderMap, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|proto| proto.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
    let text = format!(
        "{name}={value}; Path=/ui; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Gives every dashboard request its form token, setting the cookie when
/// the browser had none (or one of another shape).
pub async fn form_token(mut request: Request, next: Next) -> Response {
    let existing = cookie(request.headers(), CSRF_COOKIE)
        .filter(|value| Csrf::is_token(value))
        .map(|value| Csrf(value.to_owned()));
    let (csrf, new) = match existing {
        Some(csrf) => (csrf, false),
        None => (Csrf::fresh(), true),
    };
    let cookie = new.then(|| set_cookie(request.headers(), CSRF_COOKIE, &csrf.0, 30 * 86_400));
    request.extensions_mut().insert(csrf);
    let mut response = next.run(request).await;
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// The session signature of `expires` under `token` (HMAC takes keys of
/// any length, so `None` does not happen in practice, and then nothing is
/// signed and nothing accepted).
fn signature(token: &str, expires: i64) -> Option<String> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(token.as_bytes()).ok()?;
    mac.update(format!("conveyor-ui-session:{expires}").as_bytes());
    Some(hex::encode(mac.finalize().into_bytes()))
}

fn session_value(token: &str, now: i64) -> Option<String> {
    let expires = now + SESSION_SECS;
    Some(format!("{expires}.{}", signature(token, expires)?))
}

/// Whether `value` is a session this token signed that has not expired.
fn valid_session(token: &str, value: &str, now: i64) -> bool {
    let Some((expires, presented)) = value.split_once('.') else {
        return false;
    };
    let Ok(expires) = expires.parse::<i64>() else {
        return false;
    };
    let Some(expected) = signature(token, expires) else {
        return false;
    };
    // The expiry is signed; the upper bound only refuses lifetimes no
    // login gives, with slack for replicas whose clocks differ.
    let fresh = expires > now && expires <= now + SESSION_SECS + CLOCK_SLACK_SECS;
    fresh && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

/// Whether this request may see the dashboard: always without a token,
/// else with a valid session cookie.
pub fn signed_in(state: &AppState, headers: &HeaderMap) -> bool {
    match state.settings.api_token.as_deref() {
        None => true,
        Some(token) => cookie(headers, SESSION_COOKIE)
            .is_some_and(|value| valid_session(token, value, chrono::Utc::now().timestamp())),
    }
}

/// Sends a browser without a session to the login form (or, for a form
/// post, answers 401: replaying a post after login would surprise).
pub async fn require_session(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if signed_in(&state, request.headers()) {
        return next.run(request).await;
    }
    if request.method() == Method::GET || request.method() == Method::HEAD {
        let wanted = request
            .uri()
            .path_and_query()
            .map_or("/ui", |path| path.as_str());
        let next = form_urlencoded_component(wanted);
        return Redirect::to(&format!("/ui/login?next={next}")).into_response();
    }
    UiError::from(ApiError::Unauthorized).into_response()
}

/// Percent-encodes everything but unreserved characters.
fn form_urlencoded_component(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Where to go after logging in: a dashboard path, never another site
/// (`//evil.example` and `/\evil.example` are other sites to a browser).
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(path)
            if (path == "/ui" || path.starts_with("/ui/") || path.starts_with("/ui?"))
                && !path.contains('\\')
                && !path.bytes().any(|b| b.is_ascii_control()) =>
        {
            path
        }
        _ => "/ui",
    }
}

/// The session cookie for a token just presented, or `None` if it is not
/// the token. Digests are compared in constant time, as the API does.
pub fn sign_in(state: &AppState, headers: &HeaderMap, presented: &str) -> Option<HeaderValue> {
    use sha2::Digest;
    let token = state.settings.api_token.as_deref()?;
    let matches = Sha256::digest(presented.as_bytes()).ct_eq(&Sha256::digest(token.as_bytes()));
    if !bool::from(matches) {
        return None;
    }
    let value = session_value(token, chrono::Utc::now().timestamp())?;
    Some(set_cookie(headers, SESSION_COOKIE, &value, SESSION_SECS))
}

/// The cookie that ends a session.
pub fn sign_out(headers: &HeaderMap) -> HeaderValue {
    set_cookie(headers, SESSION_COOKIE, "", 0)
}

/// A form post's fields, once its token matched.
#[derive(Debug, Default)]
pub struct Fields(HashMap<String, String>);

impl Fields {
    /// The field's value; an empty one counts as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(|value| value.trim())
            .filter(|value| !value.is_empty())
    }
}

/// A checked form post: the form token matched, and it is a
/// state-changing action, so it is refused when the dashboard is
/// read-only.
#[derive(Debug)]
pub struct Action(pub Fields);

/// A checked form post that changes nothing on the server's data (log
/// in, log out): allowed when read-only.
#[derive(Debug)]
pub struct Post(pub Fields);

/// The fields of a form post, its body read as the JSON API reads bodies
/// (413 over the limit, 408 when it stalls, 415 for another type).
async fn checked_fields(request: Request, state: &AppState) -> Result<Fields, UiError> {
    let csrf = request.extensions().get::<Csrf>().cloned().ok_or_else(|| {
        UiError::from(ApiError::Internal("the form-token layer is missing".into()))
    })?;
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|kind| kind.to_str().ok())
        .and_then(|kind| kind.split(';').next())
        .is_some_and(|kind| {
            kind.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(UiError::from(ApiError::UnsupportedMediaType {
            detail: "dashboard forms are sent as application/x-www-form-urlencoded".to_owned(),
        }));
    }
    let body = crate::extract::read_body(request, state).await?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).map_err(|err| {
        UiError::from(ApiError::BadRequest {
            code: "invalid_form",
            detail: format!("this form could not be read: {err}"),
        })
    })?;
    let mut fields = HashMap::new();
    for (name, value) in pairs {
        // A field given twice is refused, as on the pages' filters: which
        // one a bulk action used would be anyone's guess.
        if fields.contains_key(&name) {
            return Err(UiError::from(ApiError::BadRequest {
                code: "invalid_form",
                detail: format!("the field {name:?} is given more than once"),
            }));
        }
        fields.insert(name, value);
    }
    let presented = fields.get(CSRF_FIELD).map_or("", String::as_str);
    if !csrf.matches(presented) {
        return Err(UiError::from(ApiError::Forbidden {
            code: "form_token_mismatch",
            detail: "this form is out of date or came from another site; reload the page and try \
                     again"
                .to_owned(),
        }));
    }
    Ok(Fields(fields))
}

impl FromRequest<AppState> for Action {
    type Rejection = UiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, UiError> {
        if state.settings.ui_read_only {
            return Err(UiError::from(ApiError::Forbidden {
                code: "read_only",
                detail: "this dashboard is read-only (CONVEYOR_UI_READ_ONLY)".to_owned(),
            }));
        }
        Ok(Action(checked_fields(request, state).await?))
    }
}

impl FromRequest<AppState> for Post {
    type Rejection = UiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, UiError> {
        Ok(Post(checked_fields(request, state).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_holds_until_it_expires_and_only_for_its_token() {
        let now = 1_700_000_000;
        let value = session_value("secret", now).unwrap_or_default();
        assert!(valid_session("secret", &value, now));
        assert!(valid_session("secret", &value, now + SESSION_SECS - 1));
        assert!(!valid_session("secret", &value, now + SESSION_SECS));
        // A replica whose clock is behind the one that signed it.
        assert!(valid_session("secret", &value, now - 60));
        assert!(!valid_session("other", &value, now), "a new token ends it");
        let (expires, signature) = value.split_once('.').unwrap_or_default();
        let longer = format!("{}.{signature}", expires.parse::<i64>().unwrap_or(0) + 1);
        assert!(
            !valid_session("secret", &longer, now),
            "its expiry is signed"
        );
        for junk in ["", ".", "x.y", "999999999999.abc", "1.2.3"] {
            assert!(!valid_session("secret", junk, now), "{junk:?}");
        }
    }

    #[test]
    fn only_dashboard_paths_are_followed_after_login() {
        assert_eq!(
            safe_next(Some("/ui/jobs?status=failed")),
            "/ui/jobs?status=failed"
        );
        assert_eq!(safe_next(Some("/ui")), "/ui");
        for other in [
            "//evil.example",
            "https://evil.example/ui",
            "/ui\\@evil",
            "/uix",
            "/docs",
            "/ui/\n",
        ] {
            assert_eq!(safe_next(Some(other)), "/ui", "{other:?}");
        }
        assert_eq!(safe_next(None), "/ui");
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; conveyor_csrf_x=2"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("conveyor_csrf=3"));
        assert_eq!(cookie(&headers, CSRF_COOKIE), Some("3"));
        assert_eq!(cookie(&headers, "a"), Some("1"));
        assert_eq!(cookie(&headers, "b"), None);
    }
}
