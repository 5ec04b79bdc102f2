//! Worker presence: heartbeats in `<p>:workers`, details in
//! `<p>:worker:<id>`, and the removal of workers presumed dead.

use std::time::Duration;

use redis::Script;

use super::{Broker, BrokerError};

/// Scores ARGV[1] in the registry (KEYS[1]) with Redis's clock, in ms.
const BEAT: &str = r"
local now = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000), ARGV[1])
return 1
";

/// Members of the registry (KEYS[1]) silent for more than ARGV[1] ms by
/// Redis's clock.
const SILENT: &str = r"
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms - tonumber(ARGV[1]))
";

/// The queue names in a worker's `queues` detail (written joined by
/// commas on each heartbeat).
pub(crate) fn queue_names(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').filter(|queue| !queue.is_empty())
}

/// What a worker says about itself on each heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub queues: Vec<String>,
    pub concurrency: u32,
    /// RFC 3339.
    pub started_at: String,
    pub running: usize,
}

impl Broker {
    /// Marks `info.id` alive now, by Redis's clock (so liveness never
    /// compares two hosts' clocks), with its details; the details expire
    /// after `ttl` unless refreshed.
    pub async fn heartbeat(&self, info: &WorkerInfo, ttl: Duration) -> Result<(), BrokerError> {
        let key = self.keys.worker_info(&info.id);
        let mut conn = self.connection().await?;
        let _: i64 = Script::new(BEAT)
            .key(self.keys.workers())
            .arg(&info.id)
            .invoke_async(&mut conn)
            .await?;
        let mut pipe = redis::pipe();
        pipe.hset_multiple(
            &key,
            &[
                ("host", info.host.clone()),
                ("pid", info.pid.to_string()),
                ("queues", info.queues.join(",")),
                ("concurrency", info.concurrency.to_string()),
                ("started_at", info.started_at.clone()),
                ("running", info.running.to_string()),
            ],
        )
        .ignore()
        .pexpire(&key, ttl.as_millis() as i64)
        .ignore();
        let () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    /// Workers whose last heartbeat is older than `silence`, by Redis's
    /// clock: the same clock that scored the heartbeats.
    pub async fn silent_workers(&self, silence: Duration) -> Result<Vec<String>, BrokerError> {
        let mut conn = self.connection().await?;
        Ok(Script::new(SILENT)
            .key(self.keys.workers())
            .arg(silence.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?)
    }

    /// The queues `worker` said it serves, from its details (none once
    /// they are gone).
    pub async fn worker_queues(&self, worker: &str) -> Result<Vec<String>, BrokerError> {
        let mut conn = self.connection().await?;
        let queues: Option<String> = redis::cmd("HGET")
            .arg(self.keys.worker_info(worker))
            .arg("queues")
            .query_async(&mut conn)
            .await?;
        Ok(queues
            .as_deref()
            .map(|list| queue_names(list).map(str::to_owned).collect())
            .unwrap_or_default())
    }

    /// Every registered worker's id.
    pub async fn registered_workers(&self) -> Result<Vec<String>, BrokerError> {
        let mut conn = self.connection().await?;
        Ok(redis::cmd("ZRANGE")
            .arg(self.keys.workers())
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await?)
    }

    /// Removes `worker` from the registry (and its details). True if it
    /// was registered.
    pub async fn remove_worker(&self, worker: &str) -> Result<bool, BrokerError> {
        let mut conn = self.connection().await?;
        let removed: i64 = redis::cmd("ZREM")
            .arg(self.keys.workers())
            .arg(worker)
            .query_async(&mut conn)
            .await?;
        let _: i64 = redis::cmd("DEL")
            .arg(self.keys.worker_info(worker))
            .query_async(&mut conn)
            .await?;
        Ok(removed == 1)
    }

    /// The ids in `worker`'s processing list of `queue`.
    pub async fn processing_ids(
        &self,
        queue: &str,
        worker: &str,
    ) -> Result<Vec<String>, BrokerError> {
        let mut conn = self.connection().await?;
        Ok(redis::cmd("LRANGE")
            .arg(self.keys.processing(queue, worker))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await?)
    }

    /// Deletes `worker`'s processing list of `queue`.
    pub async fn drop_processing(&self, queue: &str, worker: &str) -> Result<(), BrokerError> {
        let mut conn = self.connection().await?;
        let _: i64 = redis::cmd("DEL")
            .arg(self.keys.processing(queue, worker))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Details of every registered worker, with its last heartbeat in ms.
    pub async fn workers(
        &self,
    ) -> Result<Vec<(String, i64, std::collections::HashMap<String, String>)>, BrokerError> {
        let mut conn = self.connection().await?;
        let ids: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(self.keys.workers())
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await?;
        let mut workers = Vec::with_capacity(ids.len());
        for (id, score) in ids {
            let details: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
                .arg(self.keys.worker_info(&id))
                .query_async(&mut conn)
                .await?;
            workers.push((id, score as i64, details));
        }
        Ok(workers)
    }
}
