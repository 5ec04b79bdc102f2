//! The `jobs` table. Column names are part of the HTTP contract.

use sea_orm::entity::prelude::*;

use crate::JobStatus;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "jobs")]
pub struct Model {
    /// UUIDv7, so new rows land at the right edge of the primary key index.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub queue: String,
    /// The task name; `type` in the table and the API.
    #[sea_orm(column_name = "type")]
    pub task_type: String,
    pub payload: Json,
    pub priority: i16,
    pub status: JobStatus,
    /// Claims so far; only a successful claim increments it.
    pub attempts: i32,
    pub max_attempts: i32,
    pub timeout_seconds: i32,
    pub run_at: DateTimeUtc,
    pub result: Option<Json>,
    pub error_message: Option<String>,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<String>,
    pub worker_id: Option<String>,
    /// Set anew by every claim; every write about that attempt must match
    /// it (the fence). Cleared when the attempt is lost (lease expiry,
    /// `recover-stuck`); kept by a manual retry, whose next claim replaces it.
    pub claim_token: Option<Uuid>,
    pub lease_expires_at: Option<DateTimeUtc>,
    pub cancel_requested: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub completed_at: Option<DateTimeUtc>,
    pub failed_at: Option<DateTimeUtc>,
    pub canceled_at: Option<DateTimeUtc>,
    /// What the running attempt's handler last reported (written with the
    /// heartbeat); cleared by the next claim.
    pub progress: Option<Json>,
    /// The schedule that made this job, if one did, and the tick (the
    /// instant it was due) it was made for.
    pub schedule_name: Option<String>,
    pub schedule_tick: Option<DateTimeUtc>,
    /// The W3C trace context the job was created with, if one was given.
    pub traceparent: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
