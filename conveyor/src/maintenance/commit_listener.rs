//! The commit listener: publishes jobs as soon as the application
//! transaction that enqueued them commits (`client::transactional`).
//!
//! Such jobs are announced with `NOTIFY`, which PostgreSQL delivers at
//! commit to every session listening on the channel. The leader listens, on
//! a connection of its own (the pool's connections are shared and must not
//! carry a `LISTEN`), reads which announced jobs still wait, and publishes
//! them. It is an accelerator, not a guarantee: a notification sent while
//! nobody listened (no leader, a connection being replaced) or received by
//! a leader that died before publishing is lost, and the reconciler
//! publishes those jobs on its next pass. Each time it starts listening it
//! runs one reconciliation pass with no quiet period, so that jobs
//! committed while nobody listened wait for that pass, not for the
//! reconciler's interval. A session ends (and the next one catches up)
//! when its connection is lost, when a publish fails (Redis away: the
//! catch-up publishes those jobs once it is back), and when it stops
//! hearing its own pings: an empty notification it sends through the
//! pool, one at a time; one that committed and was not delivered within
//! three ticks means a half-open connection (the server gone without a
//! reset), which would otherwise deliver nothing and report no error.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use sea_orm::sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::{Context, MaintenanceError};
use crate::job::WaitingJob;
use crate::store::{AnnouncedJob, COMMITTED_CHANNEL, StoreError, announced_ids};

/// The name it reports under.
const NAME: &str = "commit_listener";

/// Most announced ids published in one round trip; notifications that
/// arrive together are published together.
pub const MAX_BURST: usize = 2_000;

/// Ticks without a notification, not even the session's own pings, after
/// which its connection is taken for dead.
const SILENT_TICKS: u32 = 3;

/// Notifications read ahead of publishing. PostgreSQL queues the rest
/// server-side for this session (up to 8 GB for all listeners).
const READ_AHEAD: usize = 1_024;

/// Listens while this process leads, until `stop`.
pub async fn run(ctx: Context, stop: CancellationToken) {
    loop {
        if ctx.leadership.is_leader()
            && let Err(err) = listen(&ctx, &stop).await
        {
            ctx.report(NAME, &err);
        }
        tokio::select! {
            () = tokio::time::sleep(ctx.settings.tick) => {}
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
    // A lost connection ends the session; the next one catches up.
    listener.eager_reconnect(false);
    listener
        .listen(COMMITTED_CHANNEL)
        .await
        .map_err(store_error)?;
    tracing::debug!(channel = COMMITTED_CHANNEL, "listening for committed jobs");

    // Jobs committed before the LISTEN took effect were announced to nobody.
    super::reconciler::reconcile_once(ctx, Duration::ZERO).await?;

    let (sender, mut announced) = mpsc::channel::<String>(READ_AHEAD);
    // When the connection last delivered anything, stamped by the reader
    // as it reads (not when the jobs are published, which may lag).
    let heard = Arc::new(Mutex::new(Instant::now()));
    let stamp = heard.clone();
    // Reading in a task of its own, aborted when the session ends: an
    // abort may cut a read short, which is why the connection is the
    // session's alone and is closed with its pool, never reused.
    let reader = AbortOnDropHandle::new(tokio::spawn(async move {
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    if let Ok(mut at) = stamp.lock() {
                        *at = Instant::now();
                    }
                    if sender
                        .send(notification.payload().to_owned())
                        .await
                        .is_err()
                    {
                        return Ok(());
                    }
                }
                Ok(None) => return Ok(()),
                Err(err) => return Err(err),
            }
        }
    }));
    let mut ticks = tokio::time::interval(ctx.settings.tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // One ping at a time; it answers when its notification committed.
    let mut ping: Option<AbortOnDropHandle<Result<Instant, StoreError>>> = None;
    // When a ping this connection has not delivered yet committed.
    let mut unheard: Option<Instant> = None;
    loop {
        tokio::select! {
            payload = announced.recv() => {
                let Some(payload) = payload else { break };
                let mut ids = announced_ids(&payload);
                while ids.len() < MAX_BURST
                    && let Ok(more) = announced.try_recv()
                {
                    ids.extend(announced_ids(&more));
                }
                // Unpublished, these jobs are the next session's catch-up's.
                publish(ctx, &ids).await?;
            }
            _ = ticks.tick() => {
                ctx.still_leader()?;
                if let Some(sent) = ping.take_if(|ping| ping.is_finished()) {
                    // Only a ping that committed counts: one the pool could
                    // not send (an outage the other services report) says
                    // nothing about this connection.
                    if let Ok(Ok(committed)) = sent.await {
                        unheard = Some(committed);
                    }
                }
                if let Some(committed) = unheard {
                    let last_heard = heard.lock().map(|at| *at).unwrap_or(committed);
                    if last_heard >= committed {
                        unheard = None;
                    } else if committed.elapsed() > ctx.settings.tick * SILENT_TICKS {
                        tracing::warn!(channel = COMMITTED_CHANNEL,
                            "the listening connection did not deliver its own ping; listening again");
                        return Ok(());
                    }
                }
                if ping.is_none() && unheard.is_none() {
                    // In a task of its own, so that a slow pool never holds
                    // up publishing.
                    let store = ctx.store.clone();
                    ping = Some(AbortOnDropHandle::new(tokio::spawn(async move {
                        store.ping_listener().await.map(|()| Instant::now())
                    })));
                }
            }
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

/// Publishes the announced jobs that still wait.
async fn publish(ctx: &Context, ids: &[uuid::Uuid]) -> Result<(), MaintenanceError> {
    if ids.is_empty() {
        return Ok(());
    }
    let jobs: Vec<AnnouncedJob> = ctx.store.announced(ids).await?;
    let waiting: Vec<WaitingJob> = jobs.iter().map(WaitingJob::from).collect();
    ctx.broker.publish_waiting(&waiting).await?;
    for job in &jobs {
        crate::metrics::job_enqueued(&job.queue, &job.task_type);
        tracing::info!(event = "job_enqueued", job.id = %job.id, job.r#type = %job.task_type,
            job.queue = %job.queue, "enqueued job {} committed by an application transaction", job.id);
    }
    Ok(())
}

fn store_error(err: sea_orm::sqlx::Error) -> StoreError {
    StoreError::Database(sea_orm::DbErr::Conn(sea_orm::RuntimeErr::SqlxError(
        std::sync::Arc::new(err),
    )))
}
