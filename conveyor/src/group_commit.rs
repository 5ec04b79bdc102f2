//! Group commit: writes from many concurrent callers made as one statement.
//!
//! A commit costs the same whether it carries one row or a hundred, and at
//! thousands of jobs a second the commits, not the work, bound a process.
//! A [`GroupCommit`] gives its callers one writer task: each caller hands
//! over its item and waits; the writer takes everything waiting (up to a
//! maximum), writes it with one call of the batch function, and answers each
//! caller with its own output. It never waits for a batch to fill: a lone
//! item is written at once, and items arriving while a write is in flight
//! form the next batch, so batches grow with load and a single caller's
//! latency does not.
//!
//! When the batch function fails it hands the items back, and each caller
//! gets its item back to write alone — so each caller sees its own error,
//! and one bad row cannot fail its neighbours. [`StoreGroup`] adds the
//! job store's rule for outages.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::{Fence, Store, StoreError, Transition};

type BatchFuture<I, O> = Pin<Box<dyn Future<Output = Result<Vec<O>, Vec<I>>> + Send>>;
type BatchFn<I, O> = Arc<dyn Fn(Vec<I>) -> BatchFuture<I, O> + Send + Sync>;

/// Why an item was not written by the group.
#[derive(Debug)]
pub enum NotWritten<I> {
    /// The batch failed; here is the item, to write alone.
    Failed(I),
    /// The writer stopped (its process is shutting down abruptly).
    Stopped,
}

struct Pending<I, O> {
    item: I,
    reply: oneshot::Sender<Result<O, I>>,
}

struct Writer<I, O> {
    queue: mpsc::UnboundedSender<Pending<I, O>>,
    task: JoinHandle<()>,
}

impl<I, O> Drop for Writer<I, O> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One writer task for items of type `I`, answering with `O`. The task
/// starts on the first write (inside the async runtime) and stops when this
/// is dropped.
pub struct GroupCommit<I, O> {
    name: &'static str,
    max_batch: usize,
    write: BatchFn<I, O>,
    writer: OnceLock<Writer<I, O>>,
}

impl<I, O> std::fmt::Debug for GroupCommit<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("name", &self.name)
            .field("max_batch", &self.max_batch)
            .field("started", &self.writer.get().is_some())
            .finish()
    }
}

impl<I: Send + 'static, O: Send + 'static> GroupCommit<I, O> {
    /// `write` takes a batch and answers one output per item, in order, or
    /// hands the items back when it failed. `name` labels the
    /// `conveyor_group_commit_batch_size` metric.
    pub fn new<F, Fut>(name: &'static str, max_batch: usize, write: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<O>, Vec<I>>> + Send + 'static,
    {
        GroupCommit {
            name,
            max_batch: max_batch.max(1),
            write: Arc::new(move |items| Box::pin(write(items))),
            writer: OnceLock::new(),
        }
    }

    /// Writes `item` with whatever else is waiting.
    pub async fn write(&self, item: I) -> Result<O, NotWritten<I>> {
        let writer = self.writer.get_or_init(|| {
            let (queue, pending) = mpsc::unbounded_channel();
            let task = tokio::spawn(run(self.name, self.max_batch, self.write.clone(), pending));
            Writer { queue, task }
        });
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError(pending)) = writer.queue.send(Pending { item, reply }) {
            return Err(NotWritten::Failed(pending.item));
        }
        match answer.await {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(item)) => Err(NotWritten::Failed(item)),
            Err(_) => Err(NotWritten::Stopped),
        }
    }
}

async fn run<I, O>(
    name: &'static str,
    max_batch: usize,
    write: BatchFn<I, O>,
    mut queue: mpsc::UnboundedReceiver<Pending<I, O>>,
) {
    let mut batch = Vec::with_capacity(max_batch);
    while queue.recv_many(&mut batch, max_batch).await > 0 {
        let (items, replies): (Vec<I>, Vec<_>) = batch
            .drain(..)
            .map(|pending| (pending.item, pending.reply))
            .unzip();
        crate::metrics::group_commit_batch(name, items.len());
        // A caller that stopped waiting (its request or task was dropped)
        // has nothing left to do with its answer: sends may fail.
        match write(items).await {
            Ok(outputs) => {
                for (reply, output) in replies.into_iter().zip(outputs) {
                    let _ = reply.send(Ok(output));
                }
            }
            Err(items) => {
                tracing::debug!(
                    writer = name,
                    rows = items.len(),
                    "batched write failed; each item is written alone"
                );
                for (reply, item) in replies.into_iter().zip(items) {
                    let _ = reply.send(Err(item));
                }
            }
        }
    }
}

/// A [`GroupCommit`] of job-store writes, with the two rules every one of
/// them follows: when PostgreSQL could not be reached, or refused the batch
/// for the moment (a deadlock, a shortage of resources, the statement
/// timeout), every caller is answered "unavailable" at once, and callers
/// treat it as an outage: trying each write alone would only meet the same
/// outage or pressure again, one statement per caller. When the batch
/// failed otherwise (a row refused for what it holds, or a row lock it
/// waited for past `lock_timeout`: an idempotency key held by an
/// application's open transaction), each caller writes its item alone, so
/// it sees its own error, never a neighbour's.
pub struct StoreGroup<I, O> {
    name: &'static str,
    group: GroupCommit<I, Result<O, StoreError>>,
    /// Places for writes made alone after their batch failed: a batch of
    /// hundreds must not become hundreds of statements at once.
    alone: tokio::sync::Semaphore,
}

/// Most writes made alone at once after their batch failed, per group (or
/// per batch enqueue), so that a failed batch does not crowd other callers
/// out of the pool.
pub const ALONE_AT_ONCE: usize = 8;

impl<I, O> std::fmt::Debug for StoreGroup<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.group.fmt(f)
    }
}

impl<I: Send + 'static, O: Send + 'static> StoreGroup<I, O> {
    /// `write` writes a batch and hands the items back with its outcome: one
    /// output per item, in order.
    pub fn new<F, Fut>(name: &'static str, max_batch: usize, write: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = (Vec<I>, Result<Vec<O>, StoreError>)> + Send + 'static,
    {
        let group = GroupCommit::new(name, max_batch, move |items| {
            let written = write(items);
            async move {
                match written.await {
                    (_, Ok(outputs)) => Ok(outputs.into_iter().map(Ok).collect()),
                    (items, Err(err))
                        if err.is_unavailable()
                            || (err.is_transient() && !err.is_lock_unavailable())
                            || err.is_timed_out() =>
                    {
                        Ok(items
                            .iter()
                            .map(|_| Err(err.unavailable_for_each()))
                            .collect())
                    }
                    (items, Err(_)) => Err(items),
                }
            }
        });
        StoreGroup {
            name,
            group,
            alone: tokio::sync::Semaphore::new(ALONE_AT_ONCE),
        }
    }

    /// Writes `item` with whatever else is waiting; when that batch failed
    /// for another reason than an outage, writes it with `alone`.
    pub async fn write<Fut>(&self, item: I, alone: impl FnOnce(I) -> Fut) -> Result<O, StoreError>
    where
        Fut: Future<Output = Result<O, StoreError>>,
    {
        match self.group.write(item).await {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(unavailable)) => Err(unavailable),
            Err(NotWritten::Failed(item)) => {
                let _place = self
                    .alone
                    .acquire()
                    .await
                    .map_err(|_| StoreError::Interrupted(self.name))?;
                alone(item).await
            }
            Err(NotWritten::Stopped) => Err(StoreError::Interrupted(self.name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_writes_share_batches_and_each_gets_its_own_answer() {
        let batches = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = batches.clone();
        let group = Arc::new(GroupCommit::new("test", 8, move |items: Vec<u32>| {
            seen.lock().expect("lock").push(items.len());
            async move {
                // A batch holding 13 "fails", to exercise the hand-back.
                if items.contains(&13) {
                    Err(items)
                } else {
                    Ok(items.iter().map(|n| n * 10).collect())
                }
            }
        }));
        let tasks: Vec<_> = (0..40u32)
            .map(|n| {
                let group = group.clone();
                tokio::spawn(async move { (n, group.write(n).await) })
            })
            .collect();
        for task in tasks {
            let (n, answer) = task.await.expect("task");
            match answer {
                Ok(output) => assert_eq!(output, n * 10),
                Err(NotWritten::Failed(item)) => assert_eq!(item, n),
                Err(NotWritten::Stopped) => panic!("writer stopped"),
            }
        }
        let batches = batches.lock().expect("lock");
        assert_eq!(batches.iter().sum::<usize>(), 40, "every item written once");
        assert!(batches.iter().all(|&size| (1..=8).contains(&size)));
    }
}

/// Most completions written in one statement.
pub const MAX_COMPLETIONS: usize = 128;

/// A process's completion writer: its callers' completed attempts are
/// written together ([`Store::complete_many`]), each row fenced on its own
/// exactly as [`Store::complete`] fences it.
#[derive(Debug)]
pub struct Completions {
    store: Store,
    group: StoreGroup<(Fence, serde_json::Value), Transition>,
}

impl Completions {
    pub fn new(store: Store) -> Self {
        let writer = store.clone();
        Completions {
            store,
            group: StoreGroup::new("completions", MAX_COMPLETIONS, move |items| {
                let store = writer.clone();
                async move {
                    let written = store.complete_many(&items).await;
                    (items, written)
                }
            }),
        }
    }

    /// [`Store::complete`], written together with whatever other
    /// completions are waiting.
    pub async fn complete(
        &self,
        fence: &Fence,
        result: serde_json::Value,
    ) -> Result<Transition, StoreError> {
        self.group
            .write((fence.clone(), result), |(fence, result)| async move {
                self.store.complete(&fence, result).await
            })
            .await
    }
}
