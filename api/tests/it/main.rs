//! The HTTP API against real PostgreSQL and Redis, one database and key
//! prefix per test, the server on port 0.

mod auth;
mod batch;
mod browser;
mod cancel;
mod create;
mod docs;
mod health;
mod held_keys;
mod hostile;
mod limits;
mod observability;
mod operate;
mod outages;
mod python_worker;
mod read;
mod remote;
mod schedules;
mod support;
mod traces;
mod ui;
