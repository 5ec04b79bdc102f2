//! Enqueue a job from a Rust application, without HTTP: what the API does,
//! through the same [`conveyor::Client`].
//!
//! ```sh
//! cargo run -p conveyor --example enqueue -- greet '{"name": "Ada"}' order-42
//! ```
//!
//! The arguments are the task type, its JSON payload and, optionally, an
//! idempotency key: run it twice with the same key and the second run finds
//! the first one's job. It reads DATABASE_URL, REDIS_URL and
//! CONVEYOR_PREFIX like every Conveyor process, prints the outcome and the
//! job id, and exits; a worker (`conveyor-worker`, or
//! `cargo run -p worker --example custom_worker` for `greet`) runs the job.

use conveyor::config::{self, ConnectionConfig};
use conveyor::{Broker, Client, Inserted, NewJob, Store};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let connection: ConnectionConfig = config::from_env()?;
    let mut args = std::env::args().skip(1);
    let task_type = args.next().unwrap_or_else(|| "demo".to_owned());
    let payload: serde_json::Value = match args.next() {
        Some(json) => serde_json::from_str(&json)?,
        None => serde_json::json!({}),
    };

    let store = Store::connect(&connection.database_url, 2).await?;
    let broker = connection
        .redis()
        .and_then(|redis| Broker::connect(&redis, &connection.prefix, 2))?;
    let client = Client::new(store, broker);

    let mut job = NewJob::new(task_type, payload);
    job.idempotency_key = args.next();
    // Inserted, then published to Redis once the row has committed.
    match client.enqueue(job).await? {
        Inserted::Created(job) => println!("created {}", job.id),
        Inserted::Replayed(job) => println!("replayed {}", job.id),
        Inserted::Conflict(job) => {
            anyhow::bail!(
                "the idempotency key is taken by a different job: {}",
                job.id
            )
        }
    }
    Ok(())
}
