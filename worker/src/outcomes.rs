//! Group commit of completed attempts and of acknowledgements: a worker's
//! job tasks hand their completions to one writer ([`conveyor::group_commit`]),
//! which writes everything waiting in one statement
//! ([`Store::complete_many`]), each row fenced on its own exactly as
//! [`Store::complete`] fences it; and their acknowledgements to another,
//! which removes every id waiting from the processing lists in one Redis
//! pipeline ([`Broker::ack_many`]).

use conveyor::group_commit::{GroupCommit, StoreGroup};
use conveyor::{Broker, BrokerError, Fence, Store, StoreError, Transition};
use serde_json::Value;

/// Most completions written in one statement.
pub const MAX_BATCH: usize = 128;

/// A worker's completion writer.
#[derive(Debug)]
pub struct Completions {
    store: Store,
    group: StoreGroup<(Fence, Value), Transition>,
}

impl Completions {
    pub fn new(store: Store) -> Self {
        let writer = store.clone();
        Completions {
            store,
            group: StoreGroup::new("completions", MAX_BATCH, move |items| {
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
    pub async fn complete(&self, fence: &Fence, result: Value) -> Result<Transition, StoreError> {
        self.group
            .write((fence.clone(), result), |(fence, result)| async move {
                self.store.complete(&fence, result).await
            })
            .await
    }
}

/// Most acknowledgements sent in one pipeline.
pub const MAX_ACKS: usize = 256;

/// A worker's acknowledgement writer.
#[derive(Debug)]
pub struct Acks {
    broker: Broker,
    worker: String,
    group: GroupCommit<(String, String), ()>,
}

impl Acks {
    pub fn new(broker: Broker, worker: String) -> Self {
        let (writer, me) = (broker.clone(), worker.clone());
        Acks {
            broker,
            worker,
            group: GroupCommit::new("acks", MAX_ACKS, move |ids: Vec<(String, String)>| {
                let (broker, me) = (writer.clone(), me.clone());
                async move {
                    match broker.ack_many(&me, &ids).await {
                        Ok(()) => Ok(vec![(); ids.len()]),
                        Err(_) => Err(ids),
                    }
                }
            }),
        }
    }

    /// [`Broker::ack_many`] (the id out of the processing list, its place
    /// under the queue's concurrency limit freed), sent with whatever other
    /// acknowledgements are waiting. When the pipeline fails, this one is
    /// sent alone, so the caller sees its own error.
    pub async fn ack(&self, queue: &str, id: &str) -> Result<(), BrokerError> {
        let item = (queue.to_owned(), id.to_owned());
        match self.group.write(item.clone()).await {
            Ok(()) => Ok(()),
            Err(_) => self.broker.ack_many(&self.worker, &[item]).await,
        }
    }
}
