//! [`Worker`]: start the loops, run jobs until told to stop, stop gracefully.

use std::future::Future;
use std::sync::Arc;

use conveyor::broker::WorkerInfo;
use conveyor::maintenance::Maintenance;
use conveyor::maintenance::dead_workers::hand_back;
use conveyor::{Broker, Store, WorkerId};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::background::{beat, cancel_listener, heartbeat_loop, lease_watchdog};
use crate::fetch::fetch_loop;
use crate::handler::Registry;
use crate::runtime::{Runtime, StopReason};
use crate::settings::Settings;

/// A worker process's runtime. Build it with the handlers it runs, then call
/// [`Worker::run`].
#[derive(Debug)]
pub struct Worker {
    runtime: Arc<Runtime>,
}

impl Worker {
    pub fn new(store: Store, broker: Broker, settings: Settings, registry: Registry) -> Self {
        Self::traced(
            store,
            broker,
            settings,
            registry,
            conveyor::trace::Traces::off(),
        )
    }

    /// [`Worker::new`], with a span for every attempt made through `traces`.
    pub fn traced(
        store: Store,
        broker: Broker,
        settings: Settings,
        registry: Registry,
        traces: conveyor::trace::Traces,
    ) -> Self {
        // Metrics recorded before a recorder exists are lost.
        conveyor::metrics::install();
        Worker {
            runtime: Runtime::new(store, broker, settings, registry, traces),
        }
    }

    pub fn id(&self) -> &WorkerId {
        &self.runtime.settings.worker_id
    }

    /// Runs jobs until `shutdown` completes, then stops fetching, gives
    /// running jobs the shutdown grace period, puts back (without counting
    /// the attempt) those still running, and deregisters.
    ///
    /// Dropping this future instead is a crash: every task stops where it
    /// is, and other workers' maintenance services recover its jobs.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let runtime = self.runtime;
        let settings = &runtime.settings;
        let info = WorkerInfo {
            id: runtime.me().to_owned(),
            host: settings.host.clone(),
            pid: std::process::id(),
            queues: settings.queues.clone(),
            concurrency: settings.concurrency as u32,
            started_at: chrono::Utc::now().to_rfc3339(),
            running: 0,
            heartbeat: settings.heartbeat,
        };
        // Registered before fetching, so no one mistakes it for dead; its
        // queues' settings read before the first fetch.
        beat(&runtime, &info).await;
        crate::gates::refresh(&runtime).await;
        declare_schedules(&runtime).await;
        // Its queues keep labels of their own in its metrics, whatever
        // names the jobs it meets carry.
        conveyor::metrics::reserve_queue_labels(&settings.queues);
        if let Err(err) = runtime.broker.add_queues(&settings.queues).await {
            runtime.outages.redis.failed("redis", &err);
        }
        tracing::info!(event = "worker_started", worker.id = %runtime.me(),
            queues = %settings.queues.join(","), concurrency = settings.concurrency,
            task_types = %runtime.registry.task_types().join(","),
            "worker {} started", runtime.me());

        let stop_services = CancellationToken::new();
        let stopping = CancellationToken::new();
        let give_up = CancellationToken::new();
        let mut services = JoinSet::new();
        services.spawn(heartbeat_loop(runtime.clone(), stop_services.clone(), info));
        services.spawn(cancel_listener(runtime.clone(), stop_services.clone()));
        services.spawn(lease_watchdog(runtime.clone(), stop_services.clone()));
        services.spawn(crate::gates::refresh_loop(
            runtime.clone(),
            stop_services.clone(),
        ));
        let maintenance = Maintenance::new(
            runtime.store.clone(),
            runtime.broker.clone(),
            settings.maintenance(),
            runtime.outages.clone(),
        );
        let stop_maintenance = stop_services.clone();
        services.spawn(maintenance.run(Maintenance::services(), async move {
            stop_maintenance.cancelled().await
        }));

        let watch = async {
            shutdown.await;
            tracing::info!(event = "worker_stopping", worker.id = %runtime.me(),
                running = runtime.running_count(), "worker {} stopping", runtime.me());
            stopping.cancel();
        };
        let (mut tasks, ()) = tokio::join!(
            fetch_loop(runtime.clone(), stopping.clone(), give_up.clone()),
            watch
        );

        let drained = tokio::time::timeout(settings.shutdown_grace, drain(&mut tasks)).await;
        if drained.is_err() {
            tracing::info!(worker.id = %runtime.me(), running = runtime.running_count(),
                "grace period over; putting back the jobs still running");
            runtime.stop_all(StopReason::Shutdown);
            let writes = settings.stop_grace + std::time::Duration::from_secs(5);
            let _ = tokio::time::timeout(writes, drain(&mut tasks)).await;
            give_up.cancel();
            tasks.shutdown().await;
        }

        // Ids taken but never claimed (PostgreSQL was down) go back to Redis.
        let clean = match hand_back(&runtime.store, &runtime.broker, runtime.me()).await {
            Ok(_) => true,
            Err(err) => {
                tracing::warn!(worker.id = %runtime.me(), error = %err, "could not hand back this worker's ids");
                false
            }
        };
        stop_services.cancel();
        while services.join_next().await.is_some() {}
        // The attempts ended since the last heartbeat, for the dashboard:
        // a batch not yet confirmed, then the rest (bounded: a Redis that
        // does not answer costs the counts only).
        let _ = tokio::time::timeout(settings.stop_grace, async {
            while runtime.tally_batch().is_some() {
                if runtime.send_tally().await.is_err() {
                    break;
                }
            }
        })
        .await;
        if clean {
            if let Err(err) = runtime.broker.remove_worker(runtime.me()).await {
                runtime.outages.redis.failed("redis", &err);
            }
        } else {
            tracing::warn!(worker.id = %runtime.me(),
                "some ids could not be handed back; leaving this worker registered so dead-worker recovery takes them");
        }
        tracing::info!(event = "worker_stopped", worker.id = %runtime.me(), "worker {} stopped", runtime.me());
    }
}

/// Creates the schedules this worker declares, or replaces their
/// definitions (by name); one that cannot be written is logged, not fatal.
async fn declare_schedules(runtime: &Runtime) {
    if runtime.settings.schedules.is_empty() {
        return;
    }
    let client = conveyor::Client::new(runtime.store.clone(), runtime.broker.clone());
    for spec in &runtime.settings.schedules {
        match client.declare_schedule(spec).await {
            Ok(row) => tracing::info!(event = "schedule_declared", schedule = %row.name,
                cron = %row.cron, timezone = %row.timezone, "declared schedule {}", row.name),
            Err(err) => tracing::error!(schedule = %spec.name, error = %err,
                "could not declare schedule {}", spec.name),
        }
    }
}

async fn drain(tasks: &mut JoinSet<()>) {
    while tasks.join_next().await.is_some() {}
}
