//! Group commit of completed attempts.
//!
//! Completing a job is one fenced `UPDATE` and one commit; at thousands of
//! jobs a second the commits, not the handlers, bound a worker. Job tasks
//! hand their completions to one writer task, which writes everything
//! waiting in one statement ([`Store::complete_many`]), each row fenced on
//! its own, and answers each task with its own transition. The writer never
//! waits for a batch to fill: a lone completion is written at once, and
//! completions arriving while a write is in flight form the next batch, so
//! batches grow with load and single-job latency does not.

use std::sync::OnceLock;

use conveyor::{Fence, Store, StoreError, Transition};
use sea_orm::DbErr;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::AbortOnDropHandle;

/// Most completions written in one statement.
pub const MAX_BATCH: usize = 128;

struct Pending {
    fence: Fence,
    result: Value,
    /// The transition, or the result back when the batch failed.
    reply: oneshot::Sender<Result<Transition, Value>>,
}

/// A worker's completion writer, started on first use (inside the async
/// runtime) and stopped when dropped.
#[derive(Default)]
pub struct Completions {
    writer: OnceLock<Writer>,
}

struct Writer {
    queue: mpsc::UnboundedSender<Pending>,
    _task: AbortOnDropHandle<()>,
}

impl std::fmt::Debug for Completions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completions")
            .field("started", &self.writer.get().is_some())
            .finish()
    }
}

impl Completions {
    /// [`Store::complete`], written together with whatever other
    /// completions are waiting. A failed batch is retried here alone, so the
    /// caller sees this write's own error.
    pub async fn complete(
        &self,
        store: &Store,
        fence: &Fence,
        result: Value,
    ) -> Result<Transition, StoreError> {
        let writer = self.writer.get_or_init(|| {
            let (queue, pending) = mpsc::unbounded_channel();
            Writer {
                queue,
                _task: AbortOnDropHandle::new(tokio::spawn(write_batches(store.clone(), pending))),
            }
        });
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            fence: fence.clone(),
            result,
            reply,
        };
        let result = match writer.queue.send(pending) {
            Err(mpsc::error::SendError(pending)) => pending.result,
            Ok(()) => match answer.await {
                Ok(Ok(transition)) => return Ok(transition),
                Ok(Err(result)) => result,
                Err(_) => {
                    return Err(StoreError::Database(DbErr::Custom(
                        "the completion writer stopped".to_owned(),
                    )));
                }
            },
        };
        store.complete(fence, result).await
    }
}

async fn write_batches(store: Store, mut queue: mpsc::UnboundedReceiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (items, replies): (Vec<_>, Vec<_>) = batch
            .drain(..)
            .map(|pending| ((pending.fence, pending.result), pending.reply))
            .unzip();
        conveyor::metrics::completion_batch(items.len());
        match store.complete_many(&items).await {
            Ok(transitions) => {
                for (reply, transition) in replies.into_iter().zip(transitions) {
                    // A task that stopped waiting (its worker is crashing)
                    // has nothing left to do with the answer.
                    let _ = reply.send(Ok(transition));
                }
            }
            Err(err) => {
                tracing::debug!(error = %err, rows = items.len(), "batched completion failed; each job retries alone");
                for (reply, (_, result)) in replies.into_iter().zip(items) {
                    let _ = reply.send(Err(result));
                }
            }
        }
    }
}
