//! Retry delays: exponential backoff with jitter.
//!
//! The arithmetic is the `backoff` crate's. That crate is unmaintained
//! (RUSTSEC-2025-0012), so it is used only here, behind [`RetryPolicy`], and
//! can be swapped without touching callers (see `docs/decisions.md`).

use std::time::Duration;

use backoff::ExponentialBackoff;
use backoff::backoff::Backoff;

use crate::config::{
    DEFAULT_RETRY_BASE_MS, DEFAULT_RETRY_JITTER, DEFAULT_RETRY_MAX_MS, RetryConfig,
};

/// Delay before retry `n` = min(base × 2^(n-1), max), then spread by ±jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
    /// Fraction of the delay by which it may randomly grow or shrink.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(DEFAULT_RETRY_BASE_MS),
            max: Duration::from_millis(DEFAULT_RETRY_MAX_MS),
            jitter: DEFAULT_RETRY_JITTER,
        }
    }
}

impl RetryPolicy {
    pub fn from_config(config: &RetryConfig) -> Self {
        RetryPolicy {
            base: Duration::from_millis(config.retry_base_ms),
            max: Duration::from_millis(config.retry_max_ms),
            jitter: config.retry_jitter,
        }
    }

    /// The delay after failed attempt number `attempt` (1 for the first).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let mut backoff = self.backoff();
        let mut delay = self.base;
        for _ in 0..attempt.max(1) {
            delay = backoff.next_backoff().unwrap_or(self.max);
        }
        delay
    }

    /// An endless backoff for reconnect loops (outages of PostgreSQL or
    /// Redis): call `next_backoff` after each failure, `reset` on success.
    pub fn backoff(&self) -> ExponentialBackoff {
        ExponentialBackoff {
            current_interval: self.base,
            initial_interval: self.base,
            randomization_factor: self.jitter,
            multiplier: 2.0,
            max_interval: self.max,
            max_elapsed_time: None,
            ..ExponentialBackoff::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(delay: Duration, centre_ms: f64, jitter: f64) -> bool {
        let ms = delay.as_secs_f64() * 1000.0;
        ms >= centre_ms * (1.0 - jitter) - 1.0 && ms <= centre_ms * (1.0 + jitter) + 1.0
    }

    #[test]
    fn default_delays_are_one_two_four_seconds_within_twenty_percent() {
        let policy = RetryPolicy::default();
        for _ in 0..200 {
            assert!(within(policy.delay_after(1), 1000.0, 0.2));
            assert!(within(policy.delay_after(2), 2000.0, 0.2));
            assert!(within(policy.delay_after(3), 4000.0, 0.2));
        }
    }

    #[test]
    fn delays_stop_growing_at_the_cap() {
        let policy = RetryPolicy::default();
        for attempt in [6, 10, 50, 100] {
            assert!(
                within(policy.delay_after(attempt), 30_000.0, 0.2),
                "attempt {attempt}"
            );
        }
    }

    #[test]
    fn without_jitter_delays_are_exact() {
        let policy = RetryPolicy {
            base: Duration::from_millis(10),
            max: Duration::from_millis(50),
            jitter: 0.0,
        };
        let delays: Vec<u128> = (1..=5).map(|n| policy.delay_after(n).as_millis()).collect();
        assert_eq!(delays, [10, 20, 40, 50, 50]);
    }
}
