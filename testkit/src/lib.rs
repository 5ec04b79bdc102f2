//! Test support: every test gets its own PostgreSQL database and its own
//! Redis key prefix, so tests run in parallel without seeing each other.
//!
//! Databases are cloned from a migrated template (`CREATE DATABASE ...
//! TEMPLATE`), which costs milliseconds instead of a migration run per test.
//! The template's name carries a hash of the migration list, so a schema
//! change builds a new one. Each database is dropped when its [`TestDb`] is
//! dropped, even when the test panicked; databases left by killed test runs
//! are swept when they are more than [`STALE_AFTER_SECS`] old.
//!
//! Servers come from `DATABASE_URL` and `REDIS_URL` (the defaults are the
//! local ones), which `scripts/test.sh` sets.
//!
//! # Layout
//! - [`db`]: [`TestDb`], the per-test database.
//! - [`redis_prefix`]: [`TestRedis`], the per-test key prefix.
//! - [`logs`]: [`LogCapture`], log lines captured in a test.
//! - [`prometheus`]: reading samples out of `/metrics` text.
//! - [`proxy`]: [`Proxy`], a TCP proxy to cut for outage tests.
//! - [`wait`]: [`wait_until`], polling a condition against a deadline.

pub mod db;
pub mod logs;
pub mod prometheus;
pub mod proxy;
pub mod redis_prefix;
pub mod wait;

pub use db::{STALE_AFTER_SECS, TestDb};
pub use logs::LogCapture;
pub use proxy::Proxy;
pub use redis_prefix::{RedisConnection, TestRedis};
pub use wait::wait_until;

/// PostgreSQL used when `DATABASE_URL` is unset.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Redis used when `REDIS_URL` is unset.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// A short random suffix for names.
pub(crate) fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}
