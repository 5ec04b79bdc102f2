//! Who may call the API: the optional bearer tokens (`CONVEYOR_API_TOKEN`,
//! and `CONVEYOR_WORKER_TOKEN` for the worker protocol), and no cross-site
//! browser forms.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// Lets the request through when no token is configured or when it carries
/// the right one. The scheme is matched in any case (`Bearer`, `bearer`).
/// The two tokens' SHA-256 digests are compared, in constant time, so
/// neither the token's bytes nor its length can be learned from response
/// times.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    check(state.settings.api_token.as_deref(), &request)?;
    Ok(next.run(request).await)
}

/// [`require_token`] for the worker protocol's routes: the worker token
/// (`CONVEYOR_WORKER_TOKEN`) when one is configured, and then only it, so
/// that holders of the API token (job submitters) cannot claim jobs;
/// otherwise the API token, as every route.
pub async fn require_worker_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let expected = state
        .settings
        .worker_token
        .as_deref()
        .or(state.settings.api_token.as_deref());
    check(expected, &request)?;
    Ok(next.run(request).await)
}

/// Passes when no token is expected or the request carries it.
fn check(expected: Option<&str>, request: &Request) -> Result<(), ApiError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let presented = bearer_token(request.headers()).unwrap_or("");
    let matches = Sha256::digest(presented.as_bytes()).ct_eq(&Sha256::digest(expected.as_bytes()));
    if bool::from(matches) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
}

/// Refuses a state-changing request that a browser sent on behalf of a page
/// of another site. A page can make its visitor's browser post a
/// `multipart/form-data` form to the API without asking first (no CORS
/// preflight), and the browser would carry no token, but an API without a
/// token, or one reached through a trusting proxy, would act on it.
/// Browsers say where a request comes from: `Sec-Fetch-Site` when they send
/// it (only `same-origin` and `none`, a request the user typed, pass), else
/// `Origin` (refused unless it names the host the request was sent to, as
/// `X-Forwarded-Host` or `Host` says). Clients other than browsers send
/// neither and are not affected.
pub async fn refuse_cross_site(request: Request, next: Next) -> Result<Response, ApiError> {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !safe && let Some(reason) = cross_site(request.headers()) {
        return Err(ApiError::Forbidden {
            code: "cross_site_request",
            detail: format!(
                "refused: {reason}. Browsers may call this API only from its own origin"
            ),
        });
    }
    Ok(next.run(request).await)
}

fn cross_site(headers: &HeaderMap) -> Option<String> {
    let text = |name| headers.get(name).and_then(|value| value.to_str().ok());
    // Browsers that send Sec-Fetch-Site say where the request comes from,
    // whatever proxies did to Host on the way: its word stands.
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        let own = site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none");
        return (!own).then(|| format!("the browser says this request is {site}"));
    }
    let origin = headers.get(header::ORIGIN)?;
    let origin = origin.to_str().unwrap_or("");
    let host = text(header::HeaderName::from_static("x-forwarded-host"))
        .or_else(|| text(header::HOST))
        .unwrap_or("");
    let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
    if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
        None
    } else {
        Some(format!(
            "it comes from a page at {origin:?}, not from {host:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    header::HeaderName::from_static(name),
                    header::HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    #[test]
    fn the_bearer_scheme_is_matched_in_any_case() {
        for value in ["Bearer abc", "bearer abc", "BEARER  abc", " Bearer abc "] {
            let map = headers(&[("authorization", value)]);
            assert_eq!(bearer_token(&map), Some("abc"), "{value:?}");
        }
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Basic abc")])),
            None
        );
        assert_eq!(bearer_token(&headers(&[("authorization", "Bearer")])), None);
    }

    #[test]
    fn only_requests_from_the_apis_own_origin_or_no_browser_pass() {
        assert_eq!(cross_site(&headers(&[])), None, "not a browser");
        assert_eq!(
            cross_site(&headers(&[
                ("host", "api:8000"),
                ("origin", "http://api:8000")
            ])),
            None
        );
        assert_eq!(
            cross_site(&headers(&[
                ("host", "api:8000"),
                ("sec-fetch-site", "same-origin")
            ])),
            None
        );
        // Behind a proxy that rewrote Host, the browser's word stands.
        assert_eq!(
            cross_site(&headers(&[
                ("host", "backend:8000"),
                ("origin", "https://jobs.example"),
                ("sec-fetch-site", "same-origin"),
            ])),
            None
        );
        for refused in [
            headers(&[("host", "api:8000"), ("origin", "https://evil.example")]),
            headers(&[("host", "api:8000"), ("origin", "null")]),
            headers(&[("host", "api:8000"), ("sec-fetch-site", "cross-site")]),
            headers(&[("host", "api:8000"), ("sec-fetch-site", "same-site")]),
            headers(&[("host", "api:8000"), ("sec-fetch-site", "something-new")]),
        ] {
            assert!(cross_site(&refused).is_some(), "{refused:?}");
        }
    }
}
