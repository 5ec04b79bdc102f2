//! What the reconciler needs from Redis: every id a queue's keys hold, an
//! epoch key whose absence means Redis lost its data, and a lock so that one
//! reconciler runs at a time.

use std::collections::HashSet;
use std::time::Duration;

use redis::{AsyncCommands, Script};

use super::{Broker, BrokerError, delayed_member_id};

/// Takes (or extends, if we hold it) a lock that expires on its own.
const TAKE_LOCK: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

impl Broker {
    /// Every job id any key of `queue` holds: its ready lanes, its delayed
    /// set, and every processing list.
    pub async fn ids_held(&self, queue: &str) -> Result<HashSet<String>, BrokerError> {
        let mut conn = self.connection().await?;
        let mut lists = self.keys.ready_lanes(queue);
        let pattern = format!("{}*", self.keys.processing(queue, ""));
        let mut processing: Vec<String> = Vec::new();
        {
            let mut scan = conn.scan_match::<_, String>(&pattern).await?;
            while let Some(key) = scan.next_item().await {
                processing.push(key?);
            }
        }
        lists.extend(processing);
        let mut pipe = redis::pipe();
        for list in &lists {
            pipe.lrange(list, 0, -1);
        }
        pipe.zrange(self.keys.delayed(queue), 0, -1);
        let mut found: Vec<Vec<String>> = pipe.query_async(&mut conn).await?;
        let delayed = found.pop().unwrap_or_default();
        let mut held: HashSet<String> = found.into_iter().flatten().collect();
        held.extend(
            delayed
                .iter()
                .map(|member| delayed_member_id(member).to_owned()),
        );
        Ok(held)
    }

    /// True if the epoch key exists. It is set by the reconciler and vanishes
    /// only when Redis loses its data (a restart without persistence, a
    /// flush, deleted keys).
    pub async fn epoch_exists(&self) -> Result<bool, BrokerError> {
        let mut conn = self.connection().await?;
        Ok(conn.exists(self.keys.epoch()).await?)
    }

    /// Sets the epoch key (after a full reconciliation).
    pub async fn set_epoch(&self, epoch: &str) -> Result<(), BrokerError> {
        let mut conn = self.connection().await?;
        let () = conn.set(self.keys.epoch(), epoch).await?;
        Ok(())
    }

    /// Takes the reconciler lock for `holder` for `ttl`, or extends it if
    /// `holder` has it. False if another holder has it.
    pub async fn take_reconciler_lock(
        &self,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, BrokerError> {
        let mut conn = self.connection().await?;
        let taken: i64 = Script::new(TAKE_LOCK)
            .key(self.keys.reconciler_lock())
            .arg(holder)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?;
        Ok(taken == 1)
    }
}
