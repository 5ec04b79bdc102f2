//! A queue's concurrency and rate limits, enforced where ids are taken:
//! inside the same atomic scripts that move ids into a worker's processing
//! list, on keys under the queue's hash tag, so every worker on every host
//! counts against one budget.
//!
//! - `active` (sorted set): the ids taken and not yet acknowledged, each
//!   scored by when its hold lapses (Redis's clock, one lease ahead; the
//!   heartbeat of the worker running it moves it on). A held id leaves it
//!   when acknowledged, and a dead worker's when their hold lapses. It
//!   counts against the concurrency limit.
//! - `rate` (hash): a token bucket, `tokens` and `at` (ms), refilled at
//!   the rate up to the burst; each id taken spends a token.
//!
//! The limits themselves come from PostgreSQL (the worker reads them every
//! [`GATE_REFRESH`](crate::broker::GATE_REFRESH)) and travel as arguments:
//! a Redis that loses its data loses no setting, only the counts, which the
//! next heartbeats rebuild.

use redis::Script;

use super::{Broker, BrokerError};

/// How often workers read their queues' settings from PostgreSQL: a limit
/// or a resume takes effect within this (a pause at once: the claim checks
/// it).
pub const GATE_REFRESH: std::time::Duration = std::time::Duration::from_millis(500);

/// A queue's limits, as the scripts take them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Limits {
    /// Most ids held at once, across workers.
    pub concurrency: Option<u32>,
    /// Most ids taken per second, and the burst.
    pub rate: Option<(f64, u32)>,
}

impl Limits {
    pub fn is_limited(&self) -> bool {
        self.concurrency.is_some() || self.rate.is_some()
    }

    fn args(&self, invocation: &mut redis::ScriptInvocation<'_>, lease_ms: u64) {
        let (rate, burst) = self.rate.unwrap_or((0.0, 0));
        invocation
            .arg(self.concurrency.unwrap_or(0))
            .arg(rate)
            .arg(burst)
            .arg(lease_ms);
    }
}

/// One queue's gate as PostgreSQL says it is: paused or not, and its
/// limits.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Gate {
    pub paused: bool,
    pub limits: Limits,
}

impl From<&crate::store::QueueSettings> for Gate {
    fn from(settings: &crate::store::QueueSettings) -> Self {
        Gate {
            paused: settings.paused,
            limits: Limits {
                concurrency: settings.concurrency_limit.map(|limit| limit.max(1) as u32),
                rate: settings.rate_limit.zip(settings.burst()),
            },
        }
    }
}

/// Which limit held a fetch back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Nothing: every id wanted was taken, or the lanes are empty.
    No,
    Concurrency,
    Rate,
}

/// What one limited sweep took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub ids: Vec<String>,
    /// Whether a limit left ids behind in the lanes.
    pub held: Held,
}

/// Shared head of both scripts: the time, the free places under the
/// concurrency limit (ARGV[2], 0: none) and the whole tokens in the bucket
/// (rate ARGV[3] per second, burst ARGV[4]).
const BUDGET: &str = r"
local function budget(active, bucket)
  local limit, rate, burst = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local free, tokens = math.huge, math.huge
  if limit > 0 then
    redis.call('ZREMRANGEBYSCORE', active, '-inf', now)
    free = limit - redis.call('ZCARD', active)
  end
  if rate > 0 then
    local state = redis.call('HMGET', bucket, 'tokens', 'at')
    local at = tonumber(state[2]) or now
    tokens = math.min(burst, (tonumber(state[1]) or burst) + math.max(now - at, 0) * rate / 1000)
  end
  return now, free, tokens
end

-- Extends KEY's time to live to at least MS (never shortens it: workers
-- with a longer lease share the key). MS is a whole number of ms, capped.
local function keep_for(key, ms)
  ms = math.min(math.floor(ms), 604800000)
  if redis.call('PTTL', key) < ms then
    redis.call('PEXPIRE', key, ms)
  end
end

local function spend(active, bucket, now, tokens, ids)
  local limit, rate, burst, lease = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
  if limit > 0 then
    for _, id in ipairs(ids) do
      redis.call('ZADD', active, now + lease, id)
    end
    keep_for(active, lease * 2)
  end
  if rate > 0 then
    redis.call('HSET', bucket, 'tokens', tostring(tokens - #ids), 'at', now)
    -- Idle longer than a refill, the bucket is full again: let it go.
    keep_for(bucket, burst / rate * 1000 + 1000)
  end
end
";

/// [`super::fetch`]'s sweep within the limits: KEYS are the ready lanes
/// (highest first), the processing list, `active`, `rate`; ARGV want,
/// limit, rate, burst, lease (ms). Returns the ids and what held the rest
/// back (0 nothing, 1 concurrency, 2 rate).
const SWEEP_LIMITED: &str = r"
local n = #KEYS - 3
local processing, active, bucket = KEYS[n + 1], KEYS[n + 2], KEYS[n + 3]
local now, free, tokens = budget(active, bucket)
local room, held = tonumber(ARGV[1]), 0
if free < room then room = math.max(free, 0); held = 1 end
if math.floor(tokens) < room then room = math.max(math.floor(tokens), 0); held = 2 end
local ids = {}
for i = 1, n do
  while #ids < room do
    local id = redis.call('RPOPLPUSH', KEYS[i], processing)
    if not id then break end
    ids[#ids + 1] = id
  end
  if #ids >= room then break end
end
spend(active, bucket, now, tokens, ids)
if held > 0 and #ids < room then held = 0 end
if held > 0 then
  local left = false
  for i = 1, n do
    if redis.call('LLEN', KEYS[i]) > 0 then left = true; break end
  end
  if not left then held = 0 end
end
return {ids, held}
";

/// Admits one id a blocking pop moved (ARGV[1]) within the limits, or puts
/// it back where it was (the right end of the lane KEYS[1]) and out of the
/// processing list KEYS[2]. KEYS[3], KEYS[4]: `active`, `rate`; ARGV[2..5]
/// as for the sweep. 1 if admitted.
const ADMIT: &str = r"
local now, free, tokens = budget(KEYS[3], KEYS[4])
if free >= 1 and tokens >= 1 then
  spend(KEYS[3], KEYS[4], now, tokens, {ARGV[1]})
  return 1
end
redis.call('LREM', KEYS[2], 1, ARGV[1])
redis.call('RPUSH', KEYS[1], ARGV[1])
return 0
";

/// Moves the holds of ids still running (ARGV[2..]) one lease (ARGV[1] ms)
/// past now, adding any a Redis that lost its data forgot.
const HOLD: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now + lease, ARGV[i])
end
if redis.call('PTTL', KEYS[1]) < lease * 2 then
  redis.call('PEXPIRE', KEYS[1], lease * 2)
end
return #ARGV - 1
";

fn with_budget(body: &str) -> Script {
    Script::new(&format!("{BUDGET}\n{body}"))
}

impl Broker {
    /// Takes up to `max` ids from `queue`'s ready lanes within `limits`,
    /// in one atomic step.
    pub async fn sweep_limited(
        &self,
        conn: &mut super::BlockingConnection,
        queue: &str,
        worker: &str,
        max: usize,
        limits: &Limits,
        lease: std::time::Duration,
    ) -> Result<Taken, BrokerError> {
        let script = with_budget(SWEEP_LIMITED);
        let mut invocation = script.prepare_invoke();
        for lane in self.keys.ready_lanes(queue) {
            invocation.key(lane);
        }
        invocation
            .key(self.keys.processing(queue, worker))
            .key(self.keys.active(queue))
            .key(self.keys.rate(queue))
            .arg(max);
        limits.args(&mut invocation, lease_ms(lease));
        let (ids, held): (Vec<String>, i64) = invocation.invoke_async(conn).await?;
        let held = match held {
            1 => Held::Concurrency,
            2 => Held::Rate,
            _ => Held::No,
        };
        Ok(Taken { ids, held })
    }

    /// Admits `id`, which a blocking pop moved from `queue`'s lane of
    /// `priority` into `worker`'s processing list, within `limits`; or puts
    /// it back. True if admitted.
    #[allow(clippy::too_many_arguments)]
    pub async fn admit(
        &self,
        conn: &mut super::BlockingConnection,
        queue: &str,
        priority: i16,
        worker: &str,
        id: &str,
        limits: &Limits,
        lease: std::time::Duration,
    ) -> Result<bool, BrokerError> {
        let script = with_budget(ADMIT);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.keys.ready(queue, priority))
            .key(self.keys.processing(queue, worker))
            .key(self.keys.active(queue))
            .key(self.keys.rate(queue))
            .arg(id);
        limits.args(&mut invocation, lease_ms(lease));
        let admitted: i64 = invocation.invoke_async(conn).await?;
        Ok(admitted == 1)
    }

    /// Keeps the holds of `ids` (running here, in `queue`) one `lease`
    /// ahead: the heartbeat's part in the concurrency limit.
    pub async fn hold(
        &self,
        queue: &str,
        ids: &[String],
        lease: std::time::Duration,
    ) -> Result<(), BrokerError> {
        if ids.is_empty() {
            return Ok(());
        }
        let script = Script::new(HOLD);
        let mut invocation = script.prepare_invoke();
        invocation.key(self.keys.active(queue)).arg(lease_ms(lease));
        for id in ids {
            invocation.arg(id);
        }
        let mut conn = self.connection().await?;
        let _: i64 = invocation.invoke_async(&mut conn).await?;
        Ok(())
    }

    /// How many ids of `queue` are held against its concurrency limit.
    /// Holds that lapse later are counted by the clock of the node that
    /// holds the set (`TIME` inside the script): on a cluster, a `TIME`
    /// sent alone would be answered by any node.
    pub async fn held_count(&self, queue: &str) -> Result<u64, BrokerError> {
        let mut conn = self.connection().await?;
        let count: u64 = Script::new(HELD)
            .key(self.keys.active(queue))
            .invoke_async(&mut conn)
            .await?;
        Ok(count)
    }
}

/// Counts the members of the `active` set KEYS[1] whose hold has not lapsed.
const HELD: &str = r"
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], now_ms, '+inf')
";

fn lease_ms(lease: std::time::Duration) -> u64 {
    u64::try_from(lease.as_millis()).unwrap_or(u64::MAX)
}
