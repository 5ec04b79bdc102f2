//! Queues and workers: `GET /queues`, `PATCH /queues/{queue}`, pause and
//! resume.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A queue's settings. A queue never configured has the defaults: not
/// paused, no limits, the global retention.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueueSettingsView {
    pub name: String,
    /// No worker starts a job of a paused queue; it still accepts jobs.
    pub paused: bool,
    /// Most jobs running at once across every worker; null: no limit.
    pub concurrency_limit: Option<i32>,
    /// Most jobs started per second across every worker; null: no limit.
    pub rate_limit: Option<f64>,
    /// Starts the rate limit lets through at once; null: the rate, rounded up.
    pub rate_burst: Option<i32>,
    /// Seconds completed jobs are kept; 0 forever; null: the global setting
    /// (`CONVEYOR_RETAIN_COMPLETED_SECS`, default 7 days).
    pub retain_completed_secs: Option<i64>,
    /// Seconds failed jobs are kept; null: `CONVEYOR_RETAIN_FAILED_SECS`
    /// (default 30 days).
    pub retain_failed_secs: Option<i64>,
    /// Seconds canceled jobs are kept; null: `CONVEYOR_RETAIN_CANCELED_SECS`
    /// (default 7 days).
    pub retain_canceled_secs: Option<i64>,
    /// When the settings last changed; null if never configured.
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// One queue: its settings and its backlog.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueueView {
    pub name: String,
    pub settings: QueueSettingsView,
    /// Ids waiting in each priority lane, by priority ("0" to "9").
    #[schema(value_type = BTreeMap<String, u64>)]
    pub ready: BTreeMap<i16, u64>,
    pub ready_total: u64,
    /// Ids due later (scheduled jobs and retries).
    pub delayed: u64,
    /// Ids taken by workers and not yet acknowledged (Redis).
    pub in_flight: u64,
    /// Jobs in status `running` (PostgreSQL).
    pub running: i64,
    /// Seconds the job next in line has been due (the queue's latency);
    /// null when nothing is ready.
    pub oldest_due_secs: Option<f64>,
    /// Registered workers that serve the queue (0: its jobs wait for one).
    pub workers: u64,
}

/// A live worker, from its latest heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkerView {
    pub id: String,
    pub host: Option<String>,
    pub pid: Option<u32>,
    pub queues: Vec<String>,
    pub concurrency: Option<u32>,
    /// Jobs it was running at its last heartbeat.
    pub running: Option<u64>,
    pub started_at: Option<String>,
    /// RFC 3339.
    pub last_heartbeat: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Queues {
    pub queues: Vec<QueueView>,
    pub workers: Vec<WorkerView>,
}

/// `PATCH /queues/{queue}`: each field given is changed, `null` puts it
/// back to its default, a field left out is kept. Unknown fields are
/// refused. Here, a field is `None` when left out and `Some(None)` when
/// set to null.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueuePatch {
    /// true to pause, false (or null) to resume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// 1..=1000000, or null for no limit.
    #[schema(value_type = Option<i32>, nullable, minimum = 1, maximum = 1000000)]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub concurrency_limit: Option<Option<i32>>,
    /// Jobs per second, from one a day (1/86400) to 1000000, or null for
    /// no limit.
    #[schema(value_type = Option<f64>, nullable, minimum = 0.0000116, maximum = 1000000)]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub rate_limit: Option<Option<f64>>,
    /// 1..=1000000, or null for the rate rounded up.
    #[schema(value_type = Option<i32>, nullable, minimum = 1, maximum = 1000000)]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub rate_burst: Option<Option<i32>>,
    /// Seconds, 0 (forever) to 3153600000, or null for the global setting.
    #[schema(value_type = Option<i64>, nullable, minimum = 0, maximum = 3153600000_i64)]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub retain_completed_secs: Option<Option<i64>>,
    #[schema(value_type = Option<i64>, nullable, minimum = 0, maximum = 3153600000_i64)]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub retain_failed_secs: Option<Option<i64>>,
    #[schema(value_type = Option<i64>, nullable, minimum = 0, maximum = 3153600000_i64)]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub retain_canceled_secs: Option<Option<i64>>,
}

/// A field that is present: `Some(None)` for null, `Some(Some(v))` for a
/// value (a field left out is `None`, by `default`). Plain serde reads null
/// as left out, and that difference is the point of a patch.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_tells_null_from_left_out_both_ways() {
        let patch = QueuePatch {
            concurrency_limit: Some(None),
            rate_burst: Some(Some(5)),
            ..QueuePatch::default()
        };
        let json = serde_json::to_value(&patch).expect("encode");
        assert_eq!(
            json,
            serde_json::json!({"concurrency_limit": null, "rate_burst": 5})
        );
        let back: QueuePatch = serde_json::from_value(json).expect("decode");
        assert_eq!(back.concurrency_limit, Some(None));
        assert_eq!(back.rate_burst, Some(Some(5)));
        assert_eq!(back.rate_limit, None);
    }
}
