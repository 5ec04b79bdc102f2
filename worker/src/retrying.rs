//! Riding out outages: a database or Redis call repeated with backoff.

use std::future::Future;
use std::time::Duration;

use backoff::backoff::Backoff;
use conveyor::{BrokerError, StoreError};
use tokio_util::sync::CancellationToken;

use crate::runtime::Runtime;

/// Backoff between tries of a call that failed because its server was down.
fn outage_backoff() -> backoff::ExponentialBackoff {
    conveyor::retry::RetryPolicy {
        base: Duration::from_millis(50),
        max: Duration::from_secs(2),
        jitter: 0.2,
    }
    .backoff()
}

/// Why a store call did not succeed.
#[derive(Debug)]
pub enum Unwritten {
    /// PostgreSQL refused the statement (not an outage): trying again would
    /// fail the same way.
    Refused(StoreError),
    /// PostgreSQL stayed unreachable past the patience, or the worker gave up.
    GaveUp,
}

/// Runs a store call until it succeeds, PostgreSQL refuses it for a reason
/// other than being unreachable, `give_up` fires, or `patience` runs out.
pub async fn store_call<T, F, Fut>(
    runtime: &Runtime,
    patience: Option<Duration>,
    give_up: &CancellationToken,
    mut call: F,
) -> Result<T, Unwritten>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let started = tokio::time::Instant::now();
    let mut backoff = outage_backoff();
    loop {
        match call().await {
            Ok(value) => {
                runtime.outages.postgres.succeeded("postgres");
                return Ok(value);
            }
            Err(err) if err.is_unavailable() => runtime.outages.postgres.failed("postgres", &err),
            Err(err) => {
                tracing::error!(event = "store_error", error = %err, "PostgreSQL refused a statement");
                return Err(Unwritten::Refused(err));
            }
        }
        if patience.is_some_and(|patience| started.elapsed() >= patience) {
            return Err(Unwritten::GaveUp);
        }
        let delay = backoff.next_backoff().unwrap_or(Duration::from_secs(1));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = give_up.cancelled() => return Err(Unwritten::GaveUp),
        }
    }
}

/// Runs a Redis call until it succeeds or `tries` have failed.
pub async fn redis_call<T, F, Fut>(runtime: &Runtime, tries: u32, mut call: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, BrokerError>>,
{
    let mut backoff = outage_backoff();
    for _ in 0..tries {
        match call().await {
            Ok(value) => {
                runtime.outages.redis.succeeded("redis");
                return Some(value);
            }
            Err(err) => runtime.outages.redis.failed("redis", &err),
        }
        tokio::time::sleep(backoff.next_backoff().unwrap_or(Duration::from_secs(1))).await;
    }
    None
}
