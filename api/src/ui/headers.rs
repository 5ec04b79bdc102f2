//! The headers every dashboard response carries.

use axum::http::{HeaderMap, HeaderValue, header};

/// What every dashboard response says about how it may be used: only
/// from this origin's own files (no inline script, no other site's), never
/// inside another site's frame, never sniffed as another type, and no full
/// address in the `Referer` sent elsewhere.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'; object-src 'none'";

pub fn protect(headers: &mut HeaderMap) {
    let pairs = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ];
    for (name, value) in pairs {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// Pages are the state of the moment, and a live refresh's answer is not
/// the page: neither may be stored, or served for the other.
pub fn never_cache(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::VARY,
        HeaderValue::from_static("x-conveyor-live, cookie"),
    );
}
