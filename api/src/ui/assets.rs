//! The dashboard's stylesheet and script, compiled into the binary (no
//! CDN, no build step). Browsers revalidate them on each load (`no-cache`
//! with an `ETag` of their content), so an upgrade is seen at once and an
//! unchanged file costs a 304.

use std::sync::LazyLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

pub const STYLE_PATH: &str = "/ui/assets/style.css";
pub const SCRIPT_PATH: &str = "/ui/assets/ui.js";
pub const ICON_PATH: &str = "/ui/assets/icon.svg";

const STYLE: &str = include_str!("assets/style.css");
const SCRIPT: &str = include_str!("assets/ui.js");
const ICON: &str = include_str!("assets/icon.svg");

static STYLE_TAG: LazyLock<String> = LazyLock::new(|| etag(STYLE));
static SCRIPT_TAG: LazyLock<String> = LazyLock::new(|| etag(SCRIPT));
static ICON_TAG: LazyLock<String> = LazyLock::new(|| etag(ICON));

fn etag(content: &str) -> String {
    let digest = Sha256::digest(content.as_bytes());
    format!("\"{}\"", hex::encode(&digest[..12]))
}

fn serve(headers: &HeaderMap, content: &'static str, tag: &str, kind: &'static str) -> Response {
    // Weak comparison, as If-None-Match asks: `W/"x"` matches `"x"`.
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .split(',')
                .map(str::trim)
                .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == tag)
        });
    let tag = HeaderValue::from_str(tag).unwrap_or_else(|_| HeaderValue::from_static("\"\""));
    let common = [
        (header::ETAG, tag),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    if cached {
        (StatusCode::NOT_MODIFIED, common).into_response()
    } else {
        (
            common,
            [(header::CONTENT_TYPE, HeaderValue::from_static(kind))],
            content,
        )
            .into_response()
    }
}

pub async fn style(headers: HeaderMap) -> Response {
    serve(&headers, STYLE, &STYLE_TAG, "text/css; charset=utf-8")
}

pub async fn script(headers: HeaderMap) -> Response {
    serve(
        &headers,
        SCRIPT,
        &SCRIPT_TAG,
        "text/javascript; charset=utf-8",
    )
}

pub async fn icon(headers: HeaderMap) -> Response {
    serve(&headers, ICON, &ICON_TAG, "image/svg+xml")
}
