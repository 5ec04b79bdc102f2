//! Liveness, readiness and metrics.

use reqwest::{Method, StatusCode};

use crate::send::{Repeat, Request};
use crate::types::{Health, Readiness};
use crate::{Client, Error};

impl Client {
    /// `GET /health`: the API process answers.
    pub async fn health(&self) -> Result<Health, Error> {
        self.get(&["health"]).await
    }

    /// `GET /ready`: PostgreSQL and Redis answer the API. Not ready is
    /// the problem `not_ready` (503), asked once: it is the answer, not a
    /// failure to get one.
    pub async fn ready(&self) -> Result<Readiness, Error> {
        self.send(Request::new(
            Method::GET,
            self.url(&["ready"]),
            Repeat::Never,
        ))
        .await?
        .read(&[StatusCode::OK])
    }

    /// `GET /openapi.json`: the API's OpenAPI document, as JSON.
    pub async fn openapi(&self) -> Result<serde_json::Value, Error> {
        self.get(&["openapi.json"]).await
    }

    /// `GET /metrics`, in Prometheus' text format.
    pub async fn metrics(&self) -> Result<String, Error> {
        let answer = self
            .send(Request::new(
                Method::GET,
                self.url(&["metrics"]),
                Repeat::Safe,
            ))
            .await?;
        if answer.status != StatusCode::OK {
            return Err(answer.error());
        }
        String::from_utf8(answer.body.to_vec())
            .map_err(|err| Error::Decode(format!("metrics are not UTF-8: {err}")))
    }
}
