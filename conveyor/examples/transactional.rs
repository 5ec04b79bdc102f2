//! Enqueue a job inside your own database transaction: the order row and
//! the job that sends its confirmation commit together, or neither exists.
//!
//! ```sh
//! cargo run -p conveyor --example transactional -- 42
//! cargo run -p conveyor --example transactional -- 43 --roll-back
//! ```
//!
//! The argument is an order number. The example makes an `orders` table of
//! its own if there is none, then, in one transaction, writes the order and
//! enqueues a `noop` job for it through [`conveyor::enqueue_in`], and
//! commits (or, with `--roll-back`, rolls back: then neither the order nor
//! the job exists). Only DATABASE_URL is read: enqueueing this way needs no
//! Redis. At the commit PostgreSQL notifies the maintenance leader (any
//! running `conveyor-worker`), which publishes the job to its queue at
//! once.

use conveyor::{Inserted, NewJob};
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement, TransactionTrait};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let database_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| conveyor::config::DEFAULT_DATABASE_URL.to_owned());
    let mut args = std::env::args().skip(1);
    let order: i64 = args.next().unwrap_or_else(|| "1".to_owned()).parse()?;
    let roll_back = args.any(|arg| arg == "--roll-back");

    let db = Database::connect(database_url).await?;
    db.execute_unprepared(
        "CREATE TABLE IF NOT EXISTS orders (id bigint PRIMARY KEY, placed_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;

    let txn = db.begin().await?;
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO orders (id) VALUES ($1)",
        [order.into()],
    ))
    .await?;
    let mut job = NewJob::new("noop", serde_json::json!({ "order": order }));
    // A retried transaction finds the job its first try made.
    job.idempotency_key = Some(format!("order-confirmation-{order}"));
    let job = match conveyor::enqueue_in(&txn, job).await? {
        Inserted::Created(job) | Inserted::Replayed(job) => job,
        Inserted::Conflict(job) => anyhow::bail!("the key is taken by job {}", job.id),
    };
    if roll_back {
        txn.rollback().await?;
        println!("rolled back {}", job.id);
    } else {
        txn.commit().await?;
        println!("committed {}", job.id);
    }
    Ok(())
}
