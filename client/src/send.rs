//! One request: its tries, the waits between them, and reading its answer.

use std::time::Duration;

use rand::Rng;
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::types::Problem;
use crate::{Client, Error};

/// How failed tries are retried: after a connection error, a timeout or a
/// 503, when the request is safe to send again (see the crate's overview).
#[derive(Debug, Clone, PartialEq)]
pub struct Retries {
    /// Tries in all, the first included; 1 never retries.
    pub max_tries: u32,
    /// The wait after the first failed try; each later wait doubles it.
    pub base: Duration,
    /// The longest wait between two tries.
    pub max_delay: Duration,
    /// No try starts after this long since the first.
    pub give_up_after: Duration,
}

impl Default for Retries {
    /// Eight tries over at most a minute, waiting 100 ms, 200 ms, ... 5 s.
    fn default() -> Self {
        Retries {
            max_tries: 8,
            base: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            give_up_after: Duration::from_secs(60),
        }
    }
}

impl Retries {
    /// One try, no retry.
    pub fn none() -> Self {
        Retries {
            max_tries: 1,
            ..Retries::default()
        }
    }

    /// The wait after failed try `tries` (1-based), with a fifth of jitter
    /// either way, so that many clients do not come back in step.
    fn delay(&self, tries: u32) -> Duration {
        let doubled = self
            .base
            .saturating_mul(1u32 << tries.saturating_sub(1).min(16))
            .min(self.max_delay);
        doubled.mul_f64(rand::rng().random_range(0.8..1.2))
    }
}

/// The problem codes of the 503s with which the API says it did not carry
/// the request out (PostgreSQL unreachable or busy before anything was
/// written, a statement canceled whole, a request shed at the door). Its
/// other 503s (`request_timeout`, `outcome_unknown`, `write_interrupted`)
/// come after work that may have been done.
pub const NOT_CARRIED_OUT: &[&str] = &[
    "database_unavailable",
    "database_busy",
    "query_timeout",
    "overloaded",
];

/// Whether a request may be sent again when its fate is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Repeat {
    /// Sending it twice does what sending it once does: a read, a create
    /// under its idempotency key, a pause.
    Safe,
    /// Only when it surely was not acted on: it could not be sent, or the
    /// server answered a 503 that says so ([`NOT_CARRIED_OUT`]).
    IfNotActedOn,
    /// Never: its 503 is an answer (`GET /ready`).
    Never,
}

/// A request to send, perhaps more than once.
pub(crate) struct Request<'a> {
    pub method: Method,
    pub url: Url,
    pub body: Option<Vec<u8>>,
    pub traceparent: Option<&'a str>,
    pub repeat: Repeat,
}

impl<'a> Request<'a> {
    pub fn new(method: Method, url: Url, repeat: Repeat) -> Self {
        Request {
            method,
            url,
            body: None,
            traceparent: None,
            repeat,
        }
    }

    /// With `body` as JSON, encoded once so that every try sends the same
    /// bytes.
    pub fn json(mut self, body: &impl Serialize) -> Result<Self, Error> {
        self.body = Some(serde_json::to_vec(body)?);
        Ok(self)
    }

    /// With `params` as the query string.
    pub fn query(mut self, params: &impl Serialize) -> Result<Self, Error> {
        let query = serde_urlencoded::to_string(params)
            .map_err(|err| Error::Decode(format!("encoding the query: {err}")))?;
        self.url
            .set_query((!query.is_empty()).then_some(query.as_str()));
        Ok(self)
    }

    pub fn traceparent(mut self, traceparent: Option<&'a str>) -> Self {
        self.traceparent = traceparent;
        self
    }
}

/// An answer: its status and whole body.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: bytes::Bytes,
}

impl Answer {
    /// A 503 whose problem says the request was not carried out.
    fn not_carried_out(&self) -> bool {
        self.status == StatusCode::SERVICE_UNAVAILABLE
            && serde_json::from_slice::<Problem>(&self.body)
                .is_ok_and(|problem| NOT_CARRIED_OUT.contains(&problem.code.as_str()))
    }

    /// The body as `T` when the status is one of `ok`, else the error the
    /// answer describes.
    pub fn read<T: DeserializeOwned>(self, ok: &[StatusCode]) -> Result<T, Error> {
        if !ok.contains(&self.status) {
            return Err(self.error());
        }
        serde_json::from_slice(&self.body).map_err(|err| {
            Error::Decode(format!(
                "{} answer does not fit: {err}",
                self.status.as_u16()
            ))
        })
    }

    /// The error this answer describes: its problem document, or what it
    /// said instead.
    pub fn error(self) -> Error {
        match serde_json::from_slice::<Problem>(&self.body) {
            Ok(problem) => Error::Problem(Box::new(problem)),
            Err(_) => Error::Unexpected {
                status: self.status.as_u16(),
                body: String::from_utf8_lossy(&self.body)
                    .chars()
                    .take(500)
                    .collect(),
            },
        }
    }
}

impl Client {
    /// Sends `request`, trying again as [`Retries`] and its [`Repeat`]
    /// allow; the last answer (a 503 too, once the tries are spent) or the
    /// last transport error.
    pub(crate) async fn send(&self, request: Request<'_>) -> Result<Answer, Error> {
        let started = tokio::time::Instant::now();
        let mut tries = 0;
        loop {
            tries += 1;
            let outcome = self.try_once(&request).await;
            let again = match (&outcome, request.repeat) {
                (_, Repeat::Never) => false,
                (Ok(answer), Repeat::Safe) => answer.status == StatusCode::SERVICE_UNAVAILABLE,
                (Ok(answer), Repeat::IfNotActedOn) => answer.not_carried_out(),
                (Err(_), Repeat::Safe) => true,
                // Not connected: nothing reached the server.
                (Err(err), Repeat::IfNotActedOn) => err.is_connect(),
            };
            let spent =
                tries >= self.retries.max_tries || started.elapsed() >= self.retries.give_up_after;
            if !again || spent {
                return outcome.map_err(Error::Transport);
            }
            tokio::time::sleep(self.retries.delay(tries)).await;
        }
    }

    async fn try_once(&self, request: &Request<'_>) -> Result<Answer, reqwest::Error> {
        let mut builder = self
            .http
            .request(request.method.clone(), request.url.clone());
        if let Some(token) = &self.token {
            builder = builder.bearer_auth(token);
        }
        if let Some(traceparent) = request.traceparent {
            builder = builder.header("traceparent", traceparent);
        }
        if let Some(body) = &request.body {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let response = builder.send().await?;
        let status = response.status();
        // A body cut short is a failed try like any other.
        let body = response.bytes().await?;
        Ok(Answer { status, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_with_jitter() {
        let retries = Retries::default();
        for (tries, nominal) in [(1, 100), (2, 200), (3, 400), (7, 5_000), (30, 5_000)] {
            let wait = retries.delay(tries).as_millis() as f64;
            let nominal = f64::from(nominal);
            assert!(
                wait >= nominal * 0.8 && wait <= nominal * 1.2,
                "try {tries}: {wait} ms"
            );
        }
    }
}
