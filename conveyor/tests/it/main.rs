//! The job store against a real PostgreSQL: one database per test.

mod idempotency;
mod leases;
mod races;
mod support;
mod transitions;
