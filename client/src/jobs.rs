//! Jobs: create (alone or in a batch), read, cancel, retry, list, count,
//! and the bulk actions.

use reqwest::{Method, StatusCode};
use uuid::Uuid;

use crate::send::{Repeat, Request};
use crate::types::{
    AttemptList, BatchResult, BulkRequest, BulkResult, CreateBatch, CreateJob, JobList, JobResult,
    JobView, ListParams, Summary,
};
use crate::{Client, Error};

/// What a create did.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    pub job: JobView,
    /// An earlier request under the same idempotency key had made it (the
    /// API answered 200 rather than 201).
    pub replayed: bool,
}

/// What a cancel did.
#[derive(Debug, Clone, PartialEq)]
pub enum Canceled {
    /// The job was waiting and is now canceled.
    Canceled(JobView),
    /// The job is running; its worker was asked to stop it.
    Requested(JobView),
}

/// A fresh idempotency key, for a create whose caller named none.
fn new_key() -> String {
    format!("client-{}", Uuid::new_v4())
}

impl Client {
    /// Creates a job (`POST /jobs`). Without an idempotency key of its own
    /// it gets a random one, which every retry reuses.
    pub async fn create(&self, job: &CreateJob) -> Result<Created, Error> {
        self.create_traced(job, None).await
    }

    /// [`Client::create`] under the caller's W3C trace context.
    pub async fn create_traced(
        &self,
        job: &CreateJob,
        traceparent: Option<&str>,
    ) -> Result<Created, Error> {
        let mut job = job.clone();
        job.idempotency_key.get_or_insert_with(new_key);
        let answer = self
            .send(
                Request::new(Method::POST, self.url(&["jobs"]), Repeat::Safe)
                    .json(&job)?
                    .traceparent(traceparent),
            )
            .await?;
        let replayed = answer.status == StatusCode::OK;
        let job = answer.read(&[StatusCode::CREATED, StatusCode::OK])?;
        Ok(Created { job, replayed })
    }

    /// Creates up to 1,000 jobs in one request (`POST /jobs/batch`); each
    /// item is answered on its own, in order. Items without an idempotency
    /// key get random ones, reused by every retry.
    pub async fn create_batch(&self, jobs: &[CreateJob]) -> Result<BatchResult, Error> {
        self.create_batch_traced(jobs, None).await
    }

    /// [`Client::create_batch`] under the caller's W3C trace context.
    pub async fn create_batch_traced(
        &self,
        jobs: &[CreateJob],
        traceparent: Option<&str>,
    ) -> Result<BatchResult, Error> {
        let keyed: Vec<CreateJob> = jobs
            .iter()
            .cloned()
            .map(|mut job| {
                job.idempotency_key.get_or_insert_with(new_key);
                job
            })
            .collect();
        let batch = CreateBatch::new(&keyed)?;
        self.send(
            Request::new(Method::POST, self.url(&["jobs", "batch"]), Repeat::Safe)
                .json(&batch)?
                .traceparent(traceparent),
        )
        .await?
        .read(&[StatusCode::OK])
    }

    /// `GET /jobs/{id}`.
    pub async fn job(&self, id: Uuid) -> Result<JobView, Error> {
        self.get(&["jobs", &id.to_string()]).await
    }

    /// `GET /jobs/{id}/result`: the result of a finished job (the API
    /// answers 200), or where an unfinished one stands (202, `result`
    /// null).
    pub async fn result(&self, id: Uuid) -> Result<JobResult, Error> {
        self.send(Request::new(
            Method::GET,
            self.url(&["jobs", &id.to_string(), "result"]),
            Repeat::Safe,
        ))
        .await?
        .read(&[StatusCode::OK, StatusCode::ACCEPTED])
    }

    /// `GET /jobs/{id}/attempts`.
    pub async fn attempts(&self, id: Uuid) -> Result<AttemptList, Error> {
        self.get(&["jobs", &id.to_string(), "attempts"]).await
    }

    /// Cancels a job (`POST /jobs/{id}/cancel`).
    pub async fn cancel(&self, id: Uuid) -> Result<Canceled, Error> {
        let answer = self
            .send(Request::new(
                Method::POST,
                self.url(&["jobs", &id.to_string(), "cancel"]),
                Repeat::IfNotActedOn,
            ))
            .await?;
        let requested = answer.status == StatusCode::ACCEPTED;
        let job = answer.read(&[StatusCode::OK, StatusCode::ACCEPTED])?;
        Ok(if requested {
            Canceled::Requested(job)
        } else {
            Canceled::Canceled(job)
        })
    }

    /// Runs a failed or canceled job again (`POST /jobs/{id}/retry`).
    pub async fn retry(&self, id: Uuid) -> Result<JobView, Error> {
        self.send(Request::new(
            Method::POST,
            self.url(&["jobs", &id.to_string(), "retry"]),
            Repeat::IfNotActedOn,
        ))
        .await?
        .read(&[StatusCode::OK])
    }

    /// A page of jobs, newest first (`GET /jobs`).
    pub async fn list(&self, params: &ListParams) -> Result<JobList, Error> {
        self.send(Request::new(Method::GET, self.url(&["jobs"]), Repeat::Safe).query(params)?)
            .await?
            .read(&[StatusCode::OK])
    }

    /// Job counts by status and queue (`GET /jobs/summary`).
    pub async fn summary(&self) -> Result<Summary, Error> {
        self.get(&["jobs", "summary"]).await
    }

    /// Runs again every failed or canceled job matching the filter, up to
    /// its limit (`POST /jobs/retry`).
    pub async fn retry_matching(&self, filter: &BulkRequest) -> Result<BulkResult, Error> {
        self.bulk("retry", filter).await
    }

    /// Cancels every waiting or running job matching the filter, up to its
    /// limit (`POST /jobs/cancel`).
    pub async fn cancel_matching(&self, filter: &BulkRequest) -> Result<BulkResult, Error> {
        self.bulk("cancel", filter).await
    }

    async fn bulk(&self, action: &str, filter: &BulkRequest) -> Result<BulkResult, Error> {
        self.send(
            Request::new(
                Method::POST,
                self.url(&["jobs", action]),
                Repeat::IfNotActedOn,
            )
            .json(filter)?,
        )
        .await?
        .read(&[StatusCode::OK])
    }

    /// A GET answered 200 with a `T`.
    pub(crate) async fn get<T: serde::de::DeserializeOwned>(
        &self,
        segments: &[&str],
    ) -> Result<T, Error> {
        self.send(Request::new(Method::GET, self.url(segments), Repeat::Safe))
            .await?
            .read(&[StatusCode::OK])
    }
}
