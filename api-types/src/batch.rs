//! Many jobs in one request: `POST /jobs/batch`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::jobs::{CreateJob, JobView};
use crate::problem::Problem;

/// The body of `POST /jobs/batch`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreateBatch {
    /// 1 to 1,000 jobs, each as the body of `POST /jobs` (`CreateJob`).
    /// Each is checked on its own: one that is not a valid job (not even
    /// an object) is answered in its place in `items` with its error.
    ///
    /// Kept as raw JSON slices of the body until each is parsed on its
    /// own: an item of the wrong shape is that item's error, not the
    /// batch's, and no generic JSON tree of the whole batch is built.
    #[schema(value_type = Vec<serde_json::Value>, min_items = 1, max_items = 1000)]
    pub jobs: Vec<Box<serde_json::value::RawValue>>,
}

/// The outcome of one item, in the order of the request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchItem {
    /// What `POST /jobs` would have answered: 201 created, 200 replayed,
    /// 409 key conflict, 422 invalid.
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<JobView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchResult {
    pub items: Vec<BatchItem>,
    pub created: usize,
    pub replayed: usize,
    pub rejected: usize,
}

impl CreateBatch {
    /// A batch of `jobs`, each as `POST /jobs` takes it.
    pub fn new(jobs: &[CreateJob]) -> Result<Self, serde_json::Error> {
        Ok(CreateBatch {
            jobs: jobs
                .iter()
                .map(serde_json::value::to_raw_value)
                .collect::<Result<_, _>>()?,
        })
    }
}
