//! The typed client against a real API (in this process) on real
//! PostgreSQL and Redis: every endpoint, errors as problem documents, and
//! the retries that must never make a second job.

mod endpoints;
mod retries;
mod support;
