//! What a call can fail with.

use crate::types::Problem;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API answered with an error and its problem document: what was
    /// wrong, for a person (`detail`) and for a program (`code`, `field`).
    #[error("{} {}: {}", .0.status, .0.code, .0.detail)]
    Problem(Box<Problem>),
    /// The API answered with a status this call does not expect, and a
    /// body that is not a problem document (a proxy's error page).
    #[error("unexpected answer {status}: {body}")]
    Unexpected { status: u16, body: String },
    /// No answer: the connection failed or a try timed out, on the last
    /// try allowed.
    #[error("no answer from the API: {0}")]
    Transport(#[source] reqwest::Error),
    /// The answer's body was not what the endpoint promises.
    #[error("unreadable answer: {0}")]
    Decode(String),
    /// The request could not be encoded.
    #[error("could not encode the request: {0}")]
    Encode(#[from] serde_json::Error),
    /// The base URL is not an http(s) URL.
    #[error("invalid API address {0}")]
    InvalidBase(String),
}

impl Error {
    /// The problem document, when the API sent one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Error::Problem(problem) => Some(problem),
            _ => None,
        }
    }

    /// The HTTP status, when the API answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Problem(problem) => Some(problem.status),
            Error::Unexpected { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The problem's stable code (`job_not_found`, `invalid_field`, ...).
    pub fn code(&self) -> Option<&str> {
        self.problem().map(|problem| problem.code.as_str())
    }
}
