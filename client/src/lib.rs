//! A typed client for Conveyor's HTTP API.
//!
//! Every endpoint is a method; requests and answers are the server's own
//! types (`conveyor-api-types`, re-exported as [`types`]), so the two
//! cannot drift apart. An error answer is an [`Error::Problem`] carrying
//! the server's problem document.
//!
//! It retries what is safe to retry, with exponential backoff and jitter:
//! - **creates** (`POST /jobs`, `/jobs/batch`) always carry an idempotency
//!   key (a random one unless the job names its own), and every retry
//!   sends the same key, so a retried create can never make a second job:
//!   they are retried after any connection error, timeout or 503;
//! - **reads and idempotent changes** (pause, resume, configure, update,
//!   heartbeats, and attempt reports, which the API answers alike when
//!   repeated) likewise;
//! - **the rest** (cancel, retry, bulk actions, creating, deleting or
//!   triggering a schedule, claiming jobs), whose repetition would answer
//!   differently,
//!   only when the request surely was not acted on: it could not be sent,
//!   or the server answered a 503 that says it did not carry it out
//!   ([`NOT_CARRIED_OUT`]: not after a request timeout, whose work may go
//!   on).
//!
//! ```no_run
//! # async fn demo() -> Result<(), conveyor_client::Error> {
//! use conveyor_client::{Client, types::CreateJob};
//! let client = Client::new("http://127.0.0.1:8080")?;
//! let created = client
//!     .create(&CreateJob::new("resize", serde_json::json!({"width": 640})))
//!     .await?;
//! let job = client.job(created.job.id).await?;
//! println!("{} is {}", job.id, job.status);
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - this module: [`Client`] and [`Builder`].
//! - `error`: [`Error`].
//! - `send`: one request, its retries, and reading its answer.
//! - `jobs`, `queues`, `schedules`, `health` (with metrics and the OpenAPI
//!   document), `workers` (the worker protocol): the endpoints.

mod error;
mod health;
mod jobs;
mod queues;
mod schedules;
mod send;
mod workers;

use std::time::Duration;

pub use conveyor_api_types as types;
pub use error::Error;
pub use jobs::{Canceled, Created};
pub use send::{NOT_CARRIED_OUT, Retries};

/// How long one try of a request may take, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of one Conveyor API. Cheap to clone; clones share connections.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: reqwest::Url,
    token: Option<String>,
    retries: Retries,
}

/// How a [`Client`] is set up.
#[derive(Debug, Clone)]
pub struct Builder {
    base: String,
    token: Option<String>,
    timeout: Duration,
    retries: Retries,
}

impl Client {
    /// A client of the API at `base` (such as `http://127.0.0.1:8080`),
    /// with the defaults.
    pub fn new(base: &str) -> Result<Client, Error> {
        Client::builder(base).build()
    }

    pub fn builder(base: &str) -> Builder {
        Builder {
            base: base.to_owned(),
            token: None,
            timeout: DEFAULT_TIMEOUT,
            retries: Retries::default(),
        }
    }

    fn url(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }
}

impl Builder {
    /// The API's token (`CONVEYOR_API_TOKEN`), sent as a bearer token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// How long one try may take before it is abandoned (and, where safe,
    /// tried again).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How failed tries are retried.
    pub fn retries(mut self, retries: Retries) -> Self {
        self.retries = retries;
        self
    }

    pub fn build(self) -> Result<Client, Error> {
        let base = reqwest::Url::parse(&self.base)
            .map_err(|err| Error::InvalidBase(format!("{}: {err}", self.base)))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(Error::InvalidBase(format!(
                "{}: not an http(s) URL",
                self.base
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .build()
            .map_err(Error::Transport)?;
        Ok(Client {
            http,
            base,
            token: self.token,
            retries: self.retries,
        })
    }
}
