//! What the maintenance services need from Redis: every id a queue's keys
//! hold, an epoch key whose absence means Redis lost its data, and the
//! leader's lease.

use std::collections::HashSet;
use std::time::Duration;

use redis::{AsyncCommands, Script};

use super::{Broker, BrokerError, delayed_member_id};

/// Takes the lease KEYS[1] for ARGV[1] for ARGV[2] ms, or extends it if
/// ARGV[1] holds it. 1 if held afterwards.
const TAKE_LEASE: &str = r"
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

/// Deletes the lease KEYS[1] if ARGV[1] holds it.
const RELEASE_LEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Ids read from one list per command: a long list is read in pages, so
/// no single command holds Redis up for long.
const LIST_PAGE: isize = 10_000;

impl Broker {
    /// Every job id that a key of `queue` holds for a worker: its ready
    /// lanes, its delayed set, and the processing lists of `workers` (the
    /// registered ones). A processing list of a worker that is no longer
    /// registered holds nothing anyone will act on, so its ids do not
    /// count. Ids are kept as UUIDs (16 bytes each, whatever the payloads);
    /// anything else in a list is not a job id and is ignored.
    pub async fn ids_held(
        &self,
        queue: &str,
        workers: &[String],
    ) -> Result<HashSet<uuid::Uuid>, BrokerError> {
        let mut conn = self.connection().await?;
        let mut lists = self.keys.ready_lanes(queue);
        lists.extend(
            workers
                .iter()
                .map(|worker| self.keys.processing(queue, worker)),
        );
        let mut held = HashSet::new();
        for list in &lists {
            let mut start = 0;
            loop {
                let page: Vec<String> = conn.lrange(list, start, start + LIST_PAGE - 1).await?;
                held.extend(page.iter().filter_map(|id| id.parse::<uuid::Uuid>().ok()));
                if (page.len() as isize) < LIST_PAGE {
                    break;
                }
                start += LIST_PAGE;
            }
        }
        let delayed = self.keys.delayed(queue);
        let mut cursor = 0_u64;
        loop {
            let (next, members): (u64, Vec<String>) = redis::cmd("ZSCAN")
                .arg(&delayed)
                .arg(cursor)
                .arg("COUNT")
                .arg(LIST_PAGE)
                .query_async::<(u64, Vec<String>)>(&mut conn)
                .await?;
            // ZSCAN answers member, score, member, score, ...
            held.extend(
                members
                    .iter()
                    .step_by(2)
                    .filter_map(|member| delayed_member_id(member).parse::<uuid::Uuid>().ok()),
            );
            if next == 0 {
                break;
            }
            cursor = next;
        }
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

    /// Takes the leader's lease for `holder` for `ttl`, or extends it if
    /// `holder` has it. False if another holder has it.
    pub async fn take_leadership(&self, holder: &str, ttl: Duration) -> Result<bool, BrokerError> {
        let mut conn = self.connection().await?;
        let taken: i64 = Script::new(TAKE_LEASE)
            .key(self.keys.leader())
            .arg(holder)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?;
        Ok(taken == 1)
    }

    /// Gives the leader's lease up, if `holder` has it, so that another
    /// process takes over without waiting for it to expire.
    pub async fn release_leadership(&self, holder: &str) -> Result<(), BrokerError> {
        let mut conn = self.connection().await?;
        let _: i64 = Script::new(RELEASE_LEASE)
            .key(self.keys.leader())
            .arg(holder)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }
}
