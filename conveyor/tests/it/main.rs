//! The job store against a real PostgreSQL: one database per test.

mod client;
mod example;
mod idempotency;
mod leases;
mod operable;
mod plans;
mod queues;
mod races;
mod support;
mod transitions;
