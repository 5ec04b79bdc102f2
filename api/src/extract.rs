//! Request parsing that fails as problem documents, never as axum's plain
//! text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header;
use axum::http::request::Parts;
use conveyor::JobId;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// What kind of body a request carries, by its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Multipart,
}

/// Classifies the request's content type; anything else is 415.
pub fn body_kind(request: &Request) -> Result<BodyKind, ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        Ok(BodyKind::Json)
    } else if essence == "multipart/form-data" {
        Ok(BodyKind::Multipart)
    } else if essence.is_empty() {
        Err(ApiError::UnsupportedMediaType {
            detail:
                "missing Content-Type: send application/json (or multipart/form-data with a `file`)"
                    .to_owned(),
        })
    } else {
        Err(ApiError::UnsupportedMediaType {
            detail: format!(
                "Content-Type {essence:?} is not accepted: send application/json (or multipart/form-data with a `file`)"
            ),
        })
    }
}

/// A JSON body deserialized into `T`. Syntax errors are 400; a value of the
/// wrong shape is 422 naming the field.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if body_kind(&request)? != BodyKind::Json {
            return Err(ApiError::UnsupportedMediaType {
                detail: "this route accepts application/json only".to_owned(),
            });
        }
        let bytes = read_body(request, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// The whole body, or 413 when it is over the limit.
pub async fn read_body(request: Request, state: &AppState) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge {
                    limit: state.settings.max_body_bytes,
                }
            } else if crate::error::is_body_timeout(&rejection) {
                crate::error::body_timeout()
            } else {
                ApiError::BadRequest {
                    code: "unreadable_body",
                    detail: format!("the request body could not be read: {rejection}"),
                }
            }
        })
}

/// Deserializes `bytes`, reporting the path of a bad field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|err| json_problem(err.path().to_string(), err.into_inner()))?;
    // Trailing bytes after the value are a syntax error too.
    deserializer
        .end()
        .map_err(|err| json_problem(String::new(), err))?;
    Ok(value)
}

/// The field serde says is missing (its message is "missing field `x`").
fn missing_field(err: &serde_json::Error) -> Option<String> {
    let message = err.to_string();
    let rest = message.strip_prefix("missing field `")?;
    rest.split_once('`').map(|(field, _)| field.to_owned())
}

fn json_problem(path: String, err: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::BadRequest {
            code: "malformed_json",
            detail: format!("the body is not valid JSON: {err}"),
        },
        Category::Data if path.is_empty() || path == "." => ApiError::Invalid {
            // A required field left out is named, as a field given wrong is.
            field: missing_field(&err),
            detail: format!("the body does not have the expected shape: {err}"),
        },
        Category::Data => ApiError::Invalid {
            detail: format!("{path}: {err}"),
            field: Some(path),
        },
    }
}

/// The one path parameter of a route, as text; one that cannot be read
/// (not UTF-8 once percent-decoded) is a 422 problem naming `field`.
async fn path_text<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    field: &'static str,
    what: &str,
) -> Result<String, ApiError> {
    let Path(raw) = Path::<String>::from_request_parts(parts, state)
        .await
        .map_err(|rejection| {
            ApiError::invalid(
                field,
                format!(
                    "the {what} in the path cannot be read: {}",
                    rejection.body_text()
                ),
            )
        })?;
    Ok(raw)
}

/// The `{id}` of a job route, parsed; a malformed one (not a UUID, or not
/// even UTF-8 once percent-decoded) is a 422 problem naming `id`.
#[derive(Debug, Clone, Copy)]
pub struct JobIdPath(pub JobId);

impl<S: Send + Sync> FromRequestParts<S> for JobIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = path_text(parts, state, "id", "job id").await?;
        raw.parse()
            .map(JobIdPath)
            .map_err(|_| ApiError::invalid("id", format!("{raw:?} is not a valid job id (a UUID)")))
    }
}

/// The `{queue}` of a queue route, checked like a job's queue field; a bad
/// one is a 422 problem naming `queue`.
#[derive(Debug, Clone)]
pub struct QueuePath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for QueuePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = path_text(parts, state, "queue", "queue name").await?;
        conveyor::job::check_queue_name(&raw)?;
        Ok(QueuePath(raw))
    }
}

/// The `{name}` of a schedule route; a bad one is a 422 problem naming
/// `name`.
#[derive(Debug, Clone)]
pub struct SchedulePath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for SchedulePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = path_text(parts, state, "name", "schedule name").await?;
        if !conveyor::client::is_schedule_name(&raw) {
            return Err(ApiError::invalid(
                "name",
                format!("{raw:?} is not a schedule name (1 to 64 of a-z, 0-9, `_`, `.`, `:`, `-`)"),
            ));
        }
        Ok(SchedulePath(raw))
    }
}

/// The caller's trace context: its `traceparent` header, read by the W3C
/// rules. A header they reject, or more than one, is ignored and the job
/// starts a trace of its own, as the W3C specification asks of a receiver
/// (tracing metadata must not cost a caller its job).
pub fn traceparent(headers: &axum::http::HeaderMap) -> Option<conveyor::trace::TraceParent> {
    let mut values = headers.get_all(conveyor::trace::TRACEPARENT_HEADER).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    value
        .to_str()
        .ok()
        .and_then(conveyor::trace::TraceParent::parse)
}
