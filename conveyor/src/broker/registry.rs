//! Worker presence: heartbeats in `<p>:workers`, details in
//! `<p>:worker:<id>`, and the removal of workers presumed dead.

use std::collections::HashMap;
use std::time::Duration;

use redis::Script;

use super::connection::Batch;
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
    /// How often it beats, so that readers can tell a late worker.
    pub heartbeat: Duration,
}

impl WorkerPresence {
    /// Whether it has missed beats: silent for three of its intervals, or
    /// its details gone. (Recovery acts later, on its own setting.)
    pub fn is_late(&self) -> bool {
        self.info
            .as_ref()
            .is_none_or(|info| self.silent_for > info.heartbeat * 3)
    }
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
                ("heartbeat_ms", info.heartbeat.as_millis().to_string()),
            ],
        )
        .ignore()
        .pexpire(&key, ttl.as_millis() as i64)
        .ignore();
        let () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    /// Marks remote worker `worker` (one that calls the API's worker
    /// protocol) alive now, by Redis's clock, as [`Broker::heartbeat`]
    /// does. A remote worker says less of itself than a `conveyor-worker`:
    /// each call sets what it knows (the queues it claims from, the
    /// attempts it holds) and keeps the rest; fields never set get the
    /// values a remote worker has (host `remote`, pid 0), and `started_at`
    /// is its first call since it was last registered.
    pub async fn touch_remote(
        &self,
        worker: &str,
        seen: &RemoteSeen,
        ttl: Duration,
    ) -> Result<(), BrokerError> {
        let key = self.keys.worker_info(worker);
        let mut conn = self.connection().await?;
        let _: i64 = Script::new(BEAT)
            .key(self.keys.workers())
            .arg(worker)
            .invoke_async(&mut conn)
            .await?;
        let mut pipe = redis::pipe();
        for (field, value) in [
            ("host", "remote".to_owned()),
            ("pid", "0".to_owned()),
            ("queues", String::new()),
            ("concurrency", "0".to_owned()),
            ("running", "0".to_owned()),
            ("started_at", chrono::Utc::now().to_rfc3339()),
        ] {
            pipe.hset_nx(&key, field, value).ignore();
        }
        pipe.hset(&key, "heartbeat_ms", seen.heartbeat.as_millis().to_string())
            .ignore();
        if let Some(queues) = &seen.queues {
            pipe.hset(&key, "queues", queues.join(",")).ignore();
        }
        if let Some(max) = seen.claims_at_once {
            pipe.hset(&key, "concurrency", max.to_string()).ignore();
        }
        if let Some(running) = seen.running {
            pipe.hset(&key, "running", running.to_string()).ignore();
        }
        pipe.pexpire(&key, ttl.as_millis() as i64).ignore();
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

    /// How many workers are registered.
    pub async fn worker_count(&self) -> Result<u64, BrokerError> {
        let mut conn = self.connection().await?;
        Ok(redis::cmd("ZCARD")
            .arg(self.keys.workers())
            .query_async(&mut conn)
            .await?)
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

    /// Every registered worker (at most [`MAX_WORKERS_LISTED`]) with its
    /// details and how long ago it last beat, both by Redis's clock: two
    /// round trips whatever their number.
    pub async fn workers(&self) -> Result<Vec<WorkerPresence>, BrokerError> {
        let mut conn = self.connection().await?;
        let ((seconds, micros), beats): ((i64, i64), Vec<(String, i64)>) = redis::pipe()
            .cmd("TIME")
            .cmd("ZRANGE")
            .arg(self.keys.workers())
            .arg(0)
            .arg(MAX_WORKERS_LISTED - 1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await?;
        if beats.is_empty() {
            return Ok(Vec::new());
        }
        let now_ms = seconds * 1000 + micros / 1000;
        let mut batch = Batch::new();
        for (id, _) in &beats {
            batch.add(redis::Cmd::hgetall(self.keys.worker_info(id)));
        }
        let details: Vec<HashMap<String, String>> = batch.query(&mut conn).await?;
        Ok(beats
            .into_iter()
            .zip(details)
            .map(|((id, beat_ms), details)| WorkerPresence {
                last_beat: chrono::DateTime::from_timestamp_millis(beat_ms).unwrap_or_default(),
                silent_for: Duration::from_millis(now_ms.saturating_sub(beat_ms).max(0) as u64),
                info: WorkerInfo::from_details(&id, &details),
                id,
            })
            .collect())
    }
}

/// What one call of a remote worker tells of it.
#[derive(Debug, Clone, Default)]
pub struct RemoteSeen {
    /// The queues it claims from (a claim says).
    pub queues: Option<Vec<String>>,
    /// Most jobs it asks for at once (a claim says).
    pub claims_at_once: Option<usize>,
    /// The attempts it holds (a heartbeat says).
    pub running: Option<usize>,
    /// How often it is expected to call: readers call it late after three.
    pub heartbeat: Duration,
}

/// Most workers [`Broker::workers`] lists.
pub const MAX_WORKERS_LISTED: usize = 1_000;

/// A registered worker as Redis holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerPresence {
    pub id: String,
    /// Its last heartbeat, by Redis's clock.
    pub last_beat: chrono::DateTime<chrono::Utc>,
    /// How long ago that was, by the same clock.
    pub silent_for: Duration,
    /// What it said of itself; `None` once its details expired (it
    /// stopped beating and recovery has not yet removed it).
    pub info: Option<WorkerInfo>,
}

impl WorkerInfo {
    /// The details [`Broker::heartbeat`] wrote, or `None` when they are
    /// gone or not of that form.
    fn from_details(id: &str, details: &HashMap<String, String>) -> Option<Self> {
        let field = |name: &str| details.get(name);
        Some(WorkerInfo {
            id: id.to_owned(),
            host: field("host")?.clone(),
            pid: field("pid")?.parse().ok()?,
            queues: queue_names(field("queues")?).map(str::to_owned).collect(),
            concurrency: field("concurrency")?.parse().ok()?,
            started_at: field("started_at")?.clone(),
            running: field("running")?.parse().ok()?,
            // Workers from before this field beat at the default interval.
            heartbeat: field("heartbeat_ms").and_then(|ms| ms.parse().ok()).map_or(
                Duration::from_secs(crate::config::DEFAULT_HEARTBEAT_SECS),
                Duration::from_millis,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence(silent_secs: u64, heartbeat_secs: Option<u64>) -> WorkerPresence {
        WorkerPresence {
            id: "w".to_owned(),
            last_beat: chrono::DateTime::default(),
            silent_for: Duration::from_secs(silent_secs),
            info: heartbeat_secs.map(|secs| WorkerInfo {
                id: "w".to_owned(),
                host: "h".to_owned(),
                pid: 1,
                queues: Vec::new(),
                concurrency: 1,
                started_at: String::new(),
                running: 0,
                heartbeat: Duration::from_secs(secs),
            }),
        }
    }

    #[test]
    fn a_worker_is_late_after_three_of_its_own_heartbeats() {
        assert!(!presence(9, Some(3)).is_late());
        assert!(presence(10, Some(3)).is_late());
        assert!(
            !presence(50, Some(20)).is_late(),
            "a slow beat is its own measure"
        );
        assert!(presence(0, None).is_late(), "details gone");
    }
}
