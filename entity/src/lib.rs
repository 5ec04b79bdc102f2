//! Conveyor's data model: the `jobs` table as a sea-orm entity, and the
//! [`JobStatus`] enum stored in its `status` column.
//!
//! Data only: no I/O and no rules. Every write to a job row lives in
//! `conveyor::store`.
//!
//! # Layout
//! - [`job`]: the `jobs` entity (`Model`, `ActiveModel`, `Column`, ...).
//! - [`job_listing`]: what jobs are listed by, a row per job, never updated.
//! - [`status`]: [`JobStatus`], the state machine's states.

pub mod job;
pub mod job_listing;
pub mod status;

pub use status::JobStatus;
