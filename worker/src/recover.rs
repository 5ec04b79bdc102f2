//! `conveyor-worker recover-stuck`: the manual tool for jobs stuck in
//! `running` (a worker that hung without dying, a bug, a lost lease the
//! lease rescuer could not act on).
//!
//! Each write is conditional on the row being unchanged since it was read
//! (same status, start and attempt), so a job that finishes meanwhile is
//! left alone.

use std::time::Duration;

use anyhow::Context as _;

use conveyor::store::StuckAction;
use conveyor::{Broker, Job, JobStatus, Store, StoreError, Transition};

/// What to do, and to which jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Jobs running for longer than this are stuck.
    pub older_than: Duration,
    pub action: StuckAction,
    /// List only; write nothing.
    pub dry_run: bool,
}

/// What happened to one stuck job.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// Written: the job after the change.
    Recovered(Job),
    /// Dry run: the job as found.
    WouldRecover(Job),
    /// It changed between the read and the write; left alone (as found now).
    Unchanged(Option<Job>),
}

impl Line {
    /// One line of the command's output.
    pub fn render(&self) -> String {
        match self {
            Line::Recovered(job) => format!(
                "{:<9} {} type={} queue={} attempt={}/{} worker={}",
                match job.status {
                    JobStatus::Retrying => "requeued",
                    status => status.as_str(),
                },
                job.id,
                job.task_type,
                job.queue,
                job.attempts,
                job.max_attempts,
                job.worker_id.as_deref().unwrap_or("-"),
            ),
            Line::WouldRecover(job) => format!(
                "stuck     {} type={} queue={} attempt={}/{} started_at={} worker={}",
                job.id,
                job.task_type,
                job.queue,
                job.attempts,
                job.max_attempts,
                job.started_at.map(|at| at.to_rfc3339()).unwrap_or_default(),
                job.worker_id.as_deref().unwrap_or("-"),
            ),
            Line::Unchanged(Some(job)) => {
                format!("unchanged {}: no longer stuck (now {})", job.id, job.status)
            }
            Line::Unchanged(None) => "unchanged: the job no longer exists".to_owned(),
        }
    }
}

/// The outcome of one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub lines: Vec<Line>,
    /// Requeued jobs could not be published (Redis unreachable); the
    /// reconciler will publish them.
    pub publish_error: Option<String>,
}

impl Report {
    pub fn recovered_ids(&self) -> Vec<String> {
        self.lines
            .iter()
            .filter_map(|line| match line {
                Line::Recovered(job) | Line::WouldRecover(job) => Some(job.id.to_string()),
                Line::Unchanged(_) => None,
            })
            .collect()
    }

    /// The closing line: `recovered 3 job(s): <ids>`.
    pub fn summary(&self, dry_run: bool) -> String {
        let ids = self.recovered_ids();
        let verb = if dry_run {
            "dry run: would recover"
        } else {
            "recovered"
        };
        if ids.is_empty() {
            format!("{verb} 0 job(s)")
        } else {
            format!("{verb} {} job(s): {}", ids.len(), ids.join(", "))
        }
    }
}

/// Finds running jobs older than `options.older_than` and fails or requeues
/// each, if unchanged. Requeued jobs are published through `broker`.
pub async fn recover_stuck(
    store: &Store,
    broker: &Broker,
    options: Options,
) -> Result<Report, StoreError> {
    let stuck = store.running_longer_than(options.older_than).await?;
    let mut report = Report::default();
    let mut republish = Vec::new();
    for job in stuck {
        if options.dry_run {
            report.lines.push(Line::WouldRecover(job));
            continue;
        }
        match store.recover_stuck(&job, options.action).await? {
            Transition::Won(after) => {
                tracing::warn!(event = "job_recovered", job.id = %after.id, job.r#type = %after.task_type,
                    job.queue = %after.queue, job.attempt = after.attempts, job.status = %after.status,
                    previous_worker = job.worker_id.as_deref().unwrap_or("-"), by = "recover-stuck",
                    "recovered stuck job {}: now {}", after.id, after.status);
                if after.status == JobStatus::Retrying {
                    republish.push(after.clone());
                }
                report.lines.push(Line::Recovered(after));
            }
            Transition::Lost(found) => report.lines.push(Line::Unchanged(Some(found))),
            Transition::NotFound => report.lines.push(Line::Unchanged(None)),
        }
    }
    let client = conveyor::Client::new(store.clone(), broker.clone());
    if let Err(err) = client.publish(&republish).await {
        report.publish_error = Some(err.to_string());
    }
    Ok(report)
}

/// The command: connects, recovers, prints a line per job and a summary.
/// Shared by `conveyor-worker recover-stuck` and `conveyor recover-stuck`.
pub async fn run(
    connection: &conveyor::config::ConnectionConfig,
    options: Options,
) -> anyhow::Result<()> {
    let store = Store::connect(&connection.database_url, 2)
        .await
        .context("DATABASE_URL is not a usable PostgreSQL URL")?;
    let broker = connection
        .redis()
        .and_then(|redis| Broker::connect(&redis, &connection.prefix, 2))
        .context("REDIS_URL is not a usable Redis URL")?;
    let report = recover_stuck(&store, &broker, options).await.context(
        "could not recover stuck jobs: PostgreSQL (DATABASE_URL) refused or is unreachable",
    )?;
    for line in &report.lines {
        println!("{}", line.render());
    }
    if let Some(err) = &report.publish_error {
        eprintln!(
            "warning: requeued jobs are safe in PostgreSQL but could not be published to Redis ({err}); \
             a running worker's reconciler will publish them"
        );
    }
    println!("{}", report.summary(options.dry_run));
    Ok(())
}
