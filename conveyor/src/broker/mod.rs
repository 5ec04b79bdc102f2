//! The Redis side: every key Conveyor uses and every command that writes one.
//!
//! Redis holds only job ids, never payloads: PostgreSQL is the truth, and
//! anything Redis loses the reconciler puts back. All keys of one queue share
//! the hash tag `{q:<queue>}`, so each multi-key script touches one cluster
//! slot and the layout runs unchanged on Redis Cluster.
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `<p>:{q:<queue>}:ready:<priority>` | list | ids waiting; producers `LPUSH`, workers take from the right |
//! | `<p>:{q:<queue>}:processing:<worker>` | list | ids a worker took and has not acknowledged |
//! | `<p>:{q:<queue>}:delayed` | sorted set | `<id>:<priority>` due later, scored by due time in ms |
//! | `<p>:{q:<queue>}:active` | sorted set | ids taken and not acknowledged, scored by when their hold lapses (concurrency limit) |
//! | `<p>:{q:<queue>}:rate` | hash | the rate limit's token bucket: `tokens`, `at` (ms) |
//! | `<p>:workers` | sorted set | worker ids scored by last heartbeat (ms) |
//! | `<p>:worker:<worker>` | hash | a worker's host, pid, queues, concurrency, start, running jobs; expires |
//! | `<p>:queues` | set | queues in use: added by every publish, dropped by the leader once idle |
//! | `<p>:cancel` | pub/sub channel | ids of running jobs a client asked to cancel |
//! | `<p>:epoch` | string | set by the reconciler; its absence means Redis lost its data |
//! | `<p>:leader` | string | the maintenance leader: the holder's worker id, expiring |
//! | `<p>:tally` | hash | attempts ended per minute by outcome (`<minute>:<outcome>`), for the dashboard; expires when idle |
//!
//! Delayed members carry the job's priority (`<id>:<priority>`) so that the
//! promoter can put a due id on the right ready lane without asking
//! PostgreSQL.
//!
//! # Layout
//! - this module: [`Keys`], [`Broker`] and publishing.
//! - `connection`: one Redis or a Redis Cluster; batches of commands
//!   split by hash slot on a cluster.
//! - `fetch`: what workers do with ids — the sweep and blocking pop, acks,
//!   promotion of due ids.
//! - `registry`: worker heartbeats, presence and removal.
//! - `queues`: the set of known queues, their depths, dropping idle ones.
//! - `gates`: concurrency and rate limits, inside the scripts that take ids.
//! - `reconcile`: what Redis holds, the epoch key, the reconciler lock.
//! - `tally`: attempts ended per minute, counted by workers, read by the
//!   dashboard.

mod connection;
mod fetch;
mod gates;
mod queues;
mod reconcile;
mod registry;
mod tally;

pub use connection::{
    BlockingConnection, CLUSTER_REQUEST_TIMEOUT, Connection, Messages, RedisAddress,
    ServerOrCluster,
};
pub use gates::{GATE_REFRESH, Gate, Held, Limits, Taken};
pub use queues::QueueDepths;
pub use registry::{MAX_WORKERS_LISTED, RemoteSeen, WorkerInfo, WorkerPresence};
pub use tally::{MinuteTally, TALLY_MINUTES, Tally, TallyBuffer};

use std::time::Duration;

use redis::{AsyncCommands, Script};

use connection::{Batch, Pool};

use crate::job::{Job, JobId, PRIORITY_RANGE, WaitingJob};

/// Longest ready lane a canceled job's id is removed from (see
/// [`Broker::forget`]): a few tens of microseconds of Redis's time at most.
pub const FORGET_SCAN_LIMIT: i64 = 10_000;

/// Removes ARGV[1] from the delayed set KEYS[1] and, if the list KEYS[2]
/// holds at most ARGV[3] ids, ARGV[2] from it.
const FORGET: &str = r"
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('LLEN', KEYS[2]) <= tonumber(ARGV[3]) then
  return redis.call('LREM', KEYS[2], 0, ARGV[2])
end
return -1
";

/// Pooled connections per process when the caller does not say.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// How long an operation waits for a connection before Redis is called
/// unavailable: short, because the API answers without Redis when it must.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Builds every key name from the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Keys {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The ready list of one priority lane of `queue`.
    pub fn ready(&self, queue: &str, priority: i16) -> String {
        format!("{}:{{q:{queue}}}:ready:{priority}", self.prefix)
    }

    /// Ready lanes of `queue`, highest priority first.
    pub fn ready_lanes(&self, queue: &str) -> Vec<String> {
        PRIORITY_RANGE
            .rev()
            .map(|priority| self.ready(queue, priority))
            .collect()
    }

    /// Ids `worker` has taken from `queue` and not yet acknowledged.
    pub fn processing(&self, queue: &str, worker: &str) -> String {
        format!("{}:{{q:{queue}}}:processing:{worker}", self.prefix)
    }

    /// Ids of `queue` due later, scored by due time in ms since the epoch.
    pub fn delayed(&self, queue: &str) -> String {
        format!("{}:{{q:{queue}}}:delayed", self.prefix)
    }

    /// Ids of `queue` taken and not yet acknowledged, counted against its
    /// concurrency limit.
    pub fn active(&self, queue: &str) -> String {
        format!("{}:{{q:{queue}}}:active", self.prefix)
    }

    /// The token bucket of `queue`'s rate limit.
    pub fn rate(&self, queue: &str) -> String {
        format!("{}:{{q:{queue}}}:rate", self.prefix)
    }

    pub fn workers(&self) -> String {
        format!("{}:workers", self.prefix)
    }

    pub fn queues(&self) -> String {
        format!("{}:queues", self.prefix)
    }

    pub fn cancel_channel(&self) -> String {
        format!("{}:cancel", self.prefix)
    }

    pub fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }

    /// The maintenance leader's lease: the holder's id, expiring.
    pub fn leader(&self) -> String {
        format!("{}:leader", self.prefix)
    }

    pub fn worker_info(&self, worker: &str) -> String {
        format!("{}:worker:{worker}", self.prefix)
    }

    pub fn tally(&self) -> String {
        format!("{}:tally", self.prefix)
    }
}

/// The member a job has in its queue's delayed set.
pub fn delayed_member(id: &str, priority: i16) -> String {
    format!("{id}:{priority}")
}

/// A job's score in its queue's delayed set: its `run_at` in milliseconds,
/// rounded up. The promoter compares scores with Redis's clock in whole
/// milliseconds, so a score rounded down would let it promote a job up to a
/// millisecond before `run_at`; the claim, on PostgreSQL's clock, would then
/// find it not yet due and send it back for another promoter pass.
pub fn delayed_score(run_at: chrono::DateTime<chrono::Utc>) -> i64 {
    run_at
        .timestamp_micros()
        .saturating_add(999)
        .div_euclid(1000)
}

/// The job id of a delayed-set member.
pub fn delayed_member_id(member: &str) -> &str {
    member.rsplit_once(':').map_or(member, |(id, _)| id)
}

/// Redis could not be reached or refused a command.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis pool: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
    #[error("redis cluster pool: {0}")]
    ClusterPool(String),
    #[error("redis configuration: {0}")]
    Config(String),
}

/// Pooled access to Redis for short commands. Cheap to clone. Blocking pops
/// need connections of their own (see the worker), never these.
#[derive(Clone)]
pub struct Broker {
    pool: Pool,
    address: RedisAddress,
    keys: Keys,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("cluster", &self.address.is_cluster())
            .field("keys", &self.keys)
            .finish()
    }
}

impl Broker {
    /// A pool of at most `pool_size` connections to Redis, one server or a
    /// cluster. Connects lazily: a process starts while Redis is down, and
    /// reports it.
    pub fn connect(
        address: &RedisAddress,
        prefix: &str,
        pool_size: usize,
    ) -> Result<Self, BrokerError> {
        if let RedisAddress::Single(url) = address {
            // Refuse a malformed URL now, not on first use.
            redis::Client::open(url.as_str())?;
        }
        Ok(Broker {
            pool: Pool::new(address, pool_size)?,
            address: address.clone(),
            keys: Keys::new(prefix),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A pooled connection, for commands this module does not wrap.
    pub async fn connection(&self) -> Result<Connection, BrokerError> {
        self.pool.get().await
    }

    /// Answers when Redis does.
    pub async fn ping(&self) -> Result<(), BrokerError> {
        let mut conn = self.connection().await?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    /// Makes `jobs` visible to workers in one round trip: each due job's id
    /// onto its ready lane, each later one into its queue's delayed set.
    /// Call only after the rows are committed, or a worker may pop an id it
    /// cannot see yet.
    pub async fn publish(&self, jobs: &[Job]) -> Result<(), BrokerError> {
        let waiting: Vec<WaitingJob> = jobs.iter().map(WaitingJob::from).collect();
        self.publish_waiting(&waiting).await
    }

    /// [`Broker::publish`] from the narrow rows the maintenance services read.
    pub async fn publish_waiting(&self, jobs: &[WaitingJob]) -> Result<(), BrokerError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::new();
        for job in jobs {
            batch.add(self.push_command(job));
        }
        let mut queues: Vec<&str> = jobs.iter().map(|job| job.queue.as_str()).collect();
        queues.sort_unstable();
        queues.dedup();
        batch.add(redis::Cmd::sadd(self.keys.queues(), queues));
        let mut conn = self.connection().await?;
        let _: Vec<redis::Value> = batch.query(&mut conn).await?;
        Ok(())
    }

    /// The command that makes `job` visible: its id onto its
    /// ready lane when due, into the delayed set otherwise. "Due" is read
    /// from the row alone, on PostgreSQL's clock: every write sets
    /// `updated_at = now()`, so `run_at <= updated_at` says whether the job
    /// was due when it was last written. No host's clock is consulted.
    fn push_command(&self, job: &WaitingJob) -> redis::Cmd {
        let id = job.id.to_string();
        if !job.is_due() {
            redis::Cmd::zadd(
                self.keys.delayed(&job.queue),
                delayed_member(&id, job.priority),
                delayed_score(job.run_at),
            )
        } else {
            redis::Cmd::lpush(self.keys.ready(&job.queue, job.priority), id)
        }
    }

    /// Removes a waiting job's id from its queue's delayed set and, when
    /// the lane is no longer than [`FORGET_SCAN_LIMIT`], from its ready lane,
    /// in one atomic step (after its cancel committed). Removing from a
    /// list reads the whole list, so a deeper lane keeps the id: a worker
    /// that pops it loses its claim and drops it.
    pub async fn forget(&self, job: &Job) -> Result<(), BrokerError> {
        let id = job.id.to_string();
        let mut conn = self.connection().await?;
        let _: i64 = Script::new(FORGET)
            .key(self.keys.delayed(&job.queue))
            .key(self.keys.ready(&job.queue, job.priority))
            .arg(delayed_member(&id, job.priority))
            .arg(&id)
            .arg(FORGET_SCAN_LIMIT)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    /// A subscription to cancellation notices (job ids), on a connection
    /// of its own.
    pub async fn subscribe_cancels(&self) -> Result<Messages, BrokerError> {
        Messages::subscribe(&self.address, self.keys.cancel_channel()).await
    }

    /// Tells every worker that job `id` should stop; the one running it acts.
    pub async fn notify_cancel(&self, id: JobId) -> Result<(), BrokerError> {
        let mut conn = self.connection().await?;
        let _receivers: i64 = conn
            .publish(self.keys.cancel_channel(), id.to_string())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delayed_members_carry_the_priority() {
        let member = delayed_member("01a2-ff", 7);
        assert_eq!(member, "01a2-ff:7");
        assert_eq!(delayed_member_id(&member), "01a2-ff");
    }

    #[test]
    fn delayed_scores_never_fall_before_run_at() {
        let at = |micros| chrono::DateTime::from_timestamp_micros(micros).expect("in range");
        assert_eq!(delayed_score(at(1_000_000)), 1_000);
        assert_eq!(delayed_score(at(1_000_001)), 1_001);
        assert_eq!(delayed_score(at(1_000_999)), 1_001);
        // Before 1970 as well: rounded towards the later millisecond.
        assert_eq!(delayed_score(at(-1_500)), -1);
    }

    #[test]
    fn keys_of_one_queue_share_a_hash_tag() {
        let keys = Keys::new("conveyor");
        assert_eq!(keys.ready("default", 3), "conveyor:{q:default}:ready:3");
        assert_eq!(keys.delayed("default"), "conveyor:{q:default}:delayed");
        assert_eq!(
            keys.processing("default", "w1"),
            "conveyor:{q:default}:processing:w1"
        );
        let lanes = keys.ready_lanes("low");
        assert_eq!(
            lanes.first().map(String::as_str),
            Some("conveyor:{q:low}:ready:9")
        );
        assert_eq!(
            lanes.last().map(String::as_str),
            Some("conveyor:{q:low}:ready:0")
        );
    }
}
