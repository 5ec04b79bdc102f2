//! A worker with a task type of its own, as an application would write it.
//!
//! ```sh
//! cargo run -p worker --example custom_worker
//! curl -X POST localhost:8000/jobs -H 'content-type: application/json' \
//!      -d '{"type": "greet", "payload": {"name": "Ada"}}'
//! ```
//!
//! It reads the same environment as `conveyor-worker` (DATABASE_URL,
//! REDIS_URL, CONVEYOR_PREFIX, CONVEYOR_QUEUES, ...).

use conveyor::config::{self, ConnectionConfig, LogConfig, WorkerConfig};
use conveyor::{Broker, Store, logging, signals};
use serde::{Deserialize, Serialize};
use worker::{Context, JobError, Settings, Worker};

#[derive(Deserialize)]
struct Greet {
    name: String,
}

#[derive(Serialize)]
struct Greeting {
    greeting: String,
}

/// Fails permanently on bad input; would return `JobError::Retryable` for a
/// dependency that is down.
async fn greet(input: Greet, _context: Context) -> Result<Greeting, JobError> {
    if input.name.is_empty() {
        return Err(JobError::permanent("name must not be empty"));
    }
    Ok(Greeting {
        greeting: format!("Hello, {}!", input.name),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let connection: ConnectionConfig = config::from_env()?;
    let worker_config: WorkerConfig = config::from_env()?;
    let log: LogConfig = config::from_env()?;
    let _logs = logging::init(log.log_format);

    // The built-ins too, so this worker can serve the demo jobs as well.
    let mut registry = worker::builtin_registry();
    registry.register("greet", greet);

    let store = Store::connect(&connection.database_url, 8).await?;
    let broker = connection
        .redis()
        .and_then(|redis| Broker::connect(&redis, &connection.prefix, 8))?;
    let worker = Worker::new(
        store,
        broker,
        Settings::from_config(&worker_config),
        registry,
    );
    worker.run(signals::terminate()).await;
    Ok(())
}
