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
