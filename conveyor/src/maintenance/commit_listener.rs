//! The commit listener: publishes jobs as soon as the application
//! transaction that enqueued them commits (`client::transactional`).
//!
//! Such a job leaves a row in the outbox `job_announcements` and a
//! `NOTIFY`, both committed with it. The leader listens on the channel, on
//! a connection of its own (the pool's connections are shared and must not
//! carry a `LISTEN`); woken, it publishes every announced job that still
//! waits, in bursts of [`MAX_BURST`], and deletes the announcements it
//! published. It also empties the outbox when it starts listening and on
//! every tick, so an announcement whose notification nobody heard (no
//! leader at that moment, a connection being replaced or silently dead, a
//! leader that died with a burst in hand) waits a tick at most, not for
//! the reconciler. A publish that fails (Redis away) leaves the
//! announcements in place for the next try. The outbox is empty while
//! nothing enqueues this way, and each look at it is one read of its
//! creation index. A listening connection that died silently (no reset)
//! is not noticed: its jobs then wait for a tick, nothing is lost.

use std::time::Duration;

use sea_orm::sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::{Context, MaintenanceError};
use crate::job::WaitingJob;
use crate::store::{AnnouncedJob, COMMITTED_CHANNEL, StoreError};

/// The name it reports under.
const NAME: &str = "commit_listener";

/// Most announced jobs published in one round trip.
pub const MAX_BURST: u64 = 2_000;

/// How often a process that does not lead looks whether it does now (at
/// most: a tick, if shorter), so that a new leader listens within it.
const LEADERSHIP_POLL: Duration = Duration::from_secs(1);

/// Listens while this process leads, until `stop`.
pub async fn run(ctx: Context, stop: CancellationToken) {
    loop {
        let pause = if ctx.leadership.is_leader() {
            if let Err(err) = listen(&ctx, &stop).await {
                ctx.report(NAME, &err);
            }
            // A session that ended (lost connection, an outage) is started
            // again a tick later.
            ctx.settings.tick
        } else {
            ctx.settings.tick.min(LEADERSHIP_POLL)
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// One listening session: until the connection is lost, this process stops
/// leading, or `stop`.
async fn listen(ctx: &Context, stop: &CancellationToken) -> Result<(), MaintenanceError> {
    // A pool of one, for this session alone: when the session ends, its
    // connection is closed rather than handed to anyone else.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(crate::store::DEFAULT_ACQUIRE_TIMEOUT)
        .connect_lazy_with(ctx.store.session_options()?);
    let mut listener = PgListener::connect_with(&pool).await.map_err(store_error)?;
    // A lost connection ends the session; the next one starts by emptying
    // the outbox.
    listener.eager_reconnect(false);
    listener
        .listen(COMMITTED_CHANNEL)
        .await
        .map_err(store_error)?;
    tracing::debug!(channel = COMMITTED_CHANNEL, "listening for committed jobs");

    // A wake-up is all a notification says; several pending are one.
    let (woken, mut wake) = mpsc::channel::<()>(1);
    // Reading in a task of its own, aborted when the session ends: an
    // abort may cut a read short, which is why the connection is the
    // session's alone and is closed with its pool, never reused.
    let reader = AbortOnDropHandle::new(tokio::spawn(async move {
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => {
                    if woken.is_closed() {
                        return Ok(());
                    }
                    let _ = woken.try_send(());
                }
                Ok(None) => return Ok(()),
                Err(err) => return Err(err),
            }
        }
    }));
    let mut ticks = tokio::time::interval(ctx.settings.tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Whatever was announced before the LISTEN took effect, or while
        // a publish was failing, goes out on the first pass and the ticks.
        if let Err(err) = publish_announced(ctx).await {
            ctx.report(NAME, &err);
        }
        tokio::select! {
            woke = wake.recv() => {
                if woke.is_none() {
                    break;
                }
            }
            _ = ticks.tick() => ctx.still_leader()?,
            () = stop.cancelled() => return Ok(()),
        }
    }
    match reader.await {
        Ok(Err(err)) => Err(store_error(err).into()),
        _ => {
            tracing::info!(
                channel = COMMITTED_CHANNEL,
                "lost the connection listening for committed jobs; listening again"
            );
            Ok(())
        }
    }
}

/// Publishes every announced job that still waits, then forgets its
/// announcement. An announcement is deleted only after its publish, so a
/// leader that dies in between leaves it to be published again (a second
/// delivery, which the claim turns into a skip), never lost.
pub async fn publish_announced(ctx: &Context) -> Result<(), MaintenanceError> {
    loop {
        // A long drain must not outlast this process's lead.
        ctx.still_leader()?;
        let ids = ctx.store.announcements(MAX_BURST).await?;
        if ids.is_empty() {
            return Ok(());
        }
        let jobs: Vec<AnnouncedJob> = ctx.store.announced(&ids).await?;
        let waiting: Vec<WaitingJob> = jobs.iter().map(WaitingJob::from).collect();
        ctx.broker.publish_waiting(&waiting).await?;
        ctx.store.forget_announcements(&ids).await?;
        for job in &jobs {
            crate::metrics::job_enqueued(&job.queue, &job.task_type);
            tracing::info!(event = "job_enqueued", job.id = %job.id, job.r#type = %job.task_type,
                job.queue = %job.queue, "enqueued job {} committed by an application transaction", job.id);
        }
        if (ids.len() as u64) < MAX_BURST {
            return Ok(());
        }
    }
}

fn store_error(err: sea_orm::sqlx::Error) -> StoreError {
    StoreError::Database(sea_orm::DbErr::Conn(sea_orm::RuntimeErr::SqlxError(
        std::sync::Arc::new(err),
    )))
}
