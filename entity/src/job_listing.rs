//! The `job_listing` table: what `GET /jobs` and the dashboard list jobs by
//! (creation time, queue, type, schedule), a row per job, written once by
//! a trigger when the job is inserted and removed with it. None of these
//! columns ever changes, so the indexes that order the lists live here,
//! and the updates every claim and outcome make to `jobs` do not have to
//! add an entry to each of them.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "job_listing")]
pub struct Model {
    /// The job's id. The table has no key of its own (one would be another
    /// index to write per job); rows are found by (`created_at`, `id`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub created_at: DateTimeUtc,
    pub queue: String,
    #[sea_orm(column_name = "type")]
    pub task_type: String,
    pub schedule_name: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
