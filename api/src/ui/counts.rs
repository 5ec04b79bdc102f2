//! Job counts for the lists' live refreshes.

use conveyor::Store;
use conveyor::store::{ListFilter, MatchCount};

/// How long a live refresh may show a count: counting a filter costs up
/// to 250 ms of PostgreSQL; every open tab refreshes every two seconds.
pub const LIVE_COUNT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(10);
/// Filters whose counts are kept.
const COUNTS_KEPT: usize = 256;

/// The latest count of each filter, per process, for live refreshes: a
/// page loaded or reloaded counts afresh (so a page shown after an action
/// is exact), its refreshes reuse that count for a while.
#[derive(Debug, Default)]
pub struct CountCache {
    counts: std::sync::Mutex<std::collections::HashMap<String, (tokio::time::Instant, MatchCount)>>,
}

impl CountCache {
    pub async fn count(
        &self,
        store: &Store,
        filter: &ListFilter,
        live: bool,
    ) -> Result<MatchCount, conveyor::StoreError> {
        let key = format!("{filter:?}");
        if live {
            let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, count)) = counts.get(&key)
                && at.elapsed() < LIVE_COUNT_MAX_AGE
            {
                return Ok(*count);
            }
        }
        let count = store
            .count_matching(filter, conveyor::store::COUNT_EXACT_UP_TO)
            .await?;
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.len() >= COUNTS_KEPT {
            counts.retain(|_, (at, _)| at.elapsed() < LIVE_COUNT_MAX_AGE);
            if counts.len() >= COUNTS_KEPT {
                counts.clear();
            }
        }
        counts.insert(key, (tokio::time::Instant::now(), count));
        Ok(count)
    }
}
