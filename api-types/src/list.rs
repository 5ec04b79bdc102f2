//! Listing jobs: `GET /jobs`.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::jobs::JobView;

/// Whether a count is exact or an estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Accuracy {
    Exact,
    Estimated,
}

/// A page of jobs, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    pub items: Vec<JobView>,
    pub limit: u64,
    pub offset: u64,
    /// How many jobs match the filters, on every page (not the size of this
    /// page). Exact up to 10,000; above that an estimate (see
    /// `count_accuracy`).
    pub count: u64,
    /// `exact`, or `estimated` when more than 10,000 jobs match (or
    /// counting them took too long) and `count` is PostgreSQL's estimate.
    pub count_accuracy: Accuracy,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Query parameters of `GET /jobs`, parsed by hand for precise errors.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// queued, running, retrying, completed, failed or canceled.
    #[param(value_type = Option<JobStatusName>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Only jobs of this queue.
    #[param(pattern = "^[a-z0-9_-]{1,64}$")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Only jobs of this type.
    #[serde(rename = "type")]
    #[param(rename = "type", pattern = "^[a-z0-9_.:-]{1,64}$")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_type: Option<String>,
    /// 1..=100, default 20.
    #[param(value_type = Option<u64>, minimum = 1, maximum = 100)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// 0..=10000, default 0. Page deeper with `after`.
    #[param(value_type = Option<u64>, minimum = 0, maximum = 10000)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<String>,
    /// `next_cursor` of the previous page: the jobs after it.
    #[param(pattern = "^[0-9]{1,18}_[0-9a-f]{32}$")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Only jobs created before this instant (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_before: Option<String>,
    /// Only jobs created at or after this instant (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_after: Option<String>,
    /// Only jobs made by this periodic schedule.
    #[param(pattern = "^[a-z0-9_.:-]{1,64}$")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

/// A job status, as the list filter takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatusName {
    Queued,
    Running,
    Retrying,
    Completed,
    Failed,
    Canceled,
}

impl JobStatusName {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatusName::Queued => "queued",
            JobStatusName::Running => "running",
            JobStatusName::Retrying => "retrying",
            JobStatusName::Completed => "completed",
            JobStatusName::Failed => "failed",
            JobStatusName::Canceled => "canceled",
        }
    }
}

impl ListParams {
    pub fn status(mut self, status: JobStatusName) -> Self {
        self.status = Some(status.as_str().to_owned());
        self
    }

    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    pub fn task_type(mut self, task_type: impl Into<String>) -> Self {
        self.task_type = Some(task_type.into());
        self
    }

    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit.to_string());
        self
    }

    /// The page after the one whose `next_cursor` this is.
    pub fn after(mut self, cursor: impl Into<String>) -> Self {
        self.after = Some(cursor.into());
        self
    }

    pub fn schedule(mut self, schedule: impl Into<String>) -> Self {
        self.schedule = Some(schedule.into());
        self
    }
}
