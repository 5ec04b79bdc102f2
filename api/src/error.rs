//! The one place that turns errors into HTTP responses.
//!
//! Every error is an RFC 9457 problem document (`application/problem+json`)
//! with a stable, machine-readable `code`. A 500 says nothing about its cause
//! to the client; the cause is logged here, once.

pub use conveyor_api_types::Problem;

use std::any::Any;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use conveyor::StoreError;

/// Everything a handler can fail with.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the body is not JSON, or a parameter cannot be parsed at all.
    BadRequest { code: &'static str, detail: String },
    /// 401: the bearer token is missing or wrong.
    Unauthorized,
    /// 404.
    NotFound { code: &'static str, detail: String },
    /// 403: refused whatever the credentials (a cross-site browser form).
    Forbidden { code: &'static str, detail: String },
    /// 405.
    MethodNotAllowed,
    /// 408: the client took too long to send its body.
    RequestTimeout { detail: String },
    /// 409: the job is in a state that does not allow this.
    Conflict {
        code: &'static str,
        detail: String,
        job_id: Option<String>,
    },
    /// 413: the body is larger than `CONVEYOR_MAX_BODY_BYTES`.
    PayloadTooLarge { limit: usize },
    /// 415: neither JSON nor multipart.
    UnsupportedMediaType { detail: String },
    /// 422: well-formed, but a field is missing, of the wrong type or out of
    /// range.
    Invalid {
        field: Option<String>,
        detail: String,
    },
    /// 429: too many attempts of something limited (dashboard logins).
    TooManyRequests { code: &'static str, detail: String },
    /// 503: PostgreSQL (or, for readiness, Redis) cannot be reached.
    Unavailable { code: &'static str, detail: String },
    /// 500: a bug or an unexpected database error; logged, not shown.
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::Invalid {
            field: Some(field.into()),
            detail: detail.into(),
        }
    }

    pub fn job_not_found(id: impl std::fmt::Display) -> Self {
        ApiError::NotFound {
            code: "job_not_found",
            detail: format!("no job with id {id}"),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem document this error answers with.
    pub fn problem(self) -> Problem {
        self.into_problem()
    }

    fn into_problem(self) -> Problem {
        let status = self.status();
        let (code, detail, field, job_id) = match self {
            ApiError::BadRequest { code, detail }
            | ApiError::NotFound { code, detail }
            | ApiError::Forbidden { code, detail } => (code, detail, None, None),
            ApiError::RequestTimeout { detail } => ("body_timeout", detail, None, None),
            ApiError::Unauthorized => (
                "unauthorized",
                "this route needs the header `Authorization: Bearer <token>` with the API token"
                    .to_owned(),
                None,
                None,
            ),
            ApiError::MethodNotAllowed => (
                "method_not_allowed",
                "this route does not accept that method".to_owned(),
                None,
                None,
            ),
            ApiError::Conflict {
                code,
                detail,
                job_id,
            } => (code, detail, None, job_id),
            ApiError::PayloadTooLarge { limit } => (
                "payload_too_large",
                format!("the request body exceeds the limit of {limit} bytes"),
                None,
                None,
            ),
            ApiError::UnsupportedMediaType { detail } => {
                ("unsupported_media_type", detail, None, None)
            }
            ApiError::Invalid { field, detail } => ("invalid_field", detail, field, None),
            ApiError::Unavailable { code, detail } | ApiError::TooManyRequests { code, detail } => {
                (code, detail, None, None)
            }
            ApiError::Internal(cause) => {
                tracing::error!(error = %cause, "request failed with an internal error");
                (
                    "internal_error",
                    "the server failed to handle this request; it has been logged".to_owned(),
                    None,
                    None,
                )
            }
        };
        Problem {
            problem_type: format!("urn:conveyor:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            code: code.to_owned(),
            field,
            job_id,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, axum::Json(self.into_problem())).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Invalid(invalid) => ApiError::invalid(invalid.field, invalid.to_string()),
            StoreError::Interrupted(_) => ApiError::Unavailable {
                code: "write_interrupted",
                detail: "the server stopped while writing; the job may or may not have been \
                         created: repeat the request with the same idempotency key"
                    .to_owned(),
            },
            // The client tried again for a while to learn whether the write
            // committed; PostgreSQL stayed unreachable.
            err if err.is_unavailable() && err.maybe_written() => ApiError::Unavailable {
                code: "outcome_unknown",
                detail: "PostgreSQL became unreachable while the job was being written, and \
                         stayed so: it may or may not have been created. Repeat the request \
                         with the same idempotency key"
                    .to_owned(),
            },
            err if err.is_unavailable() => ApiError::Unavailable {
                code: "database_unavailable",
                detail: "PostgreSQL is unavailable; nothing was written, try again".to_owned(),
            },
            // Validation refuses every value known to be unstorable, so
            // this is a constraint added to the table by hand, or a value
            // validation missed: the request's fault either way.
            err if err.is_refused_row() => ApiError::Invalid {
                field: None,
                detail: "PostgreSQL refused this job's values; nothing was written".to_owned(),
            },
            err if err.is_transient() => ApiError::Unavailable {
                code: "database_busy",
                detail: "PostgreSQL could not take this request just now (a conflict or a \
                         shortage of resources); nothing was written, try again"
                    .to_owned(),
            },
            err if err.is_timed_out() => ApiError::Unavailable {
                code: "query_timeout",
                detail: "the query ran past the statement timeout and was canceled; nothing was \
                         written. Narrow the filters, or try again later"
                    .to_owned(),
            },
            err => ApiError::Internal(err.to_string()),
        }
    }
}

impl From<conveyor::job::InvalidJob> for ApiError {
    fn from(invalid: conveyor::job::InvalidJob) -> Self {
        ApiError::invalid(invalid.field, invalid.to_string())
    }
}

/// What the request-limiting middleware failed with: its timeout, or the
/// limit on requests in flight.
pub async fn from_middleware(err: tower::BoxError) -> ApiError {
    if err.is::<tower::timeout::error::Elapsed>() {
        ApiError::Unavailable {
            code: "request_timeout",
            detail: "the request took longer than the server allows and was stopped; a job \
                     being created may still be created: repeat the request with the same \
                     idempotency key"
                .to_owned(),
        }
    } else if err.is::<tower::load_shed::error::Overloaded>() {
        ApiError::Unavailable {
            code: "overloaded",
            detail: "the server is handling as many requests as it allows; try again shortly"
                .to_owned(),
        }
    } else {
        ApiError::Internal(format!("request middleware failed: {err}"))
    }
}

/// True when `err`, or an error it wraps, is a request body that paused
/// past the body timeout.
pub fn is_body_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(err) = current {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        current = err.source();
    }
    false
}

/// A request body that paused past the body timeout.
pub fn body_timeout() -> ApiError {
    ApiError::RequestTimeout {
        detail: "the request body stopped arriving for longer than the server waits".to_owned(),
    }
}

/// A handler panicked: answer 500 with a problem and log the panic.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    ApiError::Internal(format!("handler panicked: {message}")).into_response()
}
