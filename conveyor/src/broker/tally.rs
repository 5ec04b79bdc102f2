//! Attempts ended per minute, by outcome: what the dashboard's throughput
//! and failure rate are drawn from. Workers count in memory and add their
//! counts on each heartbeat ([`Broker::add_tally`]), so the cost is one
//! script call per worker per heartbeat, not a write per job. Minutes are
//! Redis's (`TIME` inside the scripts), so workers on many hosts agree.
//!
//! Counts are a dashboard's figures, not a ledger: a worker killed between
//! two heartbeats takes its last few seconds of counts with it, and Redis
//! losing its data loses the hour. PostgreSQL's rows stay the truth.

use redis::Script;

use super::{Broker, BrokerError};

/// Minutes of counts the dashboard reads.
pub const TALLY_MINUTES: usize = 60;
/// Minutes of counts kept: older ones are deleted as new minutes begin.
const KEEP_MINUTES: u32 = 120;

/// Adds ARGV[1..3] (completed, retried, failed) to the current minute's
/// fields of KEYS[1], once per batch: ARGV[5] is the sender, ARGV[6] its
/// batch number, and a batch at or below the sender's last one (kept in
/// field `sent:<sender>` as `<batch>:<minute>`) is a resend whose first
/// try Redis already applied. When a minute's first count arrives, the
/// minute ARGV[4] minutes back is deleted (so a steady flow keeps exactly
/// that many), and after a gap (more fields than that many minutes can
/// hold) every field that old: the hash stays small without anyone
/// reading it.
const ADD: &str = r"
local now = redis.call('TIME')
local minute = math.floor(tonumber(now[1]) / 60)
local sent = 'sent:' .. ARGV[5]
local last = redis.call('HGET', KEYS[1], sent)
if last and tonumber(string.match(last, '^(%d+):')) >= tonumber(ARGV[6]) then
  return 0
end
local names = {'completed', 'retried', 'failed'}
local began = false
for i, name in ipairs(names) do
  local n = tonumber(ARGV[i])
  if n > 0 and redis.call('HINCRBY', KEYS[1], minute .. ':' .. name, n) == n then
    began = true
  end
end
redis.call('HSET', KEYS[1], sent, ARGV[6] .. ':' .. minute)
local keep = tonumber(ARGV[4])
if began then
  local old = minute - keep
  redis.call('HDEL', KEYS[1], old .. ':completed', old .. ':retried', old .. ':failed')
end
if began and redis.call('HLEN', KEYS[1]) > 3 * keep then
  for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
    local at = tonumber(string.match(field, '^(%d+):'))
    if at == nil then
      local value = redis.call('HGET', KEYS[1], field)
      at = value and tonumber(string.match(value, ':(%d+)$'))
    end
    if at == nil or at <= minute - keep then
      redis.call('HDEL', KEYS[1], field)
    end
  end
end
redis.call('EXPIRE', KEYS[1], keep * 60)
return 1
";

/// The current minute (Redis's clock) and, for each of the ARGV[1]
/// minutes up to and including it, oldest first, its three counts.
const READ: &str = r"
local now = redis.call('TIME')
local minute = math.floor(tonumber(now[1]) / 60)
local span = tonumber(ARGV[1])
local fields = {}
for m = minute - span + 1, minute do
  fields[#fields + 1] = m .. ':completed'
  fields[#fields + 1] = m .. ':retried'
  fields[#fields + 1] = m .. ':failed'
end
local values = redis.call('HMGET', KEYS[1], unpack(fields))
local out = {minute}
for i, value in ipairs(values) do
  out[i + 1] = tonumber(value) or 0
end
return out
";

/// Attempts that ended, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub completed: u64,
    /// Failed and scheduled to run again.
    pub retried: u64,
    /// Failed for good (the dead-letter view).
    pub failed: u64,
}

impl Tally {
    pub fn is_empty(&self) -> bool {
        *self == Tally::default()
    }

    /// Every attempt counted.
    pub fn ended(&self) -> u64 {
        self.completed + self.retried + self.failed
    }

    /// Failed attempts (retried or not) as a share of every attempt, or
    /// `None` when none ended.
    pub fn failure_rate(&self) -> Option<f64> {
        let ended = self.ended();
        (ended > 0).then(|| (self.retried + self.failed) as f64 / ended as f64)
    }

    pub fn add(&mut self, other: &Tally) {
        self.completed += other.completed;
        self.retried += other.retried;
        self.failed += other.failed;
    }
}

/// One minute's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinuteTally {
    /// The minute's start, by Redis's clock.
    pub minute: chrono::DateTime<chrono::Utc>,
    pub tally: Tally,
}

impl Broker {
    /// Adds `tally` to the current minute's counts, as batch `batch` of
    /// `sender` (numbered from 1, rising): sending a batch again after a
    /// lost reply does not count it twice. True if this call counted it.
    pub async fn add_tally(
        &self,
        sender: &str,
        batch: u64,
        tally: &Tally,
    ) -> Result<bool, BrokerError> {
        let mut conn = self.connection().await?;
        let added: i64 = Script::new(ADD)
            .key(self.keys.tally())
            .arg(tally.completed)
            .arg(tally.retried)
            .arg(tally.failed)
            .arg(KEEP_MINUTES)
            .arg(sender)
            .arg(batch)
            .invoke_async(&mut conn)
            .await?;
        Ok(added == 1)
    }

    /// The counts of the last [`TALLY_MINUTES`] minutes, the current one
    /// (still counting) last.
    pub async fn recent_tally(&self) -> Result<Vec<MinuteTally>, BrokerError> {
        let mut conn = self.connection().await?;
        let counts: Vec<i64> = Script::new(READ)
            .key(self.keys.tally())
            .arg(TALLY_MINUTES)
            .invoke_async(&mut conn)
            .await?;
        let Some((&current, counts)) = counts.split_first() else {
            return Ok(Vec::new());
        };
        let first = current - TALLY_MINUTES as i64 + 1;
        Ok(counts
            .chunks_exact(3)
            .zip(first..)
            .map(|(counts, minute)| MinuteTally {
                minute: chrono::DateTime::from_timestamp(minute * 60, 0).unwrap_or_default(),
                tally: Tally {
                    completed: counts[0].max(0) as u64,
                    retried: counts[1].max(0) as u64,
                    failed: counts[2].max(0) as u64,
                },
            })
            .collect())
    }
}

/// Attempts ended in one process and not yet added to Redis: counted in
/// memory, sent in numbered batches ([`Broker::add_tally`]), a batch not
/// confirmed sent again as it was, so a lost reply counts nothing twice.
/// `conveyor-worker` sends on each heartbeat; the API, for remote workers,
/// every second.
#[derive(Debug, Default)]
pub struct TallyBuffer {
    counts: std::sync::Mutex<Tally>,
    /// The batch sent and not yet confirmed, with its number.
    unsent: std::sync::Mutex<Option<(u64, Tally)>>,
    /// The last batch number given.
    batches: std::sync::atomic::AtomicU64,
}

impl TallyBuffer {
    /// Counts an attempt that ended in `status` (others are not counted).
    pub fn count(&self, status: crate::JobStatus) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        match status {
            crate::JobStatus::Completed => counts.completed += 1,
            crate::JobStatus::Retrying => counts.retried += 1,
            crate::JobStatus::Failed => counts.failed += 1,
            _ => {}
        }
    }

    /// The batch to send: the unconfirmed one again, or the counts since
    /// the last batch under a new number; `None` when there is nothing.
    pub fn batch(&self) -> Option<(u64, Tally)> {
        let mut unsent = self.unsent.lock().unwrap_or_else(|e| e.into_inner());
        if unsent.is_none() {
            let counts =
                std::mem::take(&mut *self.counts.lock().unwrap_or_else(|e| e.into_inner()));
            if !counts.is_empty() {
                let batch = self
                    .batches
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    + 1;
                *unsent = Some((batch, counts));
            }
        }
        *unsent
    }

    /// Redis has counted batch `batch`.
    pub fn sent(&self, batch: u64) {
        let mut unsent = self.unsent.lock().unwrap_or_else(|e| e.into_inner());
        if unsent.is_some_and(|(number, _)| number == batch) {
            *unsent = None;
        }
    }

    /// Sends the batch due, if any, as `sender`.
    pub async fn send(&self, broker: &Broker, sender: &str) -> Result<(), BrokerError> {
        if let Some((batch, tally)) = self.batch() {
            broker.add_tally(sender, batch, &tally).await?;
            self.sent(batch);
        }
        Ok(())
    }
}
