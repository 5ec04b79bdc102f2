//! Throwaway PostgreSQL and Redis servers of the harness's own, on their own
//! ports and data directories, so that it may restart them at will.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use crate::procs::wait_for_port;

/// A PostgreSQL cluster in `dir`, run as `run_as` when this process is root
/// (initdb and postgres refuse to run as root).
pub struct Postgres {
    bin_dir: PathBuf,
    data: PathBuf,
    pub port: u16,
    run_as: Option<String>,
}

impl Postgres {
    pub async fn init(
        bin_dir: &Path,
        dir: &Path,
        port: u16,
        run_as: Option<String>,
    ) -> anyhow::Result<Self> {
        let data = dir.join("pg");
        std::fs::create_dir_all(&data)?;
        let postgres = Postgres {
            bin_dir: bin_dir.to_owned(),
            data,
            port,
            run_as,
        };
        if let Some(user) = &postgres.run_as {
            run(Command::new("chown").arg("-R").arg(user).arg(dir)).await?;
        }
        let mut initdb = postgres.command("initdb");
        initdb.arg("-D").arg(&postgres.data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        ]);
        run(&mut initdb).await.context("initdb")?;
        postgres.start().await?;
        Ok(postgres)
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin_dir.join(program);
        match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub async fn start(&self) -> anyhow::Result<()> {
        let mut start = self.command("pg_ctl");
        start
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.data.join("server.log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off",
                self.port,
                self.data.display()
            ))
            .arg("start");
        run(&mut start).await.context("pg_ctl start")?;
        wait_for_port(self.port, Duration::from_secs(30)).await
    }

    /// `pg_ctl stop -m fast`: clients are disconnected, open transactions
    /// roll back, committed ones stay.
    pub async fn stop_fast(&self) -> anyhow::Result<()> {
        let mut stop = self.command("pg_ctl");
        stop.arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "stop"]);
        run(&mut stop).await.context("pg_ctl stop")
    }

    pub async fn stop_now(&self) {
        let mut stop = self.command("pg_ctl");
        stop.arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"]);
        let _ = run(&mut stop).await;
    }
}

/// A Redis server that keeps nothing on disk: a restart loses every key.
pub struct Redis {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    pub async fn start(bin: &Path, dir: &Path, port: u16) -> anyhow::Result<Self> {
        let mut redis = Redis {
            bin: bin.to_owned(),
            dir: dir.to_owned(),
            port,
            child: None,
        };
        redis.spawn().await?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("redis-server")?;
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(10)).await
    }

    /// Kills the server and starts an empty one on the same port.
    pub async fn restart_empty(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        self.spawn().await
    }

    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

async fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command.stdin(Stdio::null()).output().await?;
    if !output.status.success() {
        bail!(
            "{:?} failed ({}): {}{}",
            command.as_std().get_program(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// How long a cluster node may be unreachable before its replica takes
/// over (`cluster-node-timeout`): short, so failovers fit in a minute's run.
pub const CLUSTER_NODE_TIMEOUT: Duration = Duration::from_millis(2_000);

/// Masters of the cluster, each with one replica.
const MASTERS: usize = 3;

/// A Redis Cluster of three masters and three replicas, keeping nothing on
/// disk but each node's cluster configuration: a node killed and started
/// again comes back empty and rejoins as a replica.
pub struct RedisCluster {
    bin: PathBuf,
    cli: PathBuf,
    dir: PathBuf,
    nodes: Vec<ClusterNode>,
}

struct ClusterNode {
    port: u16,
    child: Option<Child>,
}

impl RedisCluster {
    pub async fn start(bin: &Path, cli: &Path, dir: &Path) -> anyhow::Result<Self> {
        let mut cluster = RedisCluster {
            bin: bin.to_owned(),
            cli: cli.to_owned(),
            dir: dir.to_owned(),
            nodes: Vec::new(),
        };
        for _ in 0..MASTERS * 2 {
            let port = cluster_port(&cluster.nodes)?;
            cluster.nodes.push(ClusterNode { port, child: None });
            let at = cluster.nodes.len() - 1;
            cluster.spawn(at).await?;
        }
        let mut create = Command::new(&cluster.cli);
        create.arg("--cluster").arg("create");
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        create.args(["--cluster-replicas", "1", "--cluster-yes"]);
        run(&mut create)
            .await
            .context("redis-cli --cluster create")?;
        for node in &cluster.nodes {
            cluster
                .wait_ready(node.port, Duration::from_secs(30))
                .await?;
        }
        Ok(cluster)
    }

    /// Every node's URL, separated by commas: `REDIS_URL` for a cluster.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|node| format!("redis://127.0.0.1:{}", node.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    async fn spawn(&mut self, at: usize) -> anyhow::Result<()> {
        let port = self.nodes[at].port;
        let dir = self.dir.join(format!("node-{port}"));
        std::fs::create_dir_all(&dir)?;
        let child = Command::new(&self.bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args([
                "--cluster-node-timeout",
                &CLUSTER_NODE_TIMEOUT.as_millis().to_string(),
            ])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("redis-server (cluster node)")?;
        self.nodes[at].child = Some(child);
        wait_for_port(port, Duration::from_secs(10)).await
    }

    /// `CLUSTER NODES` as a live node other than `besides` sees it.
    async fn cluster_nodes(&self, besides: Option<u16>) -> anyhow::Result<String> {
        let mut last = String::new();
        let asked = self
            .nodes
            .iter()
            .filter(|node| node.child.is_some() && Some(node.port) != besides);
        for node in asked {
            // A stopped node accepts connections and never answers.
            let answer = tokio::time::timeout(
                Duration::from_secs(2),
                Command::new(&self.cli)
                    .args(["-p", &node.port.to_string(), "cluster", "nodes"])
                    .stdin(Stdio::null())
                    .kill_on_drop(true)
                    .output(),
            )
            .await;
            match answer {
                Ok(Ok(output)) if output.status.success() => {
                    return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
                }
                Ok(Ok(output)) => last = String::from_utf8_lossy(&output.stderr).into_owned(),
                Ok(Err(err)) => last = err.to_string(),
                Err(_) => last = format!("node {} did not answer", node.port),
            }
        }
        bail!("no cluster node answers: {last}")
    }

    /// The port of the master serving `key`'s slot.
    pub async fn master_of(&self, key: &str) -> anyhow::Result<u16> {
        let node = self
            .nodes
            .iter()
            .find(|node| node.child.is_some())
            .context("no node running")?;
        let output = Command::new(&self.cli)
            .args(["-p", &node.port.to_string(), "cluster", "keyslot", key])
            .stdin(Stdio::null())
            .output()
            .await?;
        let slot: u16 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .context("CLUSTER KEYSLOT")?;
        let nodes = self.cluster_nodes(None).await?;
        nodes
            .lines()
            .find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let flags = fields.get(2)?;
                if !flags.split(',').any(|flag| flag == "master") {
                    return None;
                }
                let serves = fields.iter().skip(8).any(|range| {
                    let (first, last) = range.split_once('-').unwrap_or((range, range));
                    matches!((first.parse::<u16>(), last.parse::<u16>()), (Ok(first), Ok(last)) if (first..=last).contains(&slot))
                });
                let port = fields.get(1)?.split('@').next()?.rsplit(':').next()?;
                serves.then(|| port.parse().ok()).flatten()
            })
            .with_context(|| format!("no master serves slot {slot}"))
    }

    /// Ports of the masters that serve slots and are not marked failed.
    pub async fn masters(&self) -> anyhow::Result<Vec<u16>> {
        self.masters_seen_besides(None).await
    }

    /// [`RedisCluster::masters`] as the nodes other than `besides` see them.
    async fn masters_seen_besides(&self, besides: Option<u16>) -> anyhow::Result<Vec<u16>> {
        let nodes = self.cluster_nodes(besides).await?;
        Ok(nodes
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let flags = fields.get(2)?;
                let serving = fields.len() > 8;
                let master = flags.split(',').any(|flag| flag == "master")
                    && !flags
                        .split(',')
                        .any(|flag| flag == "fail" || flag == "fail?");
                let port = fields.get(1)?.split('@').next()?.rsplit(':').next()?;
                (master && serving).then(|| port.parse().ok()).flatten()
            })
            .collect())
    }

    /// Waits until the node on `port` says the cluster is whole again.
    async fn wait_ready(&self, port: u16, limit: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let output = Command::new(&self.cli)
                .args(["-p", &port.to_string(), "cluster", "info"])
                .stdin(Stdio::null())
                .output()
                .await?;
            if String::from_utf8_lossy(&output.stdout).contains("cluster_state:ok") {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the cluster is not whole after {limit:?} (asked node {port})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn index_of(&self, port: u16) -> anyhow::Result<usize> {
        self.nodes
            .iter()
            .position(|node| node.port == port)
            .with_context(|| format!("no node on port {port}"))
    }

    /// SIGKILLs the master on `port`; returns once the other nodes have
    /// marked it failed and promoted its replica, and see the cluster whole.
    pub async fn kill_master(&mut self, port: u16, limit: Duration) -> anyhow::Result<()> {
        let at = self.index_of(port)?;
        if let Some(mut child) = self.nodes[at].child.take() {
            let _ = child.kill().await;
        }
        self.wait_replaced(port, limit).await?;
        self.wait_whole(limit).await
    }

    /// Waits until the other nodes have marked the master on `port` failed
    /// and promoted its replica.
    pub async fn wait_replaced(&self, port: u16, limit: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let masters = self.masters_seen_besides(Some(port)).await?;
            if masters.len() == MASTERS && !masters.contains(&port) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("no replica took over from master {port} within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts the node on `port` again (empty; it rejoins as a replica).
    pub async fn restart_node(&mut self, port: u16) -> anyhow::Result<()> {
        let at = self.index_of(port)?;
        self.spawn(at).await
    }

    /// The process id of the node on `port`, to stop and continue it.
    pub fn pid(&self, port: u16) -> anyhow::Result<u32> {
        let at = self.index_of(port)?;
        self.nodes[at]
            .child
            .as_ref()
            .and_then(Child::id)
            .with_context(|| format!("node {port} is not running"))
    }

    /// Waits until every running node sees the cluster whole.
    pub async fn wait_whole(&self, limit: Duration) -> anyhow::Result<()> {
        for node in self.nodes.iter().filter(|node| node.child.is_some()) {
            self.wait_ready(node.port, limit).await?;
        }
        Ok(())
    }

    /// Waits until every master has a replica in sync: one that could take
    /// over (a node just started again is still copying its master's data).
    pub async fn wait_replicas_in_sync(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let mut in_sync = 0;
            for node in self.nodes.iter().filter(|node| node.child.is_some()) {
                let output = Command::new(&self.cli)
                    .args(["-p", &node.port.to_string(), "info", "replication"])
                    .stdin(Stdio::null())
                    .output()
                    .await?;
                let info = String::from_utf8_lossy(&output.stdout);
                if info.contains("role:slave") && info.contains("master_link_status:up") {
                    in_sync += 1;
                }
            }
            if in_sync >= MASTERS {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{in_sync} of {MASTERS} replicas in sync after {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill().await;
            }
        }
    }
}

/// A free port whose cluster bus port (port + 10000) is free too.
fn cluster_port(taken: &[ClusterNode]) -> anyhow::Result<u16> {
    for _ in 0..100 {
        let port = crate::procs::free_port()?;
        let bus_free = port
            .checked_add(10_000)
            .is_some_and(|bus| std::net::TcpListener::bind(("127.0.0.1", bus)).is_ok());
        if bus_free && taken.iter().all(|node| node.port != port) {
            return Ok(port);
        }
    }
    bail!("no free port pair for a cluster node")
}
