//! The worker protocol: claim jobs, heartbeat, report outcomes. For a
//! worker written in Rust without `conveyor-worker`, or a test driving the
//! protocol; workers in other languages call the same routes
//! (`docs/worker-protocol.md`).

use reqwest::{Method, StatusCode};
use uuid::Uuid;

use crate::send::{Repeat, Request};
use crate::types::{
    ClaimJobs, Claimed, ClaimedJob, CompleteJob, FailJob, Heartbeat, HeartbeatResult, ReleaseJob,
    Reported,
};
use crate::{Client, Error};

impl Client {
    /// Claims ready jobs (`POST /jobs/claim`); empty when none came within
    /// `wait_ms`. Give the client a timeout longer than the wait. Not
    /// retried once it may have been acted on: a claim whose answer was
    /// lost holds its jobs until their leases run out, and a second claim
    /// would take others.
    pub async fn claim(&self, claim: &ClaimJobs) -> Result<Vec<ClaimedJob>, Error> {
        let answer = self
            .send(
                Request::new(
                    Method::POST,
                    self.url(&["jobs", "claim"]),
                    Repeat::IfNotActedOn,
                )
                .json(claim)?,
            )
            .await?;
        if answer.status == StatusCode::NO_CONTENT {
            return Ok(Vec::new());
        }
        let claimed: Claimed = answer.read(&[StatusCode::OK])?;
        Ok(claimed.jobs)
    }

    /// Extends the leases of the attempts the worker runs, and says which
    /// to stop (`POST /jobs/heartbeat`).
    pub async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<HeartbeatResult, Error> {
        self.send(
            Request::new(Method::POST, self.url(&["jobs", "heartbeat"]), Repeat::Safe)
                .json(heartbeat)?,
        )
        .await?
        .read(&[StatusCode::OK])
    }

    /// Reports an attempt completed (`POST /jobs/{id}/complete`). A repeated
    /// report is answered as the first, so it is retried freely.
    pub async fn complete_attempt(
        &self,
        id: Uuid,
        report: &CompleteJob,
    ) -> Result<Reported, Error> {
        self.report(id, "complete", report).await
    }

    /// Reports an attempt failed (`POST /jobs/{id}/fail`); retried as
    /// [`Client::complete_attempt`] is.
    pub async fn fail_attempt(&self, id: Uuid, report: &FailJob) -> Result<Reported, Error> {
        self.report(id, "fail", report).await
    }

    /// Puts an attempt back, not counted (`POST /jobs/{id}/release`): for
    /// a worker shutting down; retried as [`Client::complete_attempt`] is.
    pub async fn release_attempt(&self, id: Uuid, report: &ReleaseJob) -> Result<Reported, Error> {
        self.report(id, "release", report).await
    }

    async fn report(
        &self,
        id: Uuid,
        outcome: &str,
        report: &impl serde::Serialize,
    ) -> Result<Reported, Error> {
        let id = id.to_string();
        self.send(
            Request::new(
                Method::POST,
                self.url(&["jobs", &id, outcome]),
                Repeat::Safe,
            )
            .json(report)?,
        )
        .await?
        .read(&[StatusCode::OK])
    }
}
