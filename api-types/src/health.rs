//! Liveness, readiness and the job summary: `GET /health`, `GET /ready`,
//! `GET /jobs/summary`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::list::Accuracy;

/// Job counts by status, overall and per queue.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Summary {
    /// Every status, with 0 where there are none.
    #[schema(value_type = Object)]
    pub by_status: std::collections::BTreeMap<String, i64>,
    #[schema(value_type = Object)]
    pub by_queue: std::collections::BTreeMap<String, std::collections::BTreeMap<String, i64>>,
    pub total: i64,
    /// `exact`: counted from the table (at most two seconds ago).
    /// `estimated`: the table is large (over 2 million rows), so the
    /// statuses in `estimated_statuses` come from a sample; waiting and
    /// running jobs are always counted exactly.
    pub accuracy: Accuracy,
    pub estimated_statuses: Vec<String>,
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// `GET /ready`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    pub status: String,
    pub postgres: String,
    pub redis: String,
}
