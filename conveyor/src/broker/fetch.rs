//! What workers do with ids: take them (a sweep of the lanes, then a
//! blocking pop), acknowledge them, and promote due ones from `delayed`.

use std::time::Duration;

use redis::Script;

use super::connection::Batch;
use super::{BlockingConnection, Broker, BrokerError};
use crate::job::{Job, PRIORITY_RANGE, WaitingJob};

/// Moves up to ARGV[1] ids, highest lane first, from the ready lanes
/// (KEYS[1..n-1], highest priority first) to the processing list (KEYS[n]).
/// Atomic, so no id is ever in neither list.
const SWEEP: &str = r"
local want = tonumber(ARGV[1])
local processing = KEYS[#KEYS]
local ids = {}
for i = 1, #KEYS - 1 do
  while #ids < want do
    local id = redis.call('RPOPLPUSH', KEYS[i], processing)
    if not id then break end
    ids[#ids + 1] = id
  end
  if #ids >= want then break end
end
return ids
";

/// Takes ARGV[1] out of the processing list KEYS[1] and the `active` set
/// KEYS[2], and puts it back: onto the ready lane KEYS[3] when ARGV[2] is
/// `ready`, else into the delayed set KEYS[3] as ARGV[3], scored ARGV[2].
const ACK_AND_REPUBLISH: &str = r"
redis.call('LREM', KEYS[1], 1, ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if ARGV[2] == 'ready' then
  redis.call('LPUSH', KEYS[3], ARGV[1])
else
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
end
return 1
";

/// Moves up to ARGV[1] members of the delayed set (KEYS[1]) that are due by
/// Redis's own clock onto the ready lane of their priority (KEYS[2 + p]).
const PROMOTE: &str = r"
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
  local id, priority = string.match(member, '^(.+):(%d)$')
  if id then
    redis.call('LPUSH', KEYS[2 + tonumber(priority)], id)
  end
end
return #due
";

impl Broker {
    /// A connection of its own for blocking pops of up to `block`: a
    /// blocking command would stall every other user of a shared
    /// connection, and its response timeout must outlast the block.
    pub async fn blocking_connection(
        &self,
        block: Duration,
    ) -> Result<BlockingConnection, BrokerError> {
        BlockingConnection::open(&self.address, block).await
    }

    /// Takes up to `max` ids from `queue`'s ready lanes, highest priority
    /// first, into `worker`'s processing list, in one atomic step.
    pub async fn sweep(
        &self,
        conn: &mut BlockingConnection,
        queue: &str,
        worker: &str,
        max: usize,
    ) -> Result<Vec<String>, BrokerError> {
        let script = Script::new(SWEEP);
        let mut invocation = script.prepare_invoke();
        for lane in self.keys.ready_lanes(queue) {
            invocation.key(lane);
        }
        invocation.key(self.keys.processing(queue, worker)).arg(max);
        Ok(invocation.invoke_async(conn).await?)
    }

    /// Waits up to `timeout` for an id on `queue`'s lane of `priority` and
    /// moves it into `worker`'s processing list (`BRPOPLPUSH`).
    pub async fn wait_for_id(
        &self,
        conn: &mut BlockingConnection,
        queue: &str,
        priority: i16,
        worker: &str,
        timeout: Duration,
    ) -> Result<Option<String>, BrokerError> {
        Ok(redis::cmd("BRPOPLPUSH")
            .arg(self.keys.ready(queue, priority))
            .arg(self.keys.processing(queue, worker))
            .arg(timeout.as_secs_f64())
            .query_async(conn)
            .await?)
    }

    /// Forgets `id` from `worker`'s processing list: its outcome is
    /// committed, or it was a duplicate delivery. Leaves its place under
    /// the concurrency limit (a duplicate of a job running elsewhere must
    /// not free that job's place; an abandoned place lapses by itself).
    pub async fn ack(&self, queue: &str, worker: &str, id: &str) -> Result<(), BrokerError> {
        let mut conn = self.connection().await?;
        let _: i64 = redis::cmd("LREM")
            .arg(self.keys.processing(queue, worker))
            .arg(1)
            .arg(id)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// [`Broker::ack`] for many `(queue, id)` pairs of `worker`, in one
    /// pipeline: the ids out of its processing lists, their places under
    /// their queues' concurrency limits kept.
    pub async fn unlist_many(
        &self,
        worker: &str,
        ids: &[(String, String)],
    ) -> Result<(), BrokerError> {
        self.take_out(worker, ids, false).await
    }

    /// [`Broker::ack`] for many `(queue, id)` pairs of `worker`, in one
    /// pipeline (one round trip), each also releasing its place under its
    /// queue's concurrency limit.
    pub async fn ack_many(
        &self,
        worker: &str,
        ids: &[(String, String)],
    ) -> Result<(), BrokerError> {
        self.take_out(worker, ids, true).await
    }

    /// The ids out of `worker`'s processing lists, and out of their queues'
    /// `active` sets when `free_places`, in one pipeline.
    async fn take_out(
        &self,
        worker: &str,
        ids: &[(String, String)],
        free_places: bool,
    ) -> Result<(), BrokerError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::new();
        for (queue, id) in ids {
            batch.add(redis::Cmd::lrem(self.keys.processing(queue, worker), 1, id));
            if free_places {
                batch.add(redis::Cmd::zrem(self.keys.active(queue), id));
            }
        }
        let mut conn = self.connection().await?;
        let _: Vec<redis::Value> = batch.query(&mut conn).await?;
        Ok(())
    }

    /// Acknowledges `job` and, in the same atomic step, makes it visible
    /// again: on its ready lane if due, in `delayed` otherwise. For retries,
    /// early deliveries and jobs put back at shutdown. A script rather than
    /// a `MULTI`: on a cluster a redirection inside a transaction aborts it,
    /// while a script is redirected and retried like any command.
    pub async fn ack_and_republish(&self, worker: &str, job: &Job) -> Result<(), BrokerError> {
        let id = job.id.to_string();
        let waiting = WaitingJob::from(job);
        let script = Script::new(ACK_AND_REPUBLISH);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.keys.processing(&job.queue, worker))
            .key(self.keys.active(&job.queue));
        if waiting.is_due() {
            invocation
                .key(self.keys.ready(&job.queue, job.priority))
                .arg(&id)
                .arg("ready");
        } else {
            invocation
                .key(self.keys.delayed(&job.queue))
                .arg(&id)
                .arg(super::delayed_score(job.run_at))
                .arg(super::delayed_member(&id, job.priority));
        }
        let mut conn = self.connection().await?;
        let _: i64 = invocation.invoke_async(&mut conn).await?;
        Ok(())
    }

    /// Moves up to `limit` due ids of `queue` from `delayed` to their ready
    /// lanes; returns how many. "Due" is by Redis's clock (`TIME` inside the
    /// script), so promoters on many hosts agree whatever their clocks say.
    pub async fn promote_due(&self, queue: &str, limit: usize) -> Result<usize, BrokerError> {
        let script = Script::new(PROMOTE);
        let mut invocation = script.prepare_invoke();
        invocation.key(self.keys.delayed(queue));
        for priority in PRIORITY_RANGE {
            invocation.key(self.keys.ready(queue, priority));
        }
        invocation.arg(limit);
        let mut conn = self.connection().await?;
        Ok(invocation.invoke_async(&mut conn).await?)
    }
}
