//! Group commit of completed attempts: a worker's job tasks hand their
//! completions to one writer ([`conveyor::group_commit`]), which writes
//! everything waiting in one statement ([`Store::complete_many`]), each row
//! fenced on its own exactly as [`Store::complete`] fences it.

use conveyor::group_commit::{GroupCommit, NotWritten};
use conveyor::{Fence, Store, StoreError, Transition};
use serde_json::Value;

/// Most completions written in one statement.
pub const MAX_BATCH: usize = 128;

/// A worker's completion writer.
#[derive(Debug)]
pub struct Completions {
    store: Store,
    group: GroupCommit<(Fence, Value), Transition>,
}

impl Completions {
    pub fn new(store: Store) -> Self {
        let writer = store.clone();
        Completions {
            store,
            group: GroupCommit::new("completions", MAX_BATCH, move |items| {
                let store = writer.clone();
                async move { store.complete_many(&items).await.map_err(|_| items) }
            }),
        }
    }

    /// [`Store::complete`], written together with whatever other
    /// completions are waiting. When the batch fails, this one is written
    /// alone, so the caller sees its own error.
    pub async fn complete(&self, fence: &Fence, result: Value) -> Result<Transition, StoreError> {
        match self.group.write((fence.clone(), result)).await {
            Ok(transition) => Ok(transition),
            Err(NotWritten::Failed((fence, result))) => self.store.complete(&fence, result).await,
            Err(NotWritten::Stopped) => Err(StoreError::Interrupted("completion")),
        }
    }
}
