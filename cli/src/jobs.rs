//! `conveyor jobs ...`.

use anyhow::bail;
use clap::{Args, Subcommand};
use conveyor::client::Canceled;
use conveyor::store::{ListCursor, ListFilter};
use conveyor::{Client, JobId, JobStatus, Transition};

use crate::{parse, render};

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Jobs, newest first, filtered.
    List {
        #[command(flatten)]
        filters: Filters,
        /// Jobs per page, 1 to 100.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=100))]
        limit: u64,
        /// The cursor printed after the previous page.
        #[arg(long, value_name = "CURSOR")]
        after: Option<String>,
    },
    /// One job, with every attempt.
    Show {
        /// The job's id.
        id: JobId,
    },
    /// Run failed or canceled jobs again from attempt 1: the ones given,
    /// or with --matching every one matching the filters (up to --limit).
    Retry(Action),
    /// Cancel waiting jobs and stop running ones: the ones given, or with
    /// --matching every one matching the filters (up to --limit).
    Cancel(Action),
}

/// The filters of `GET /jobs`.
#[derive(Debug, Args, Default)]
pub struct Filters {
    /// queued, running, retrying, completed, failed or canceled.
    #[arg(long)]
    status: Option<JobStatus>,
    /// Only jobs of this queue.
    #[arg(long)]
    queue: Option<String>,
    /// Only jobs of this type.
    #[arg(long = "type", value_name = "TYPE")]
    task_type: Option<String>,
    /// Only jobs created before this instant (RFC 3339).
    #[arg(long, value_parser = parse::instant, value_name = "INSTANT")]
    created_before: Option<chrono::DateTime<chrono::Utc>>,
    /// Only jobs created at or after this instant (RFC 3339).
    #[arg(long, value_parser = parse::instant, value_name = "INSTANT")]
    created_after: Option<chrono::DateTime<chrono::Utc>>,
}

impl Filters {
    fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.queue.is_none()
            && self.task_type.is_none()
            && self.created_before.is_none()
            && self.created_after.is_none()
    }

    fn into_filter(self) -> anyhow::Result<ListFilter> {
        if let Some(queue) = &self.queue {
            conveyor::job::check_queue_name(queue)?;
        }
        if let Some(task_type) = &self.task_type {
            conveyor::job::check_task_type(task_type)?;
        }
        Ok(ListFilter {
            status: self.status,
            queue: self.queue,
            task_type: self.task_type,
            created_before: self.created_before,
            created_after: self.created_after,
            ..ListFilter::default()
        })
    }
}

#[derive(Debug, Args)]
pub struct Action {
    /// Job ids.
    ids: Vec<JobId>,
    /// Act on every job matching the filters instead of on ids.
    #[arg(long, conflicts_with = "ids")]
    matching: bool,
    #[command(flatten)]
    filters: Filters,
    /// With --matching: most jobs changed, 1 to 10000.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    limit: u64,
}

pub async fn run(client: &Client, command: JobsCommand, json: bool) -> anyhow::Result<()> {
    match command {
        JobsCommand::List {
            filters,
            limit,
            after,
        } => list(client, filters, limit, after, json).await,
        JobsCommand::Show { id } => {
            let Some(job) = client.store().find(id).await? else {
                bail!("no job {id}");
            };
            let attempts = client.store().attempts(id).await?;
            if json {
                let mut shown = render::job_json(&job);
                shown["attempts_history"] = render::attempts_json(&job, &attempts);
                println!("{shown}");
            } else {
                print!("{}", render::job_detail(&job, &attempts));
            }
            Ok(())
        }
        JobsCommand::Retry(action) => retry(client, action, json).await,
        JobsCommand::Cancel(action) => cancel(client, action, json).await,
    }
}

async fn list(
    client: &Client,
    filters: Filters,
    limit: u64,
    after: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let after = after
        .map(|cursor| cursor.parse::<ListCursor>())
        .transpose()
        .map_err(|_| anyhow::anyhow!("--after takes the cursor printed after a page"))?;
    let filter = ListFilter {
        limit: limit + 1,
        after,
        ..filters.into_filter()?
    };
    let mut page = client.store().list(&filter).await?;
    let count = client
        .store()
        .count_matching(&filter, conveyor::store::COUNT_EXACT_UP_TO)
        .await?;
    let next = (page.len() as u64 > limit).then(|| {
        page.truncate(limit as usize);
        page.last().map(|job| ListCursor::after(job).to_string())
    });
    let next = next.flatten();
    if json {
        let items: Vec<_> = page.iter().map(render::job_json).collect();
        println!(
            "{}",
            serde_json::json!({"items": items, "count": count.count, "count_exact": count.exact, "next_cursor": next})
        );
    } else {
        print!("{}", render::job_rows(&page));
        let about = if count.exact { "" } else { "about " };
        println!("{} shown, {about}{} matching", page.len(), count.count);
        if let Some(next) = next {
            println!("next page: --after {next}");
        }
    }
    Ok(())
}

/// Says what happened to each id; fails if any could not be changed.
fn report(json: bool, lines: Vec<(JobId, Result<String, String>)>) -> anyhow::Result<()> {
    let failed = lines.iter().filter(|(_, line)| line.is_err()).count();
    if json {
        let items: Vec<_> = lines
            .iter()
            .map(|(id, line)| match line {
                Ok(status) => serde_json::json!({"id": id.to_string(), "status": status}),
                Err(error) => serde_json::json!({"id": id.to_string(), "error": error}),
            })
            .collect();
        println!("{}", serde_json::json!({ "items": items }));
    } else {
        for (id, line) in &lines {
            match line {
                Ok(status) => println!("{id}  {status}"),
                Err(error) => println!("{id}  error: {error}"),
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} jobs could not be changed", lines.len());
    }
    Ok(())
}

fn bulk_report(json: bool, action: &str, changed: usize, limit: u64) {
    let more = changed as u64 >= limit;
    if json {
        println!(
            "{}",
            serde_json::json!({"changed": changed, "limit": limit, "more": more})
        );
    } else {
        println!("{action} {changed} jobs");
        if more {
            println!("the limit ({limit}) was reached: more jobs may match; run it again");
        }
    }
}

fn require_ids(action: &Action) -> anyhow::Result<()> {
    if action.ids.is_empty() && !action.matching {
        bail!("give job ids, or --matching with filters to act on every matching job");
    }
    if action.matching && action.filters.is_empty() {
        bail!(
            "--matching needs at least one filter (--status, --queue, --type, --created-before, --created-after)"
        );
    }
    Ok(())
}

async fn retry(client: &Client, action: Action, json: bool) -> anyhow::Result<()> {
    require_ids(&action)?;
    if action.matching {
        let retried = client
            .retry_matching(action.filters.into_filter()?, action.limit)
            .await?;
        bulk_report(json, "queued again", retried.len(), action.limit);
        return Ok(());
    }
    let mut lines = Vec::new();
    for id in action.ids {
        let line = match client.retry(id).await? {
            Transition::Won(_) => Ok("queued".to_owned()),
            Transition::Lost(job) => Err(format!(
                "it is {}; only failed or canceled jobs can be retried",
                job.status
            )),
            Transition::NotFound => Err("no such job".to_owned()),
        };
        lines.push((id, line));
    }
    report(json, lines)
}

async fn cancel(client: &Client, action: Action, json: bool) -> anyhow::Result<()> {
    require_ids(&action)?;
    if action.matching {
        let done = client
            .cancel_matching(action.filters.into_filter()?, action.limit)
            .await?;
        bulk_report(
            json,
            "canceled or asked to stop",
            done.canceled.len() + done.requested.len(),
            action.limit,
        );
        return Ok(());
    }
    let mut lines = Vec::new();
    for id in action.ids {
        let line = match client.cancel(id).await? {
            Canceled::Canceled(_) => Ok("canceled".to_owned()),
            Canceled::Requested(_) => Ok("cancel requested (running)".to_owned()),
            Canceled::Finished(job) => Err(format!("it is already {}", job.status)),
            Canceled::NotFound => Err("no such job".to_owned()),
            Canceled::Busy => Err("it kept changing state; try again".to_owned()),
        };
        lines.push((id, line));
    }
    report(json, lines)
}
