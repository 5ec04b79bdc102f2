//! The stack under test and the faults injected into it.

use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use nix::sys::signal::Signal;
use rand::Rng;
use rand::rngs::StdRng;
use sea_orm::DatabaseConnection;
use tokio::time::Instant;

use conveyor::store::LEASE_EXPIRED_ERROR;
use sea_orm::ConnectionTrait;
use testkit::Proxy;
use testkit::proxy::target_of;

use crate::Args;
use crate::check::{self, Report, WorkerLife};
use crate::client;
use crate::procs::{Proc, free_port, wait_for_port};
use crate::services::{CLUSTER_NODE_TIMEOUT, Postgres, Redis, RedisCluster};

/// Lease and heartbeat of the workers under test: short, so that a dead
/// worker's jobs come back within seconds.
const LEASE_SECS: u64 = 3;
/// Grace a SIGTERM'd worker gives its running jobs before putting them back.
const SHUTDOWN_GRACE_SECS: u64 = 1;
/// Retry backoff of every worker: quick, so that jobs failing on purpose
/// use up their attempts within the run.
const RETRY_BASE_MS: u64 = 200;
const RETRY_MAX_MS: u64 = 1_000;

/// How long Redis's replies are held during the slow-Redis fault: past
/// the clients' response timeouts.
const REDIS_DELAY: Duration = Duration::from_millis(1_500);

/// The Redis key prefix of the stack under test.
const CHAOS_PREFIX: &str = "chaos";

/// How long a stopped Redis master stays stopped after its replica took
/// over (on a cluster), while jobs must keep completing.
const STOPPED_MASTER_WINDOW: Duration = Duration::from_secs(8);

/// Redis as the stack sees it.
pub enum RedisSide {
    /// One server, reached through a proxy in this process that can hold
    /// replies back.
    Single { server: Box<Redis>, proxy: Proxy },
    /// A cluster, reached directly: a cluster client talks to every node.
    Cluster(RedisCluster),
}

impl RedisSide {
    pub async fn single(server: Redis) -> Self {
        let proxy = Proxy::start(target_of(&server.url())).await;
        RedisSide::Single {
            server: Box::new(server),
            proxy,
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            RedisSide::Single { server, proxy } => {
                vec![("REDIS_URL", proxy.url_through(&server.url()))]
            }
            RedisSide::Cluster(cluster) => vec![
                ("REDIS_URL", cluster.url()),
                ("CONVEYOR_REDIS_CLUSTER", "true".to_owned()),
            ],
        }
    }

    async fn stop(&mut self) {
        match self {
            RedisSide::Single { server, .. } => server.stop().await,
            RedisSide::Cluster(cluster) => cluster.stop().await,
        }
    }
}

/// Everything running: servers, API, workers. The API and the workers
/// reach PostgreSQL (and a single Redis) through proxies in this process,
/// which can lose a reply or hold replies back.
pub struct Stack {
    bin_dir: std::path::PathBuf,
    work_dir: std::path::PathBuf,
    postgres: Postgres,
    redis: RedisSide,
    postgres_proxy: Proxy,
    api: Proc,
    api_port: u16,
    api_starts: usize,
    /// Live workers, each with its index in `lives`.
    workers: Vec<(Proc, usize)>,
    /// A worker under SIGSTOP.
    paused: Option<(Proc, usize)>,
    /// The Python workers of the `remote` queue (their history is in the
    /// API's logs, which `lives` holds too).
    remote: Vec<Proc>,
    /// A Python worker under SIGSTOP.
    remote_paused: Option<Proc>,
    remote_starts: usize,
    remote_worker: std::path::PathBuf,
    pub lives: Vec<WorkerLife>,
    rng: StdRng,
    /// The run's seed: the job mix and the victims follow from it.
    pub seed: u64,
    /// Workers that did not exit when they should have.
    pub slow_exits: Vec<String>,
    /// Spells after a Redis failover in which nothing completed.
    pub redis_stalls: Vec<String>,
    /// What was done, in order, for the log.
    pub faults: Vec<String>,
    started: Instant,
}

impl Stack {
    pub async fn start(
        args: &Args,
        seed: u64,
        postgres: Postgres,
        redis: RedisSide,
    ) -> anyhow::Result<Stack> {
        let api_port = free_port()?;
        let postgres_proxy = Proxy::start(target_of(&postgres.url("postgres"))).await;
        let env = base_env(&postgres_proxy, &postgres, &redis);
        let (api, api_life) = spawn_api(&args.bin_dir, &args.work_dir, env, api_port, 0)?;
        let mut stack = Stack {
            bin_dir: args.bin_dir.clone(),
            work_dir: args.work_dir.clone(),
            api,
            postgres,
            redis,
            postgres_proxy,
            api_port,
            api_starts: 1,
            workers: Vec::new(),
            paused: None,
            remote: Vec::new(),
            remote_paused: None,
            remote_starts: 0,
            remote_worker: args.remote_worker.clone(),
            lives: vec![api_life],
            rng: rand::SeedableRng::seed_from_u64(seed ^ 0x5eed),
            seed,
            slow_exits: Vec::new(),
            redis_stalls: Vec::new(),
            faults: Vec::new(),
            started: Instant::now(),
        };
        wait_for_port(api_port, Duration::from_secs(30)).await?;
        for _ in 0..args.workers {
            stack.spawn_worker()?;
        }
        for _ in 0..args.remote_workers {
            stack.spawn_remote_worker()?;
        }
        Ok(stack)
    }

    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        base_env(&self.postgres_proxy, &self.postgres, &self.redis)
    }

    fn spawn_api(&mut self) -> anyhow::Result<Proc> {
        let n = self.api_starts;
        self.api_starts += 1;
        let (api, life) = spawn_api(&self.bin_dir, &self.work_dir, self.env(), self.api_port, n)?;
        self.lives.push(life);
        Ok(api)
    }

    /// A Python example worker serving the `remote` queue through the API.
    fn spawn_remote_worker(&mut self) -> anyhow::Result<()> {
        let name = format!("py-{}", self.remote_starts);
        self.remote_starts += 1;
        let env = [
            ("CONVEYOR_URL", self.api_url()),
            ("CONVEYOR_QUEUES", client::REMOTE_QUEUE.to_owned()),
            ("CONVEYOR_WORKER_NAME", name.clone()),
            ("CONVEYOR_CONCURRENCY", "8".to_owned()),
            (
                "CONVEYOR_SHUTDOWN_GRACE_SECS",
                SHUTDOWN_GRACE_SECS.to_string(),
            ),
        ];
        let log = self.work_dir.join(format!("{name}.log"));
        let proc = Proc::spawn(name, &self.remote_worker, &env, log)?;
        self.remote.push(proc);
        Ok(())
    }

    /// SIGKILL a Python worker mid-job and start another: its jobs come
    /// back when their leases run out.
    async fn kill_remote_worker(&mut self) -> anyhow::Result<()> {
        if self.remote.is_empty() {
            return Ok(());
        }
        let index = self.rng.random_range(0..self.remote.len());
        let mut proc = self.remote.remove(index);
        proc.signal(Signal::SIGKILL)?;
        proc.kill().await;
        self.note(format!("SIGKILL {}", proc.name));
        self.spawn_remote_worker()
    }

    /// SIGSTOP a Python worker past its jobs' leases: they run elsewhere
    /// meanwhile, and its late reports must be refused.
    fn pause_remote_worker(&mut self) -> anyhow::Result<()> {
        if self.remote.len() < 2 {
            return Ok(());
        }
        let index = self.rng.random_range(0..self.remote.len());
        let proc = self.remote.remove(index);
        proc.signal(Signal::SIGSTOP)?;
        self.note(format!("SIGSTOP {}", proc.name));
        self.remote_paused = Some(proc);
        Ok(())
    }

    fn resume_remote_worker(&mut self) -> anyhow::Result<()> {
        if let Some(proc) = self.remote_paused.take() {
            proc.signal(Signal::SIGCONT)?;
            self.note(format!("SIGCONT {}", proc.name));
            self.remote.push(proc);
        }
        Ok(())
    }

    fn spawn_worker(&mut self) -> anyhow::Result<()> {
        let mut env = self.env();
        env.extend([
            ("CONVEYOR_CONCURRENCY", "20".to_owned()),
            (
                "CONVEYOR_QUEUES",
                format!(
                    "default,{},{}",
                    crate::queue_ops::PAUSABLE,
                    crate::queue_ops::LIMITED
                ),
            ),
            ("CONVEYOR_DB_POOL_SIZE", "8".to_owned()),
            ("CONVEYOR_LEASE_SECS", LEASE_SECS.to_string()),
            ("CONVEYOR_HEARTBEAT_SECS", "1".to_owned()),
            ("CONVEYOR_RETRY_BASE_MS", RETRY_BASE_MS.to_string()),
            ("CONVEYOR_RETRY_MAX_MS", RETRY_MAX_MS.to_string()),
            (
                "CONVEYOR_SHUTDOWN_GRACE_SECS",
                SHUTDOWN_GRACE_SECS.to_string(),
            ),
        ]);
        let name = format!("worker-{}", self.lives.len());
        let log = self.work_dir.join(format!("{name}.log"));
        let proc = Proc::spawn(
            name.clone(),
            &self.bin_dir.join("conveyor-worker"),
            &env,
            log.clone(),
        )?;
        self.lives.push(WorkerLife {
            name,
            log,
            fault: None,
        });
        self.workers.push((proc, self.lives.len() - 1));
        Ok(())
    }

    fn note(&mut self, what: String) {
        let line = format!(
            "[{:>6.1} s, {}] {what}",
            self.started.elapsed().as_secs_f64(),
            Utc::now().format("%H:%M:%S%.3f")
        );
        println!("{line}");
        self.faults.push(line);
    }

    fn pick_worker(&mut self) -> usize {
        self.rng.random_range(0..self.workers.len())
    }

    /// SIGKILL a random worker and start a replacement.
    async fn kill_worker(&mut self) -> anyhow::Result<()> {
        let index = self.pick_worker();
        let (mut proc, life) = self.workers.remove(index);
        proc.signal(Signal::SIGKILL)?;
        self.lives[life]
            .fault
            .get_or_insert((Utc::now(), "SIGKILL"));
        proc.kill().await;
        self.note(format!("SIGKILL {}", proc.name));
        self.spawn_worker()
    }

    /// SIGSTOP a worker for longer than its lease (until
    /// [`Stack::resume_worker`]): its jobs are taken over meanwhile, and its
    /// late writes must be fenced. It is not a victim of other faults while
    /// stopped.
    fn pause_worker(&mut self) -> anyhow::Result<()> {
        let index = self.pick_worker();
        let (proc, life) = self.workers.remove(index);
        proc.signal(Signal::SIGSTOP)?;
        self.lives[life]
            .fault
            .get_or_insert((Utc::now(), "SIGSTOP"));
        self.note(format!("SIGSTOP {}", proc.name));
        self.paused = Some((proc, life));
        Ok(())
    }

    fn resume_worker(&mut self) -> anyhow::Result<()> {
        if let Some((proc, life)) = self.paused.take() {
            proc.signal(Signal::SIGCONT)?;
            self.note(format!("SIGCONT {}", proc.name));
            self.workers.push((proc, life));
        }
        Ok(())
    }

    /// SIGTERM a worker: it must put back what it runs and exit within its
    /// grace period (plus a margin); then start a replacement.
    async fn terminate_worker(&mut self, twice: bool) -> anyhow::Result<()> {
        // The worker running the most jobs: short ones finish within the
        // grace period, long ones must be put back.
        let index = (0..self.workers.len())
            .max_by_key(|&index| check::running_in(&self.lives[self.workers[index].1].log))
            .unwrap_or_default();
        let (mut proc, life) = self.workers.remove(index);
        let running = check::running_in(&self.lives[life].log);
        proc.signal(Signal::SIGTERM)?;
        let limit = if twice {
            // A second signal means "now": no grace period.
            tokio::time::sleep(Duration::from_millis(100)).await;
            proc.signal(Signal::SIGTERM)?;
            self.lives[life]
                .fault
                .get_or_insert((Utc::now(), "SIGTERM twice"));
            Duration::from_secs(2)
        } else {
            Duration::from_secs(SHUTDOWN_GRACE_SECS + 10)
        };
        let started = Instant::now();
        let exited = proc.wait_exit(limit).await;
        self.note(format!(
            "SIGTERM{} {} (running {running} jobs): exited after {:.2} s",
            if twice { " twice" } else { "" },
            proc.name,
            started.elapsed().as_secs_f64()
        ));
        if !exited {
            self.slow_exits
                .push(format!("{} did not exit within {limit:?}", proc.name));
            proc.kill().await;
        }
        self.spawn_worker()
    }

    /// One server: restarted empty. A cluster: a master SIGKILLed, its
    /// replica promoted (what it had not copied yet is lost), and the
    /// killed node started again, empty, to rejoin as a replica.
    async fn restart_redis(&mut self) -> anyhow::Result<()> {
        let cluster = match &mut self.redis {
            RedisSide::Single { server, .. } => {
                server.restart_empty().await?;
                self.note("restarted Redis empty (no persistence: every id lost)".to_owned());
                return Ok(());
            }
            RedisSide::Cluster(cluster) => cluster,
        };
        let masters = cluster.masters().await?;
        let victim = masters[self.rng.random_range(0..masters.len())];
        let started = Instant::now();
        let failed_over = cluster.kill_master(victim, CLUSTER_NODE_TIMEOUT * 10).await;
        let took = started.elapsed().as_secs_f64();
        failed_over.with_context(|| format!("no failover after killing master {victim}"))?;
        self.note(format!(
            "SIGKILL Redis master :{victim}; its replica took over within {took:.1} s"
        ));
        let RedisSide::Cluster(cluster) = &mut self.redis else {
            unreachable!("matched above")
        };
        cluster.restart_node(victim).await?;
        self.note(format!("Redis node :{victim} started again, empty"));
        Ok(())
    }

    async fn restart_postgres(&mut self) -> anyhow::Result<()> {
        self.postgres.stop_fast().await?;
        self.note("PostgreSQL stopped (fast shutdown)".to_owned());
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.postgres.start().await?;
        self.note("PostgreSQL started".to_owned());
        Ok(())
    }

    /// SIGKILL a worker, then take PostgreSQL away for longer than a lease:
    /// the leader tries to recover the dead worker's ids while it cannot
    /// read their jobs, and must try again once PostgreSQL is back.
    async fn kill_worker_during_postgres_outage(&mut self) -> anyhow::Result<()> {
        self.kill_worker().await?;
        self.postgres.stop_fast().await?;
        self.note("PostgreSQL stopped while the dead worker is recovered".to_owned());
        tokio::time::sleep(Duration::from_secs(LEASE_SECS + 3)).await;
        self.postgres.start().await?;
        self.note("PostgreSQL started".to_owned());
        Ok(())
    }

    /// Holds every Redis reply past the clients' response timeouts for a
    /// few seconds: publishes, acknowledgements and pops time out after
    /// Redis acted on them.
    ///
    /// On a cluster: a master SIGSTOPped (a hung process: connections to
    /// it open and are never answered) until its replica has taken over
    /// and for [`STOPPED_MASTER_WINDOW`] more, in which jobs must keep
    /// completing; then continued, to learn it was replaced.
    async fn slow_redis(&mut self, db: &DatabaseConnection) -> anyhow::Result<()> {
        let proxy = match &self.redis {
            RedisSide::Single { proxy, .. } => proxy,
            RedisSide::Cluster(_) => return self.stop_redis_master(db).await,
        };
        proxy.delay_replies(REDIS_DELAY);
        self.note(format!(
            "Redis replies held back {} ms",
            REDIS_DELAY.as_millis()
        ));
        tokio::time::sleep(Duration::from_secs(3)).await;
        if let RedisSide::Single { proxy, .. } = &self.redis {
            proxy.delay_replies(Duration::ZERO);
        }
        self.note("Redis replies on time again".to_owned());
        Ok(())
    }

    fn cluster(&self) -> anyhow::Result<&RedisCluster> {
        match &self.redis {
            RedisSide::Cluster(cluster) => Ok(cluster),
            RedisSide::Single { .. } => anyhow::bail!("Redis is not a cluster in this run"),
        }
    }

    /// The cluster's slow Redis: see [`Stack::slow_redis`].
    async fn stop_redis_master(&mut self, db: &DatabaseConnection) -> anyhow::Result<()> {
        // A master whose replica is still copying its data cannot be
        // replaced: wait for the last fault's node to catch up.
        self.cluster()?
            .wait_replicas_in_sync(CLUSTER_NODE_TIMEOUT * 10)
            .await?;
        // The master of the `default` queue, where most jobs go.
        let busiest = conveyor::Keys::new(CHAOS_PREFIX).ready("default", 0);
        let victim = self.cluster()?.master_of(&busiest).await?;
        let pid = nix::unistd::Pid::from_raw(self.cluster()?.pid(victim)? as i32);
        nix::sys::signal::kill(pid, Signal::SIGSTOP)?;
        self.note(format!("SIGSTOP Redis master :{victim}"));
        let replaced = self
            .cluster()?
            .wait_replaced(victim, CLUSTER_NODE_TIMEOUT * 10)
            .await;
        if let Err(err) = replaced {
            nix::sys::signal::kill(pid, Signal::SIGCONT)?;
            return Err(err);
        }
        self.note(format!(
            "its replica took over; :{victim} stays stopped {} s more",
            STOPPED_MASTER_WINDOW.as_secs()
        ));
        let (created_before, completed_before) = job_counts(db).await?;
        tokio::time::sleep(STOPPED_MASTER_WINDOW).await;
        let (created_after, completed_after) = job_counts(db).await?;
        let (created, completed) = (
            created_after - created_before,
            completed_after - completed_before,
        );
        self.note(format!(
            "{completed} job(s) completed and {created} submitted while :{victim} was stopped after the failover"
        ));
        // Most jobs are quick: a healthy stack completes about as many as
        // arrive. A quarter allows for the slow ones.
        if completed * 4 < created {
            self.redis_stalls.push(format!(
                "only {completed} job(s) completed, of {created} submitted, in the {} s after Redis master :{victim} was replaced while it stayed stopped",
                STOPPED_MASTER_WINDOW.as_secs()
            ));
        }
        nix::sys::signal::kill(pid, Signal::SIGCONT)?;
        self.note(format!("SIGCONT Redis node :{victim}"));
        self.cluster()?
            .wait_whole(CLUSTER_NODE_TIMEOUT * 10)
            .await?;
        self.note("the Redis Cluster is whole again".to_owned());
        Ok(())
    }

    /// Loses the reply to the next insert, then to the next update (a claim
    /// or an outcome), after PostgreSQL committed them.
    async fn lose_postgres_replies(&mut self) -> anyhow::Result<()> {
        self.postgres_proxy.lose_next_reply_containing(b"INSERT 0");
        self.note("the next INSERT's reply will be lost".to_owned());
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.postgres_proxy.lose_next_reply_containing(b"UPDATE ");
        self.note("the next UPDATE's reply will be lost".to_owned());
        Ok(())
    }

    /// Retries by hand, through the API, every job of the kind that is
    /// retried after a loss and failed because its lease expired, while the
    /// worker that lost it may still be paused.
    async fn retry_lost_jobs(&mut self, db: &DatabaseConnection) -> anyhow::Result<()> {
        let lost = db
            .query_all_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                "SELECT id FROM jobs WHERE status = 'failed' AND error_message = $1 AND payload ? $2",
                [LEASE_EXPIRED_ERROR.into(), client::RETRY_AFTER_LOSS.into()],
            ))
            .await?;
        let http = reqwest::Client::new();
        let mut retried = 0;
        for row in lost {
            let id: uuid::Uuid = row.try_get("", "id")?;
            let answer = http
                .post(format!("{}/jobs/{id}/retry", self.api_url()))
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            if answer.is_ok_and(|answer| answer.status().is_success()) {
                retried += 1;
            }
        }
        self.note(format!(
            "retried {retried} job(s) by hand that had failed on a lost lease"
        ));
        Ok(())
    }

    async fn restart_api(&mut self) -> anyhow::Result<()> {
        self.api.signal(Signal::SIGKILL)?;
        self.api.kill().await;
        self.note(format!("SIGKILL {}", self.api.name));
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.api = self.spawn_api()?;
        wait_for_port(self.api_port, Duration::from_secs(30)).await?;
        self.note(format!("started {}", self.api.name));
        Ok(())
    }

    /// Stops workers and API gracefully (their logs end cleanly), then the
    /// servers.
    pub async fn shutdown(&mut self) {
        self.stop_clients().await;
        self.redis.stop().await;
        self.postgres.stop_now().await;
    }

    /// Stops workers and API gracefully, leaving the servers running.
    pub async fn stop_clients(&mut self) {
        let _ = self.resume_worker();
        let _ = self.resume_remote_worker();
        for proc in &self.remote {
            let _ = proc.signal(Signal::SIGTERM);
        }
        for proc in &mut self.remote {
            if !proc
                .wait_exit(Duration::from_secs(SHUTDOWN_GRACE_SECS + 10))
                .await
            {
                proc.kill().await;
            }
        }
        for (proc, _) in &self.workers {
            let _ = proc.signal(Signal::SIGTERM);
        }
        for (proc, _) in &mut self.workers {
            if !proc.wait_exit(Duration::from_secs(15)).await {
                proc.kill().await;
            }
        }
        let _ = self.api.signal(Signal::SIGTERM);
        if !self.api.wait_exit(Duration::from_secs(10)).await {
            self.api.kill().await;
        }
    }
}

fn base_env(
    postgres_proxy: &Proxy,
    postgres: &Postgres,
    redis: &RedisSide,
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        (
            "DATABASE_URL",
            postgres_proxy.url_through(&postgres.url("postgres")),
        ),
        ("CONVEYOR_PREFIX", CHAOS_PREFIX.to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    env.extend(redis.env());
    env
}

/// The API, and its life: its log holds what the Python workers' calls
/// did (claims and outcomes, under the workers' own event names), so the
/// check reads it with the workers' logs.
fn spawn_api(
    bin_dir: &std::path::Path,
    work_dir: &std::path::Path,
    mut env: Vec<(&'static str, String)>,
    port: u16,
    n: usize,
) -> anyhow::Result<(Proc, WorkerLife)> {
    env.extend([
        ("CONVEYOR_API_ADDR", format!("127.0.0.1:{port}")),
        // The Python workers' attempts run as the Rust workers' do.
        ("CONVEYOR_LEASE_SECS", LEASE_SECS.to_string()),
        ("CONVEYOR_RETRY_BASE_MS", RETRY_BASE_MS.to_string()),
        ("CONVEYOR_RETRY_MAX_MS", RETRY_MAX_MS.to_string()),
    ]);
    let name = format!("api-{n}");
    let log = work_dir.join(format!("{name}.log"));
    let api = Proc::spawn(
        name.clone(),
        &bin_dir.join("conveyor-api"),
        &env,
        log.clone(),
    )?;
    Ok((
        api,
        WorkerLife {
            name,
            log,
            fault: None,
        },
    ))
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillWorker,
    PauseWorker,
    ResumeWorker,
    TerminateWorker,
    RestartRedis,
    RestartPostgres,
    RestartApi,
    TerminateWorkerTwice,
    RetryLostJobs,
    SlowRedis,
    KillRemoteWorker,
    PauseRemoteWorker,
    ResumeRemoteWorker,
    LosePostgresReplies,
    KillWorkerDuringPostgresOutage,
}

/// Every fault at least once per minute; a worker killed every 6 s.
fn schedule(duration: Duration) -> Vec<(Duration, Fault)> {
    let mut plan = Vec::new();
    let end = duration.as_secs().saturating_sub(8).max(10);
    let mut at = 4;
    while at < end {
        plan.push((Duration::from_secs(at), Fault::KillWorker));
        at += 6;
    }
    let cycle = [
        (9, Fault::PauseWorker),
        // Its jobs' leases expired meanwhile; some are retried by hand
        // before it resumes.
        (9 + LEASE_SECS + 2, Fault::RetryLostJobs),
        // Longer than the lease: the lease rescuer takes its jobs meanwhile.
        (9 + LEASE_SECS * 2 + 1, Fault::ResumeWorker),
        (17, Fault::TerminateWorker),
        (23, Fault::RestartRedis),
        (26, Fault::SlowRedis),
        (31, Fault::RestartPostgres),
        (35, Fault::LosePostgresReplies),
        (39, Fault::RestartApi),
        (46, Fault::TerminateWorkerTwice),
        // Blocks for a lease and more: the worker kills due meanwhile wait.
        (49, Fault::KillWorkerDuringPostgresOutage),
        (7, Fault::KillRemoteWorker),
        (29, Fault::KillRemoteWorker),
        (42, Fault::PauseRemoteWorker),
        (42 + LEASE_SECS * 2 + 1, Fault::ResumeRemoteWorker),
        (55, Fault::KillRemoteWorker),
    ];
    let mut start = 0;
    while start < end {
        for (offset, fault) in cycle {
            if start + offset < end {
                plan.push((Duration::from_secs(start + offset), fault));
            }
        }
        start += 60;
    }
    plan.sort_by_key(|(at, _)| *at);
    plan
}

/// Runs the client and the faults, waits for quiescence, checks.
pub async fn run(
    args: &Args,
    stack: &mut Stack,
    db: &DatabaseConnection,
) -> anyhow::Result<Report> {
    let duration = Duration::from_secs(args.duration_secs);
    let started = Instant::now();
    let client = tokio::spawn(client::run(
        stack.api_url(),
        db.clone(),
        args.rate,
        started + duration,
        stack.seed,
    ));
    let hostile = tokio::spawn(crate::hostile::run(stack.api_url(), started + duration));
    let operator = tokio::spawn(crate::queue_ops::run(stack.api_url(), started + duration));
    let scheduler = tokio::spawn(crate::schedule_ops::run(
        stack.api_url(),
        started + duration,
    ));
    let viewer = tokio::spawn(crate::dashboard::run(stack.api_url(), started + duration));
    for (at, fault) in schedule(duration) {
        tokio::time::sleep_until(started + at).await;
        match fault {
            Fault::KillWorker => stack.kill_worker().await,
            Fault::PauseWorker => stack.pause_worker(),
            Fault::ResumeWorker => stack.resume_worker(),
            Fault::TerminateWorker => stack.terminate_worker(false).await,
            Fault::RestartRedis => stack.restart_redis().await,
            Fault::RestartPostgres => stack.restart_postgres().await,
            Fault::RestartApi => stack.restart_api().await,
            Fault::TerminateWorkerTwice => stack.terminate_worker(true).await,
            Fault::RetryLostJobs => stack.retry_lost_jobs(db).await,
            Fault::SlowRedis => stack.slow_redis(db).await,
            Fault::KillRemoteWorker => stack.kill_remote_worker().await,
            Fault::PauseRemoteWorker => stack.pause_remote_worker(),
            Fault::ResumeRemoteWorker => stack.resume_remote_worker(),
            Fault::LosePostgresReplies => stack.lose_postgres_replies().await,
            Fault::KillWorkerDuringPostgresOutage => {
                stack.kill_worker_during_postgres_outage().await
            }
        }
        .with_context(|| format!("injecting {fault:?}"))?;
    }
    let submissions = client.await.context("the client panicked")?;
    let findings = hostile.await.context("the hostile prober panicked")?;
    let operated = operator.await.context("the queue operator panicked")?;
    let schedule_errors = scheduler.await.context("the schedule driver panicked")?;
    let viewed = viewer.await.context("the dashboard viewer panicked")?;
    println!(
        "[{:>6.1} s] client done: {} submissions; waiting up to {} s for every job to finish",
        started.elapsed().as_secs_f64(),
        submissions.len(),
        args.quiesce_secs
    );

    // Quiescence: every accepted job finished, or the deadline passed.
    let deadline = Instant::now() + Duration::from_secs(args.quiesce_secs);
    let accepted: std::collections::HashSet<uuid::Uuid> =
        submissions.iter().filter_map(|s| s.accepted).collect();
    // A client that hung up never learned its job's id; its key finds it.
    let hung_up: std::collections::HashSet<&str> = submissions
        .iter()
        .filter(|s| s.hung_up)
        .map(|s| s.key.as_str())
        .collect();
    let rows = loop {
        let rows = check::rows(db).await?;
        let waiting = rows
            .iter()
            .filter(|row| {
                let taken = row.key.as_deref().is_some_and(|key| hung_up.contains(key));
                (accepted.contains(&row.id) || taken) && !check::is_terminal(&row.status)
            })
            .count();
        if waiting == 0 || Instant::now() > deadline {
            println!(
                "[{:>6.1} s] quiescent: {waiting} accepted job(s) not finished",
                started.elapsed().as_secs_f64()
            );
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // The attempt history and the schedule's jobs, while PostgreSQL still
    // runs (the quiescence wait above covers them: give their last ones
    // the same chance to finish).
    let (inside_pauses, most) = crate::queue_ops::audit(db, &operated.pauses).await?;
    let quiesced = Instant::now() + Duration::from_secs(args.quiesce_secs);
    let (tick_problems, scheduled) = loop {
        let (problems, scheduled) = crate::schedule_ops::audit(db).await?;
        let unfinished = problems.iter().any(|p| p.contains("did not finish"));
        if !unfinished || Instant::now() > quiesced {
            break (problems, scheduled);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // While the workers still run: a leader killed late leaves its last
    // announcements to the next one, which waits out the old lease first.
    let left = announcements_left(db).await?;
    // Stop the workers so that every log is complete before it is read
    // (and their sessions' statistics reach PostgreSQL).
    stack.stop_clients().await;
    let mut report = check::check(&submissions, &rows, &stack.lives);
    let (deadlocks, unlisted) = database_audit(db).await?;
    report.deadlocks = deadlocks;
    report.unlisted = unlisted;
    report.announcements_left = left;
    if report.announcements_left > 0 {
        report.problems.push(format!(
            "{} announcement(s) of jobs enqueued in transactions were never published and forgotten",
            report.announcements_left
        ));
    }
    if deadlocks > 0 {
        report.problems.push(format!(
            "PostgreSQL detected {deadlocks} deadlock(s): two statements locked the same jobs in different orders"
        ));
    }
    if unlisted > 0 {
        report.problems.push(format!(
            "{unlisted} job(s) and their job_listing rows disagree: GET /jobs would miss or misfile them"
        ));
    }
    report.pauses = operated.pauses.len();
    report.started_while_paused = inside_pauses.len();
    report.limited_most_concurrent = most;
    report.scheduled_jobs = scheduled;
    report.schedule_violations = tick_problems.len();
    report.problems.extend(tick_problems);
    report.server_errors += schedule_errors.len();
    report.problems.extend(schedule_errors);
    report.problems.extend(inside_pauses);
    report.dashboard_pages = viewed.loaded;
    report.server_errors += viewed.problems.len();
    report.problems.extend(viewed.problems);
    report.server_errors += operated.server_errors.len();
    report.problems.extend(operated.server_errors);
    report.slow_exits = stack.slow_exits.len();
    report.redis_stalls = stack.redis_stalls.len();
    report.problems.extend(stack.redis_stalls.iter().cloned());
    report.hostile_probes = findings.probes;
    report.slow_clients_closed = findings.slow_clients_closed;
    report.server_errors += findings.server_errors.len();
    report.bad_input_mishandled = findings.mishandled.len();
    report.problems.extend(findings.server_errors);
    report.problems.extend(findings.mishandled);
    report.problems.extend(stack.slow_exits.iter().cloned());
    Ok(report)
}

/// Deadlocks PostgreSQL detected in this database (each stalls the
/// statements in it for `deadlock_timeout`, then fails one of them), and
/// jobs whose `job_listing` row is missing or differs, or listing rows
/// without a job. Read after the workers and the API exited, so that their
/// sessions' statistics were reported; a crash of PostgreSQL during the
/// run forgets the counts before it, so this can only undercount.
async fn database_audit(db: &DatabaseConnection) -> anyhow::Result<(usize, usize)> {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT (SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()) \
             AS deadlocks, \
             (SELECT count(*) FROM jobs j FULL JOIN job_listing l \
              ON l.id = j.id AND l.created_at = j.created_at AND l.queue = j.queue \
              AND l.type = j.type AND l.schedule_name IS NOT DISTINCT FROM j.schedule_name \
              WHERE l.id IS NULL OR j.id IS NULL) AS unlisted",
        ))
        .await?
        .context("no audit row")?;
    let deadlocks: i64 = row.try_get("", "deadlocks")?;
    let unlisted: i64 = row.try_get("", "unlisted")?;
    Ok((
        usize::try_from(deadlocks).unwrap_or(usize::MAX),
        usize::try_from(unlisted).unwrap_or(usize::MAX),
    ))
}

/// Announcements of transactional enqueues still in the outbox once the
/// leader has had time to publish and forget them (one is deleted just
/// after its job is published, which may be after the job ran; a leader
/// killed late is replaced only when its lease runs out).
async fn announcements_left(db: &DatabaseConnection) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT count(*) AS n FROM job_announcements",
            ))
            .await?
            .context("no count")?;
        let left: i64 = row.try_get("", "n")?;
        if left == 0 || Instant::now() >= deadline {
            return Ok(usize::try_from(left).unwrap_or(usize::MAX));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Jobs stored, and jobs completed, so far.
async fn job_counts(db: &DatabaseConnection) -> anyhow::Result<(i64, i64)> {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*) AS stored, count(*) FILTER (WHERE status = 'completed') AS completed FROM jobs",
        ))
        .await?
        .context("no count")?;
    Ok((row.try_get("", "stored")?, row.try_get("", "completed")?))
}
