//! `conveyor queues ...`.

use clap::{Args, Subcommand};
use conveyor::Client;
use conveyor::store::{Change, QueueChange, QueueSettings};

use crate::{parse, render};

#[derive(Debug, Subcommand)]
pub enum QueuesCommand {
    /// Every queue with its settings and live state.
    List,
    /// Stop workers starting the queue's jobs (they are still accepted;
    /// running ones finish).
    Pause {
        /// The queue.
        queue: String,
    },
    /// Let workers start the queue's jobs again.
    Resume {
        /// The queue.
        queue: String,
    },
    /// Change a queue's limits and retention; what you leave out is kept.
    Configure(Configure),
}

#[derive(Debug, Args)]
pub struct Configure {
    /// The queue.
    queue: String,
    /// Most of its jobs running at once across every worker, or `none`.
    #[arg(long, value_parser = parse::limit, value_name = "N|none")]
    concurrency_limit: Option<Change<i32>>,
    /// Most of its jobs started per second across every worker, or `none`.
    #[arg(long, value_parser = parse::rate, value_name = "PER_SEC|none")]
    rate_limit: Option<Change<f64>>,
    /// Starts the rate limit lets through at once, or `none` (the rate,
    /// rounded up).
    #[arg(long, value_parser = parse::limit, value_name = "N|none")]
    rate_burst: Option<Change<i32>>,
    /// How long completed jobs are kept: 7d, 12h, 30m, 45s, `forever`, or
    /// `default` (the workers' CONVEYOR_RETAIN_COMPLETED_SECS).
    #[arg(long, value_parser = parse::retention, value_name = "DURATION")]
    retain_completed: Option<Change<i64>>,
    /// How long failed jobs are kept (as --retain-completed).
    #[arg(long, value_parser = parse::retention, value_name = "DURATION")]
    retain_failed: Option<Change<i64>>,
    /// How long canceled jobs are kept (as --retain-completed).
    #[arg(long, value_parser = parse::retention, value_name = "DURATION")]
    retain_canceled: Option<Change<i64>>,
}

pub async fn run(client: &Client, command: QueuesCommand, json: bool) -> anyhow::Result<()> {
    let settings = match command {
        QueuesCommand::List => {
            let queues = conveyor::client::overview(client.store(), client.broker()).await?;
            if json {
                let items: Vec<_> = queues.iter().map(render::queue_json).collect();
                println!("{}", serde_json::json!({ "queues": items }));
            } else {
                print!("{}", render::queue_rows(&queues));
            }
            return Ok(());
        }
        QueuesCommand::Pause { queue } => client.pause_queue(&queue).await?,
        QueuesCommand::Resume { queue } => client.resume_queue(&queue).await?,
        QueuesCommand::Configure(configure) => {
            let change = QueueChange {
                paused: None,
                concurrency_limit: configure.concurrency_limit.unwrap_or_default(),
                rate_limit: configure.rate_limit.unwrap_or_default(),
                rate_burst: configure.rate_burst.unwrap_or_default(),
                retain_completed_secs: configure.retain_completed.unwrap_or_default(),
                retain_failed_secs: configure.retain_failed.unwrap_or_default(),
                retain_canceled_secs: configure.retain_canceled.unwrap_or_default(),
            };
            client.configure_queue(&configure.queue, &change).await?
        }
    };
    show(&settings, json);
    Ok(())
}

fn show(settings: &QueueSettings, json: bool) {
    if json {
        println!("{}", render::settings_json(&settings.name, Some(settings)));
    } else {
        print!("{}", render::settings_detail(settings));
    }
}
