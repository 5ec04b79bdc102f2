//! The set of known queues (`<p>:queues`) and what each holds.
//!
//! Publishing adds a queue to the set (in the same pipeline, after the
//! push), and the set is what the promoter, dead-worker recovery and the
//! metrics look at. Queue names are chosen by clients, so the set is kept
//! to queues that hold something: the leader drops an idle queue
//! ([`Broker::forget_idle_queues`]), and its next publish adds it back.

use redis::Script;

use super::connection::Batch;
use super::registry::queue_names;
use super::{Broker, BrokerError};
use crate::job::PRIORITY_RANGE;

/// 1 when the delayed set (KEYS[1]) and every other key (the ready lanes,
/// the processing lists of registered workers) are empty. All the keys are
/// one queue's, in one hash slot, so the answer is one instant's.
const IDLE: &str = r"
if redis.call('ZCARD', KEYS[1]) > 0 then return 0 end
for i = 2, #KEYS do
  if redis.call('LLEN', KEYS[i]) > 0 then return 0 end
end
return 1
";

/// How many ids one queue's keys hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueDepths {
    /// Per priority lane, 0 to 9.
    pub ready: Vec<u64>,
    pub delayed: u64,
    /// Across the processing lists of the registered workers that serve
    /// the queue (and of those whose details expired, which may).
    pub processing: u64,
    /// Registered workers that say they serve the queue.
    pub workers: u64,
}

impl Broker {
    /// Every queue in the set of known queues.
    pub async fn known_queues(&self) -> Result<Vec<String>, BrokerError> {
        let mut conn = self.connection().await?;
        Ok(redis::cmd("SMEMBERS")
            .arg(self.keys.queues())
            .query_async(&mut conn)
            .await?)
    }

    /// How many queues the set holds.
    pub async fn known_queue_count(&self) -> Result<usize, BrokerError> {
        let mut conn = self.connection().await?;
        Ok(redis::cmd("SCARD")
            .arg(self.keys.queues())
            .query_async(&mut conn)
            .await?)
    }

    /// Up to about `limit` queues of the set, in no order: one `SSCAN`
    /// step, so the cost does not grow with the set.
    pub async fn some_known_queues(&self, limit: usize) -> Result<Vec<String>, BrokerError> {
        let mut conn = self.connection().await?;
        let (_, mut queues): (u64, Vec<String>) = redis::cmd("SSCAN")
            .arg(self.keys.queues())
            .arg(0)
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut conn)
            .await?;
        queues.truncate(limit);
        Ok(queues)
    }

    /// Every registered worker with the queues it says it serves (`None`
    /// once its details expired), in one round trip after the registry's.
    async fn workers_and_queues(&self) -> Result<Vec<(String, Option<Vec<String>>)>, BrokerError> {
        let workers = self.registered_workers().await?;
        if workers.is_empty() {
            return Ok(Vec::new());
        }
        let mut batch = Batch::new();
        for worker in &workers {
            batch.add(redis::Cmd::hget(self.keys.worker_info(worker), "queues"));
        }
        let mut conn = self.connection().await?;
        let lists: Vec<Option<String>> = batch.query(&mut conn).await?;
        Ok(workers
            .into_iter()
            .zip(lists)
            .map(|(worker, list)| {
                let queues = list.map(|list| queue_names(&list).map(str::to_owned).collect());
                (worker, queues)
            })
            .collect())
    }

    /// The queues registered workers serve (operators chose them, unlike
    /// the names clients send).
    pub async fn served_queues(&self) -> Result<Vec<String>, BrokerError> {
        let mut queues: Vec<String> = self
            .workers_and_queues()
            .await?
            .into_iter()
            .flat_map(|(_, queues)| queues.unwrap_or_default())
            .collect();
        queues.sort_unstable();
        queues.dedup();
        Ok(queues)
    }

    /// Records that `queues` exist, so promoters and dead-worker recovery
    /// look at them.
    pub async fn add_queues(&self, queues: &[String]) -> Result<(), BrokerError> {
        let mut conn = self.connection().await?;
        let _: i64 = redis::cmd("SADD")
            .arg(self.keys.queues())
            .arg(queues)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The depth of every lane of `queue`.
    pub async fn queue_depths(&self, queue: &str) -> Result<QueueDepths, BrokerError> {
        let mut depths = self.queue_depths_of(&[queue.to_owned()]).await?;
        Ok(depths.pop().unwrap_or_default())
    }

    /// The depths of `queues`, in order, in three round trips whatever
    /// their number (the registry, the workers' queues, the counts): processing lists are found through the worker registry (a
    /// worker's lists outlive it only until dead-worker recovery, which
    /// deregisters it last), never by scanning the keyspace.
    pub async fn queue_depths_of(
        &self,
        queues: &[String],
    ) -> Result<Vec<QueueDepths>, BrokerError> {
        if queues.is_empty() {
            return Ok(Vec::new());
        }
        let workers = self.workers_and_queues().await?;
        // A worker has processing lists only for the queues it serves
        // (fixed for its life); one whose details expired may have any.
        fn serving<'a>(
            workers: &'a [(String, Option<Vec<String>>)],
            queue: &'a String,
        ) -> impl Iterator<Item = &'a (String, Option<Vec<String>>)> {
            workers.iter().filter(move |(_, served)| {
                served.as_ref().is_none_or(|served| served.contains(queue))
            })
        }
        let mut batch = Batch::new();
        for queue in queues {
            for priority in PRIORITY_RANGE {
                batch.add(redis::Cmd::llen(self.keys.ready(queue, priority)));
            }
            batch.add(redis::Cmd::zcard(self.keys.delayed(queue)));
            for (worker, _) in serving(&workers, queue) {
                batch.add(redis::Cmd::llen(self.keys.processing(queue, worker)));
            }
        }
        let mut conn = self.connection().await?;
        let counts: Vec<u64> = batch.query(&mut conn).await?;
        let lanes = PRIORITY_RANGE.count();
        let mut counts = counts.into_iter();
        Ok(queues
            .iter()
            .map(|queue| {
                let ready: Vec<u64> = counts.by_ref().take(lanes).collect();
                let delayed = counts.next().unwrap_or_default();
                let lists = serving(&workers, queue).count();
                QueueDepths {
                    ready,
                    delayed,
                    processing: counts.by_ref().take(lists).sum(),
                    workers: serving(&workers, queue)
                        .filter(|(_, served)| served.is_some())
                        .count() as u64,
                }
            })
            .collect())
    }

    /// For each of `queues`, in order, the id next in line on each of its
    /// ready lanes (the oldest there: producers push on the left, workers
    /// take from the right), in one round trip.
    pub async fn next_ready_ids(&self, queues: &[String]) -> Result<Vec<Vec<String>>, BrokerError> {
        if queues.is_empty() {
            return Ok(Vec::new());
        }
        let mut batch = Batch::new();
        for queue in queues {
            for priority in PRIORITY_RANGE {
                batch.add(redis::Cmd::lindex(self.keys.ready(queue, priority), -1));
            }
        }
        let mut conn = self.connection().await?;
        let ids: Vec<Option<String>> = batch.query(&mut conn).await?;
        Ok(ids
            .chunks(PRIORITY_RANGE.count())
            .map(|lanes| lanes.iter().flatten().cloned().collect())
            .collect())
    }

    /// Drops from the set of known queues every queue that holds nothing:
    /// no ready or delayed id, none in a registered worker's processing
    /// list. Returns how many it dropped. A publish racing with the drop
    /// adds the queue back (its pipeline pushes, then adds), and a queue
    /// found busy again just after its removal is added back here, so no
    /// queue holding an id stays out of the set.
    pub async fn forget_idle_queues(&self) -> Result<usize, BrokerError> {
        let workers = self.registered_workers().await?;
        let mut dropped = Vec::new();
        for queue in self.known_queues().await? {
            if self.is_idle(&queue, &workers).await? {
                let mut conn = self.connection().await?;
                let _: i64 = redis::cmd("SREM")
                    .arg(self.keys.queues())
                    .arg(&queue)
                    .query_async(&mut conn)
                    .await?;
                dropped.push(queue);
            }
        }
        // Look again, with the workers that registered since the first
        // look: a queue busy again goes back.
        let workers = self.registered_workers().await?;
        let mut forgotten = 0;
        for queue in dropped {
            if self.is_idle(&queue, &workers).await? {
                forgotten += 1;
            } else {
                self.add_queues(std::slice::from_ref(&queue)).await?;
            }
        }
        Ok(forgotten)
    }

    async fn is_idle(&self, queue: &str, workers: &[String]) -> Result<bool, BrokerError> {
        let script = Script::new(IDLE);
        let mut invocation = script.prepare_invoke();
        invocation.key(self.keys.delayed(queue));
        for priority in PRIORITY_RANGE {
            invocation.key(self.keys.ready(queue, priority));
        }
        for worker in workers {
            invocation.key(self.keys.processing(queue, worker));
        }
        let mut conn = self.connection().await?;
        let idle: i64 = invocation.invoke_async(&mut conn).await?;
        Ok(idle == 1)
    }
}
