//! Maintenance: the background services that keep Redis in line with
//! PostgreSQL and move on what dead or stalled workers left, run by one
//! runner in every worker process.
//!
//! | service | where it runs | what it does |
//! |---|---|---|
//! | [`lease_rescuer`] | every process | `running` jobs whose lease expired → `retrying` / `failed` / `canceled`, republished |
//! | [`promoter`] | every process, for its queues | due ids from the delayed sets onto their ready lanes |
//! | [`dead_workers`] | the leader | ids in the processing lists of workers that stopped heartbeating go back to Redis, then the worker leaves the registry |
//! | [`reconciler`] | the leader | waiting jobs no Redis key holds are published again |
//! | [`idle_queues`] | the leader | queues that hold nothing leave the set of known queues |
//! | [`retention`] | the leader | finished jobs past their retention are deleted, in bounded batches |
//! | [`scheduler`] | the leader | periodic schedules' due ticks are fired, one job per tick |
//! | [`commit_listener`] | the leader | jobs enqueued in committed application transactions are published when their `NOTIFY` arrives (and every tick, from the outbox) |
//!
//! The first two are safe to run anywhere at once (a guarded `UPDATE ...
//! SKIP LOCKED`, an atomic script), and running them everywhere keeps a
//! dead worker's jobs moving without waiting for an election. The others
//! would repeat each other's work, so one process runs them: the holder of
//! the leader's lease ([`leader`]), renewed while it lives, and checked
//! between the pages of a pass so that a process that lost it stops. The
//! lease saves work; it is not what keeps the guarantees: every write the
//! services make is guarded (a claim checks the row, a publish of a job that
//! moved on costs a skipped delivery), so two processes that both believe
//! they lead do no harm.
//!
//! # Layout
//! - this module: [`Maintenance`], the runner, and [`Settings`].
//! - [`leader`]: the leader's lease.
//! - [`lease_rescuer`], [`promoter`], [`dead_workers`], [`reconciler`],
//!   [`idle_queues`], [`retention`], [`scheduler`]: one service each.
//! - [`commit_listener`]: not a pass but a session, `LISTEN`ing while
//!   this process leads.

pub mod commit_listener;
pub mod dead_workers;
pub mod idle_queues;
pub mod leader;
pub mod lease_rescuer;
pub mod promoter;
pub mod reconciler;
pub mod retention;
pub mod scheduler;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::outage::Outages;
use crate::{Broker, BrokerError, Client, Store, StoreError, WorkerId};

pub use leader::Leadership;

/// How often the maintenance services run, and the lease they judge by.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This process, as the leader's lease names it.
    pub me: WorkerId,
    /// The queues this process promotes.
    pub queues: Vec<String>,
    /// How long a silent worker or an unrenewed lease is given.
    pub lease: Duration,
    /// How often the lease rescuer, dead-worker recovery and the election run.
    pub tick: Duration,
    pub promote_interval: Duration,
    /// A full reconciliation pass at most this often.
    pub reconcile_interval: Duration,
    /// How often the reconciler looks for a Redis that lost its data.
    pub epoch_check_interval: Duration,
    /// How long finished jobs are kept unless their queue says otherwise.
    pub retention: retention::Retention,
    /// How often the leader deletes finished jobs past their retention.
    pub retention_interval: Duration,
    /// How often the leader fires due periodic schedules.
    pub schedule_interval: Duration,
}

impl Settings {
    /// How long the leader's lease lasts unrenewed: a few ticks, and at
    /// least a worker lease, so a leader that stalls briefly keeps it and
    /// one that died is replaced quickly.
    pub fn leader_ttl(&self) -> Duration {
        (self.tick * 4).max(self.lease)
    }
}

/// Why a pass stopped early. The runner logs it through the process's
/// [`Outages`] and tries again on the next tick.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The leader's lease lapsed during the pass: another process may lead.
    #[error("lost the leader's lease during the pass")]
    NotLeader,
}

/// What every service can reach.
#[derive(Debug, Clone)]
pub struct Context {
    pub store: Store,
    pub broker: Broker,
    pub client: Client,
    pub settings: Arc<Settings>,
    pub leadership: Arc<Leadership>,
    pub outages: Arc<Outages>,
}

impl Context {
    /// Campaigns for the leader's lease once, now (the runner campaigns
    /// every tick; a one-off pass outside it, such as a test's, calls this
    /// first). True if this process holds it.
    pub async fn take_lead(&self) -> Result<bool, BrokerError> {
        leader::campaign_once(self).await
    }

    /// Fails the pass if this process no longer holds the leader's lease.
    pub fn still_leader(&self) -> Result<(), MaintenanceError> {
        if self.leadership.is_leader() {
            Ok(())
        } else {
            Err(MaintenanceError::NotLeader)
        }
    }

    fn report(&self, service: &str, err: &MaintenanceError) {
        match err {
            MaintenanceError::Store(err) if err.is_unavailable() => {
                self.outages.postgres.failed("postgres", err)
            }
            MaintenanceError::Store(err) => {
                tracing::error!(service, error = %err, "a maintenance pass failed")
            }
            MaintenanceError::Broker(err) => self.outages.redis.failed("redis", err),
            MaintenanceError::NotLeader => {
                tracing::info!(service, "stopped a pass: the leader's lease moved on")
            }
        }
    }
}

/// Where a service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// In every process.
    Everywhere,
    /// Only in the process that holds the leader's lease.
    Leader,
}

type Pass<'a> = Pin<Box<dyn Future<Output = Result<(), MaintenanceError>> + Send + 'a>>;

/// One maintenance service.
pub trait Service: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn scope(&self) -> Scope;
    /// How often the runner offers it a pass.
    fn period(&self, settings: &Settings) -> Duration;
    /// One pass.
    fn pass<'a>(&'a self, ctx: &'a Context) -> Pass<'a>;
}

/// The runner: the election and every service, until stopped.
#[derive(Debug)]
pub struct Maintenance {
    ctx: Context,
}

impl Maintenance {
    pub fn new(store: Store, broker: Broker, settings: Settings, outages: Arc<Outages>) -> Self {
        let client = Client::new(store.clone(), broker.clone());
        let leadership = Arc::new(Leadership::new(settings.leader_ttl()));
        Maintenance {
            ctx: Context {
                store,
                broker,
                client,
                settings: Arc::new(settings),
                leadership,
                outages,
            },
        }
    }

    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// The standard services.
    pub fn services() -> Vec<Arc<dyn Service>> {
        vec![
            Arc::new(lease_rescuer::LeaseRescuer),
            Arc::new(promoter::Promoter),
            Arc::new(dead_workers::DeadWorkers),
            Arc::new(reconciler::Reconciler::default()),
            Arc::new(idle_queues::IdleQueues),
            Arc::new(retention::Retainer),
            Arc::new(scheduler::Scheduler),
        ]
    }

    /// Runs the election and `services` until `stop` completes, then gives
    /// the leader's lease up.
    pub async fn run(self, services: Vec<Arc<dyn Service>>, stop: impl Future<Output = ()>) {
        let stop_all = CancellationToken::new();
        let mut tasks = JoinSet::new();
        tasks.spawn(leader::campaign(self.ctx.clone(), stop_all.clone()));
        tasks.spawn(commit_listener::run(self.ctx.clone(), stop_all.clone()));
        for service in services {
            tasks.spawn(run_service(self.ctx.clone(), service, stop_all.clone()));
        }
        stop.await;
        stop_all.cancel();
        while tasks.join_next().await.is_some() {}
        if let Err(err) = self
            .ctx
            .broker
            .release_leadership(self.ctx.settings.me.as_str())
            .await
        {
            self.ctx.outages.redis.failed("redis", &err);
        }
    }
}

async fn run_service(ctx: Context, service: Arc<dyn Service>, stop: CancellationToken) {
    let period = service.period(&ctx.settings);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        if service.scope() == Scope::Leader && !ctx.leadership.is_leader() {
            continue;
        }
        let pass = service.pass(&ctx);
        let outcome = tokio::select! {
            outcome = pass => outcome,
            () = stop.cancelled() => return,
        };
        if let Err(err) = outcome {
            ctx.report(service.name(), &err);
        }
    }
}
