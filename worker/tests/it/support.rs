use std::sync::{Arc, Mutex};
use std::time::Duration;

use conveyor::retry::RetryPolicy;
use conveyor::{Broker, Job, JobId, JobStatus, NewJob, Store, WorkerId};
use testkit::{TestDb, TestRedis, wait_until};
use tokio::sync::oneshot;
use worker::{Registry, Settings, Worker, builtin_registry};

/// One test's database, Redis prefix, and handles to both.
pub struct Harness {
    pub db: TestDb,
    pub redis: TestRedis,
    pub store: Store,
    pub broker: Broker,
}

impl Harness {
    pub async fn new() -> Harness {
        let db = TestDb::new().await;
        let redis = TestRedis::new();
        let store = Store::new(db.conn.clone());
        let broker = broker_for(&redis, 4);
        Harness {
            db,
            redis,
            store,
            broker,
        }
    }

    /// Settings for fast tests: short leases, quick retries, no jitter.
    pub fn settings(&self, name: &str) -> Settings {
        Settings {
            worker_id: WorkerId::new(format!(
                "{name}-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..6]
            )),
            host: "test".to_owned(),
            queues: vec!["default".to_owned()],
            concurrency: 4,
            lease: Duration::from_millis(1500),
            heartbeat: Duration::from_millis(250),
            retry: RetryPolicy {
                base: Duration::from_millis(20),
                max: Duration::from_millis(200),
                jitter: 0.0,
            },
            shutdown_grace: Duration::from_secs(5),
            poll_interval: Duration::from_millis(200),
            promote_interval: Duration::from_millis(50),
            stop_grace: Duration::from_millis(200),
            reconcile_interval: Duration::from_millis(500),
            epoch_check_interval: Duration::from_millis(100),
            retention: Default::default(),
            retention_interval: Duration::from_secs(3600),
            schedule_interval: Duration::from_millis(100),
            schedules: Vec::new(),
        }
    }

    /// Starts a worker in this process.
    pub fn spawn(&self, settings: Settings, registry: Registry) -> RunningWorker {
        let broker = broker_for(&self.redis, 4);
        self.spawn_with(self.store.clone(), broker, settings, registry)
    }

    pub fn spawn_with(
        &self,
        store: Store,
        broker: Broker,
        settings: Settings,
        registry: Registry,
    ) -> RunningWorker {
        self.start(Worker::new(store, broker, settings, registry))
    }

    /// Starts a worker in this process that makes a span for each attempt
    /// through `traces`.
    pub fn spawn_traced(
        &self,
        settings: Settings,
        registry: Registry,
        traces: conveyor::trace::Traces,
    ) -> RunningWorker {
        let broker = broker_for(&self.redis, 4);
        self.start(Worker::traced(
            self.store.clone(),
            broker,
            settings,
            registry,
            traces,
        ))
    }

    fn start(&self, worker: Worker) -> RunningWorker {
        let id = worker.id().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(worker.run(async move {
            let _ = stopped.await;
        }));
        RunningWorker {
            id,
            stop: Some(stop),
            handle,
        }
    }

    /// Enqueues a job through the client, as the API does.
    pub async fn submit(&self, new: NewJob) -> Job {
        conveyor::Client::new(self.store.clone(), self.broker.clone())
            .enqueue(new)
            .await
            .expect("enqueue")
            .job()
            .clone()
    }

    /// Commits a job without publishing it: what a process that crashed
    /// between the two leaves.
    pub async fn insert_unpublished(&self, new: NewJob) -> Job {
        self.store.insert(&new).await.expect("insert").job().clone()
    }

    /// A maintenance context of this test's own that holds the leader's
    /// lease, for running single passes by hand.
    pub async fn maintenance(&self) -> conveyor::maintenance::Context {
        let maintenance = conveyor::maintenance::Maintenance::new(
            self.store.clone(),
            self.broker.clone(),
            self.settings("maintenance").maintenance(),
            Arc::new(conveyor::outage::Outages::default()),
        );
        let ctx = maintenance.context().clone();
        assert!(ctx.take_lead().await.expect("campaign"), "no other leader");
        ctx
    }

    pub async fn job(&self, id: JobId) -> Job {
        self.store
            .find(id)
            .await
            .expect("find")
            .expect("job exists")
    }

    /// Waits until job `id` is in `status`; returns it.
    pub async fn wait_for(&self, id: JobId, status: JobStatus, deadline: Duration) -> Job {
        wait_until(&format!("job {id} to be {status}"), deadline, || async {
            let job = self.job(id).await;
            (job.status == status).then_some(job)
        })
        .await
    }

    pub fn keys(&self) -> conveyor::Keys {
        conveyor::Keys::new(&self.redis.prefix)
    }

    pub fn redis_conn(&self) -> testkit::RedisConnection {
        self.redis.connection().expect("connection")
    }
}

/// A worker running in this process.
pub struct RunningWorker {
    pub id: WorkerId,
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<()>,
}

impl RunningWorker {
    /// Graceful shutdown, as on SIGTERM; waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), &mut self.handle)
            .await
            .expect("worker stopped within 30 s")
            .expect("worker task");
    }

    /// A crash: every task of the worker stops where it is, no cleanup.
    pub async fn kill(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

pub fn id(job: &Job) -> JobId {
    JobId::from(job.id)
}

pub fn job(task_type: &str, payload: serde_json::Value) -> NewJob {
    NewJob::new(task_type, payload)
}

/// Records each call of a handler (the job id and attempt).
#[derive(Clone, Default)]
pub struct Calls(Arc<Mutex<Vec<(JobId, i32, tokio::time::Instant)>>>);

impl Calls {
    pub fn record(&self, context: &worker::Context) {
        self.0.lock().expect("lock").push((
            context.job_id,
            context.attempt,
            tokio::time::Instant::now(),
        ));
    }

    pub fn count(&self, id: JobId) -> usize {
        self.0
            .lock()
            .expect("lock")
            .iter()
            .filter(|(job, _, _)| *job == id)
            .count()
    }

    pub fn all(&self) -> Vec<(JobId, i32, tokio::time::Instant)> {
        self.0.lock().expect("lock").clone()
    }
}

/// The built-ins plus a `counted` handler that records its calls and
/// completes, and `flaky`, which panics.
pub fn registry_with(calls: &Calls) -> Registry {
    let mut registry = builtin_registry();
    let counted = calls.clone();
    registry.register(
        "counted",
        move |_payload: serde_json::Value, context: worker::Context| {
            let calls = counted.clone();
            async move {
                calls.record(&context);
                Ok::<_, worker::JobError>(serde_json::json!({"attempt": context.attempt}))
            }
        },
    );
    let panicking = calls.clone();
    registry.register(
        "panics",
        move |_payload: serde_json::Value, context: worker::Context| {
            let calls = panicking.clone();
            async move {
                calls.record(&context);
                if context.attempt > 0 {
                    panic!("handler bug on attempt {}", context.attempt);
                }
                Ok::<_, worker::JobError>(serde_json::json!({}))
            }
        },
    );
    registry
}

/// A broker on this test's Redis (a server or a cluster, as the
/// environment says) and key prefix.
pub fn broker_for(redis: &TestRedis, pool_size: usize) -> Broker {
    let address =
        conveyor::broker::RedisAddress::new(&redis.url, redis.cluster).expect("REDIS_URL");
    Broker::connect(&address, &redis.prefix, pool_size).expect("broker")
}
