//! Prometheus metrics: every name in one place, and the process-wide
//! recorder.
//!
//! Names start with `conveyor_` and carry their unit. Labels have bounded
//! cardinality: queue, task type, outcome, lane, HTTP route template, method
//! and status — never a job id or worker id (the scrape target tells workers
//! apart). Queue and type names are chosen by clients, so each process
//! keeps at most [`max_label_values`] of each as label values and counts
//! the rest under [`OTHER_LABEL`]: no client can grow its memory, or the
//! scrape, without bound.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, OnceLock, RwLock};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Jobs accepted by the API (new rows), by `queue`, `type`.
pub const JOBS_ENQUEUED: &str = "conveyor_jobs_enqueued_total";
/// Attempts that ended, by `queue`, `type`, `outcome` (completed, failed,
/// retried, canceled, released, fenced) and deliveries skipped (`skipped`).
pub const JOBS_FINISHED: &str = "conveyor_jobs_finished_total";
/// Handler run time per attempt, by `queue`, `type`.
pub const ATTEMPT_DURATION: &str = "conveyor_job_attempt_duration_seconds";
/// Time from `run_at` to the claim, by `queue`, `type`.
pub const WAIT_TIME: &str = "conveyor_job_wait_seconds";
/// Jobs this worker process is running now.
pub const JOBS_RUNNING: &str = "conveyor_worker_jobs_running";
/// Ids held in Redis, by `queue` and `lane` (`ready`, `delayed`,
/// `processing`) and, for ready lanes, `priority`.
pub const QUEUE_DEPTH: &str = "conveyor_queue_depth";
/// Queues in Redis's set of known queues (idle ones leave it).
pub const QUEUES_KNOWN: &str = "conveyor_queues_known";
/// Jobs the maintenance services recovered, by `reason` (`lease_expired`: the
/// lease rescuer; `dead_worker`: dead-worker recovery). The name is kept for
/// dashboards that already use it.
pub const JANITOR_RECOVERIES: &str = "conveyor_janitor_recoveries_total";
/// Jobs the reconciler published because Redis did not hold them.
pub const RECONCILER_REPUBLISHED: &str = "conveyor_reconciler_republished_total";
/// Finished jobs deleted by retention.
pub const JOBS_PRUNED: &str = "conveyor_jobs_pruned_total";
/// Starts a queue's concurrency or rate limit held back, by `queue` and
/// `limit` (`concurrency`, `rate`).
pub const QUEUE_THROTTLED: &str = "conveyor_queue_throttled_total";
/// Items written per statement by a group commit, by `writer`
/// (`completions` and `acks` in workers, `inserts` in the API).
pub const GROUP_COMMIT_BATCH: &str = "conveyor_group_commit_batch_size";
/// HTTP requests, by `route` (the template, e.g. `/jobs/{id}`), `method`, `status`.
pub const HTTP_REQUESTS: &str = "conveyor_http_requests_total";
/// HTTP request latency, by `route`, `method`.
pub const HTTP_DURATION: &str = "conveyor_http_request_duration_seconds";

/// How many distinct queue names, and task type names, a process uses as
/// label values by default (`CONVEYOR_METRICS_MAX_LABEL_VALUES`).
pub const DEFAULT_MAX_LABEL_VALUES: usize = 100;
/// The label value that stands for every queue or type past the cap.
pub const OTHER_LABEL: &str = "_other";

/// Label values in use for one label, up to a cap.
#[derive(Debug)]
pub struct LabelValues {
    max: AtomicUsize,
    seen: RwLock<HashSet<String>>,
}

impl LabelValues {
    pub fn new(max: usize) -> Self {
        LabelValues {
            max: AtomicUsize::new(max),
            seen: RwLock::new(HashSet::new()),
        }
    }

    /// Makes `value` a label of its own whatever the cap: for names
    /// operators chose (the queues workers serve), so that names clients
    /// sent first cannot push them into [`OTHER_LABEL`].
    pub fn reserve(&self, value: &str) {
        if let Ok(mut seen) = self.seen.write() {
            seen.insert(value.to_owned());
        }
    }

    /// `value` itself while it is one of the first `max` values seen (or
    /// reserved), [`OTHER_LABEL`] after.
    pub fn label(&self, value: &str) -> String {
        if self.seen.read().is_ok_and(|seen| seen.contains(value)) {
            return value.to_owned();
        }
        let Ok(mut seen) = self.seen.write() else {
            return OTHER_LABEL.to_owned();
        };
        if seen.contains(value) || seen.len() < self.max.load(Ordering::Relaxed) {
            seen.insert(value.to_owned());
            value.to_owned()
        } else {
            OTHER_LABEL.to_owned()
        }
    }
}

static QUEUE_LABELS: LazyLock<LabelValues> =
    LazyLock::new(|| LabelValues::new(DEFAULT_MAX_LABEL_VALUES));
static TYPE_LABELS: LazyLock<LabelValues> =
    LazyLock::new(|| LabelValues::new(DEFAULT_MAX_LABEL_VALUES));

/// Sets the cap on distinct queue and type label values (at start-up).
pub fn set_max_label_values(max: usize) {
    QUEUE_LABELS.max.store(max, Ordering::Relaxed);
    TYPE_LABELS.max.store(max, Ordering::Relaxed);
}

/// The cap on distinct queue and type label values.
pub fn max_label_values() -> usize {
    QUEUE_LABELS.max.load(Ordering::Relaxed)
}

/// Gives each of `queues` (chosen by an operator) a label of its own.
pub fn reserve_queue_labels(queues: &[String]) {
    for queue in queues {
        QUEUE_LABELS.reserve(queue);
    }
}

/// The label value for `queue`.
pub fn queue_label(queue: &str) -> String {
    QUEUE_LABELS.label(queue)
}

fn type_label(task_type: &str) -> String {
    TYPE_LABELS.label(task_type)
}

/// Histogram buckets, in seconds: from a millisecond to ten minutes.
/// Batch-size buckets, in jobs.
const SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

const BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    600.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder on first call; returns the handle that
/// renders the Prometheus text. Safe to call repeatedly (tests do).
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), BUCKETS)
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full(GROUP_COMMIT_BATCH.to_owned()),
                        SIZE_BUCKETS,
                    )
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            match builder.install_recorder() {
                Ok(handle) => {
                    describe();
                    handle
                }
                // Another recorder was installed first (an embedding
                // application's): render an empty registry of our own.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(JOBS_ENQUEUED, "Jobs accepted by the API");
    describe_counter!(
        JOBS_FINISHED,
        "Attempts ended or deliveries skipped, by outcome"
    );
    describe_histogram!(
        ATTEMPT_DURATION,
        Unit::Seconds,
        "Handler run time per attempt"
    );
    describe_histogram!(WAIT_TIME, Unit::Seconds, "Time from run_at to claim");
    describe_gauge!(JOBS_RUNNING, "Jobs this worker is running");
    describe_gauge!(QUEUE_DEPTH, "Ids held in Redis per queue and lane");
    describe_counter!(
        JANITOR_RECOVERIES,
        "Jobs recovered by the lease rescuer or dead-worker recovery"
    );
    describe_counter!(RECONCILER_REPUBLISHED, "Jobs republished by the reconciler");
    describe_counter!(JOBS_PRUNED, "Finished jobs deleted by retention");
    describe_counter!(
        QUEUE_THROTTLED,
        "Fetches a queue's concurrency or rate limit held back"
    );
    describe_histogram!(
        GROUP_COMMIT_BATCH,
        Unit::Count,
        "Items written per statement by a group commit"
    );
    describe_counter!(HTTP_REQUESTS, "HTTP requests by route, method and status");
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "HTTP request latency");
}

/// Counts an accepted job.
pub fn job_enqueued(queue: &str, task_type: &str) {
    metrics::counter!(JOBS_ENQUEUED, "queue" => queue_label(queue), "type" => type_label(task_type))
        .increment(1);
}

/// Counts an ended attempt or a skipped delivery.
pub fn job_finished(queue: &str, task_type: &str, outcome: &'static str) {
    metrics::counter!(JOBS_FINISHED, "queue" => queue_label(queue), "type" => type_label(task_type), "outcome" => outcome)
        .increment(1);
}

/// Records how long an attempt's handler ran.
pub fn attempt_duration(queue: &str, task_type: &str, duration: Duration) {
    metrics::histogram!(ATTEMPT_DURATION, "queue" => queue_label(queue), "type" => type_label(task_type))
        .record(duration.as_secs_f64());
}

/// Records how long a job waited past its `run_at` before a claim.
pub fn wait_time(queue: &str, task_type: &str, waited: Duration) {
    metrics::histogram!(WAIT_TIME, "queue" => queue_label(queue), "type" => type_label(task_type))
        .record(waited.as_secs_f64());
}

/// Sets the number of jobs this worker runs.
pub fn jobs_running(count: usize) {
    metrics::gauge!(JOBS_RUNNING).set(count as f64);
}

/// Sets one lane's depth; `queue` is a label value ([`queue_label`]),
/// whose depths the caller has summed when several queues share it.
pub fn queue_depth(queue: &str, lane: &'static str, priority: Option<i16>, depth: u64) {
    match priority {
        Some(priority) => metrics::gauge!(QUEUE_DEPTH, "queue" => queue.to_owned(), "lane" => lane,
            "priority" => priority.to_string())
        .set(depth as f64),
        None => metrics::gauge!(QUEUE_DEPTH, "queue" => queue.to_owned(), "lane" => lane)
            .set(depth as f64),
    }
}

/// Sets the number of queues Redis knows of.
pub fn queues_known(count: usize) {
    metrics::gauge!(QUEUES_KNOWN).set(count as f64);
}

/// Counts finished jobs deleted by retention.
pub fn jobs_pruned(count: u64) {
    metrics::counter!(JOBS_PRUNED).increment(count);
}

/// Counts a fetch that `queue`'s `limit` held back.
pub fn queue_throttled(queue: &str, limit: &'static str) {
    metrics::counter!(QUEUE_THROTTLED, "queue" => queue_label(queue), "limit" => limit)
        .increment(1);
}

/// Counts janitor recoveries.
pub fn janitor_recovered(reason: &'static str, count: usize) {
    metrics::counter!(JANITOR_RECOVERIES, "reason" => reason).increment(count as u64);
}

/// Counts reconciler republishes.
pub fn reconciler_republished(count: usize) {
    metrics::counter!(RECONCILER_REPUBLISHED).increment(count as u64);
}

/// Records how many items one group-commit statement wrote.
pub fn group_commit_batch(writer: &'static str, size: usize) {
    metrics::histogram!(GROUP_COMMIT_BATCH, "writer" => writer).record(size as f64);
}

/// Records one HTTP request.
pub fn http_request(route: &str, method: &str, status: u16, duration: Duration) {
    metrics::counter!(HTTP_REQUESTS, "route" => route.to_owned(), "method" => method.to_owned(),
        "status" => status.to_string())
    .increment(1);
    metrics::histogram!(HTTP_DURATION, "route" => route.to_owned(), "method" => method.to_owned())
        .record(duration.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_past_the_cap_are_folded_into_one() {
        let labels = LabelValues::new(2);
        assert_eq!(labels.label("a"), "a");
        assert_eq!(labels.label("b"), "b");
        assert_eq!(labels.label("c"), OTHER_LABEL);
        assert_eq!(labels.label("a"), "a", "a value in use keeps its label");
        assert_eq!(labels.label("d"), OTHER_LABEL);
        labels.reserve("served");
        assert_eq!(labels.label("served"), "served", "reserved past the cap");
    }
}
