//! The leader's lease: one Redis key holding the leader's id, expiring
//! unless renewed. Every process campaigns every tick; the holder renews.
//!
//! A process counts itself leader until the lease would have expired as of
//! its last successful renewal, measured from before that renewal was sent
//! (so a slow reply can only shorten what it believes, never lengthen it).
//! A pass of a leader-only service checks this between steps and stops when
//! it has lapsed.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Context;

/// This process's view of the leader's lease.
#[derive(Debug)]
pub struct Leadership {
    ttl: Duration,
    /// Until when this process surely holds the lease, if it does.
    until: Mutex<Option<Instant>>,
}

impl Leadership {
    pub fn new(ttl: Duration) -> Self {
        Leadership {
            ttl,
            until: Mutex::new(None),
        }
    }

    /// True while this process surely holds the lease.
    pub fn is_leader(&self) -> bool {
        self.until
            .lock()
            .ok()
            .and_then(|until| *until)
            .is_some_and(|until| Instant::now() < until)
    }

    /// Records the outcome of a campaign sent at `sent`.
    fn record(&self, sent: Instant, held: bool) {
        if let Ok(mut until) = self.until.lock() {
            *until = held.then(|| sent + self.ttl);
        }
    }
}

/// Takes or renews the lease every tick until `stop` fires.
pub async fn campaign(ctx: Context, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(ctx.settings.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        if let Err(err) = campaign_once(&ctx).await {
            // Leave what we believed: it lapses on its own.
            ctx.outages.redis.failed("redis", &err);
        }
    }
}

/// One campaign: takes or renews the lease and records the outcome.
pub async fn campaign_once(ctx: &Context) -> Result<bool, crate::BrokerError> {
    let me = ctx.settings.me.as_str();
    let was_leader = ctx.leadership.is_leader();
    let sent = Instant::now();
    let held = ctx
        .broker
        .take_leadership(me, ctx.settings.leader_ttl())
        .await?;
    ctx.outages.redis.succeeded("redis");
    ctx.leadership.record(sent, held);
    if held && !was_leader {
        tracing::info!(event = "leader_elected", worker.id = %me,
            "this process now runs the leader's maintenance services");
    } else if !held && was_leader {
        tracing::warn!(event = "leader_lost", worker.id = %me,
            "this process no longer holds the leader's lease");
    }
    Ok(held)
}
