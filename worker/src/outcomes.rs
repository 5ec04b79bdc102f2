//! Group commit of acknowledgements: a worker's job tasks hand them to one
//! writer, which removes every id waiting from the processing lists in one
//! Redis pipeline ([`Broker::ack_many`]). Completions are grouped the same
//! way, by [`conveyor::group_commit::Completions`].

use conveyor::group_commit::GroupCommit;
use conveyor::{Broker, BrokerError};

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
