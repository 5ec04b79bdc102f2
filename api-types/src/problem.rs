//! The error document every 4xx and 5xx answer carries.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// URI naming the problem type: `urn:conveyor:problem:<code>`.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    /// What was wrong with this request, for a person.
    pub detail: String,
    /// Stable, for programs: e.g. `invalid_field`, `job_not_found`.
    pub code: String,
    /// The field at fault, for validation problems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The job concerned, when there is one (conflicts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
}
