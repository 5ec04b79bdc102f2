//! Every setting, read once at start-up from the environment or a CLI flag
//! (the flag wins), with its default as a named constant.
//!
//! Each group is a [`clap::Args`] struct that the binaries flatten into their
//! own parsers. Each argument's value name is its environment variable, so a
//! bad value stops start-up with a message that names the variable, e.g.
//! `invalid value 'lots' for '--concurrency <CONVEYOR_CONCURRENCY>'`.
//! Settings that must agree with each other are checked by `validate`, whose
//! errors also name the variables.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, ValueEnum};

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/conveyor";
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const DEFAULT_PREFIX: &str = "conveyor";
pub const DEFAULT_API_ADDR: &str = "0.0.0.0:8000";
pub const DEFAULT_QUEUES: &str = "default";
pub const DEFAULT_CONCURRENCY: u32 = 100;
pub const DEFAULT_LEASE_SECS: u64 = 15;
pub const DEFAULT_HEARTBEAT_SECS: u64 = 3;
pub const DEFAULT_RETRY_BASE_MS: u64 = 1_000;
pub const DEFAULT_RETRY_MAX_MS: u64 = 30_000;
pub const DEFAULT_RETRY_JITTER: f64 = 0.2;
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 25;
pub const DEFAULT_DB_POOL_SIZE: u32 = 16;
/// 2 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
pub const DEFAULT_API_HEADER_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_API_BODY_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_API_REQUEST_TIMEOUT_SECS: u64 = 30;
pub const DEFAULT_API_MAX_CONNECTIONS: usize = 1_024;
pub const DEFAULT_API_MAX_IN_FLIGHT: usize = 512;
pub const DEFAULT_API_SHUTDOWN_GRACE_SECS: u64 = 10;
pub const DEFAULT_API_READ_POOL_SIZE: u32 = 8;
pub const DEFAULT_API_STATEMENT_TIMEOUT_MS: u64 = 5_000;
/// How long an API statement waits for a row lock: long enough for any
/// of the short writes that hold one, short enough that a key held by an
/// application's open transaction (`enqueue_in`) stalls the insert writer
/// for no longer.
pub const DEFAULT_API_LOCK_TIMEOUT_MS: u64 = 1_000;
pub const DEFAULT_API_DB_ACQUIRE_TIMEOUT_MS: u64 = 1_000;

/// Where PostgreSQL and Redis are, and the prefix of every Redis key.
#[derive(Debug, Clone, Args)]
pub struct ConnectionConfig {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", value_name = "DATABASE_URL",
          default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,

    /// Redis connection URL. With `CONVEYOR_REDIS_CLUSTER=true`, the URL
    /// of one cluster node, or of several separated by commas.
    #[arg(long, env = "REDIS_URL", value_name = "REDIS_URL",
          default_value = DEFAULT_REDIS_URL, hide_env_values = true)]
    pub redis_url: String,

    /// `REDIS_URL` names a Redis Cluster (or Valkey cluster) rather than
    /// one server.
    #[arg(long, env = "CONVEYOR_REDIS_CLUSTER", value_name = "CONVEYOR_REDIS_CLUSTER",
          default_value_t = false, action = clap::ArgAction::Set)]
    pub redis_cluster: bool,

    /// Prefix of every Redis key, so several deployments can share one Redis.
    #[arg(long, env = "CONVEYOR_PREFIX", value_name = "CONVEYOR_PREFIX",
          default_value = DEFAULT_PREFIX, value_parser = parse_prefix)]
    pub prefix: String,
}

impl ConnectionConfig {
    /// Where Redis is, as `REDIS_URL` and `CONVEYOR_REDIS_CLUSTER` say.
    pub fn redis(&self) -> Result<crate::broker::RedisAddress, crate::broker::BrokerError> {
        crate::broker::RedisAddress::new(&self.redis_url, self.redis_cluster)
    }
}

/// What the process's metrics may hold.
#[derive(Debug, Clone, Args)]
pub struct MetricsConfig {
    /// Distinct queue names, and task type names, used as metric label
    /// values; further ones are counted under `_other`.
    #[arg(long, env = "CONVEYOR_METRICS_MAX_LABEL_VALUES",
          value_name = "CONVEYOR_METRICS_MAX_LABEL_VALUES",
          default_value_t = crate::metrics::DEFAULT_MAX_LABEL_VALUES,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub metrics_max_label_values: usize,
}

/// How the process logs. `RUST_LOG` (read by the subscriber) sets the levels.
#[derive(Debug, Clone, Args)]
pub struct LogConfig {
    /// `pretty` for people, `json` for log pipelines.
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_name = "LOG_FORMAT",
        default_value = "pretty"
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// The HTTP API's own settings.
#[derive(Debug, Clone, Args)]
pub struct ApiConfig {
    /// Address the API listens on.
    #[arg(long = "addr", env = "CONVEYOR_API_ADDR", value_name = "CONVEYOR_API_ADDR",
          default_value = DEFAULT_API_ADDR)]
    pub addr: SocketAddr,

    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long, env = "CONVEYOR_MAX_BODY_BYTES", value_name = "CONVEYOR_MAX_BODY_BYTES",
          default_value_t = DEFAULT_MAX_BODY_BYTES,
          value_parser = parse_byte_count)]
    pub max_body_bytes: usize,

    /// When set, every route but /health, /ready and /metrics requires
    /// `Authorization: Bearer <token>`.
    #[arg(long, env = "CONVEYOR_API_TOKEN", value_name = "CONVEYOR_API_TOKEN",
          hide_env_values = true, value_parser = parse_token)]
    pub api_token: Option<String>,

    /// The dashboard (`/ui`) shows everything and changes nothing: its
    /// action buttons are hidden and their routes answer 403.
    #[arg(long, env = "CONVEYOR_UI_READ_ONLY", value_name = "CONVEYOR_UI_READ_ONLY",
          default_value_t = false, action = clap::ArgAction::Set)]
    pub ui_read_only: bool,

    /// Time a client has to send a request's headers, in seconds.
    #[arg(long, env = "CONVEYOR_API_HEADER_TIMEOUT_SECS", value_name = "CONVEYOR_API_HEADER_TIMEOUT_SECS",
          default_value_t = DEFAULT_API_HEADER_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub header_timeout_secs: u64,

    /// Longest pause while a client sends a body (408 after), or while a
    /// response waits for the client to read it (closed after), in seconds.
    #[arg(long, env = "CONVEYOR_API_BODY_TIMEOUT_SECS", value_name = "CONVEYOR_API_BODY_TIMEOUT_SECS",
          default_value_t = DEFAULT_API_BODY_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub body_timeout_secs: u64,

    /// Longest a request may take in all, in seconds (503 after).
    #[arg(long, env = "CONVEYOR_API_REQUEST_TIMEOUT_SECS", value_name = "CONVEYOR_API_REQUEST_TIMEOUT_SECS",
          default_value_t = DEFAULT_API_REQUEST_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub request_timeout_secs: u64,

    /// Most open client connections; further ones wait to be accepted.
    #[arg(long, env = "CONVEYOR_API_MAX_CONNECTIONS", value_name = "CONVEYOR_API_MAX_CONNECTIONS",
          default_value_t = DEFAULT_API_MAX_CONNECTIONS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_connections: usize,

    /// Most requests handled at once; further ones get 503 at once.
    #[arg(long, env = "CONVEYOR_API_MAX_IN_FLIGHT", value_name = "CONVEYOR_API_MAX_IN_FLIGHT",
          default_value_t = DEFAULT_API_MAX_IN_FLIGHT,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_in_flight: usize,

    /// On SIGTERM, time requests in flight get to finish, in seconds;
    /// connections still open after it are closed.
    #[arg(long, env = "CONVEYOR_API_SHUTDOWN_GRACE_SECS", value_name = "CONVEYOR_API_SHUTDOWN_GRACE_SECS",
          default_value_t = DEFAULT_API_SHUTDOWN_GRACE_SECS,
          value_parser = clap::value_parser!(u64).range(0..=3_600))]
    pub api_shutdown_grace_secs: u64,

    /// PostgreSQL connections for reads (lists, lookups, counts), apart
    /// from the `CONVEYOR_DB_POOL_SIZE` ones for writes, so slow reads
    /// cannot hold up job creation.
    #[arg(long, env = "CONVEYOR_API_READ_POOL_SIZE", value_name = "CONVEYOR_API_READ_POOL_SIZE",
          default_value_t = DEFAULT_API_READ_POOL_SIZE,
          value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub read_pool_size: u32,

    /// PostgreSQL's `statement_timeout` on the API's connections, in ms.
    #[arg(long, env = "CONVEYOR_API_STATEMENT_TIMEOUT_MS", value_name = "CONVEYOR_API_STATEMENT_TIMEOUT_MS",
          default_value_t = DEFAULT_API_STATEMENT_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub statement_timeout_ms: u64,

    /// PostgreSQL's `lock_timeout` on the API's connections, in ms: how
    /// long a statement waits for a row another transaction holds.
    #[arg(long, env = "CONVEYOR_API_LOCK_TIMEOUT_MS", value_name = "CONVEYOR_API_LOCK_TIMEOUT_MS",
          default_value_t = DEFAULT_API_LOCK_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub lock_timeout_ms: u64,

    /// How long a request waits for a PostgreSQL connection before it is
    /// answered 503, in ms.
    #[arg(long, env = "CONVEYOR_API_DB_ACQUIRE_TIMEOUT_MS", value_name = "CONVEYOR_API_DB_ACQUIRE_TIMEOUT_MS",
          default_value_t = DEFAULT_API_DB_ACQUIRE_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub db_acquire_timeout_ms: u64,
}

/// The worker protocol's settings: the API serves it, to workers in any
/// language. The lease and retry settings read the same variables as
/// `conveyor-worker`'s, so one environment configures both kinds of worker
/// alike.
#[derive(Debug, Clone, Args)]
pub struct RemoteWorkerConfig {
    /// When set, the worker protocol's routes (`/jobs/claim`,
    /// `/jobs/heartbeat`, `/jobs/{id}/complete`, `/fail`, `/release`) take
    /// `Authorization: Bearer <token>` with this token, and not the API
    /// token: job submitters cannot claim jobs. Unset: they take the API
    /// token like every route.
    #[arg(long, env = "CONVEYOR_WORKER_TOKEN", value_name = "CONVEYOR_WORKER_TOKEN",
          hide_env_values = true, value_parser = parse_token)]
    pub worker_token: Option<String>,

    /// How long a job claimed over HTTP is leased without a heartbeat;
    /// a worker silent for this long is presumed dead.
    #[arg(long, env = "CONVEYOR_LEASE_SECS", value_name = "CONVEYOR_LEASE_SECS",
          default_value_t = DEFAULT_LEASE_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub lease_secs: u64,

    /// Backoff of attempts remote workers report failed.
    #[command(flatten)]
    pub retry: RetryConfig,
}

/// The backoff of failed attempts: the same settings for `conveyor-worker`
/// and for the attempts remote workers report to the API.
#[derive(Debug, Clone, Args)]
pub struct RetryConfig {
    /// Delay before the first retry, in milliseconds; doubles each time.
    #[arg(long, env = "CONVEYOR_RETRY_BASE_MS", value_name = "CONVEYOR_RETRY_BASE_MS",
          default_value_t = DEFAULT_RETRY_BASE_MS,
          value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub retry_base_ms: u64,

    /// Longest delay between retries, in milliseconds.
    #[arg(long, env = "CONVEYOR_RETRY_MAX_MS", value_name = "CONVEYOR_RETRY_MAX_MS",
          default_value_t = DEFAULT_RETRY_MAX_MS,
          value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub retry_max_ms: u64,

    /// Random spread of each retry delay, as a fraction (0.2 is ±20 %).
    #[arg(long, env = "CONVEYOR_RETRY_JITTER", value_name = "CONVEYOR_RETRY_JITTER",
          default_value_t = DEFAULT_RETRY_JITTER, value_parser = parse_fraction)]
    pub retry_jitter: f64,
}

impl RetryConfig {
    /// Checks that the base does not exceed the maximum.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.retry_base_ms > self.retry_max_ms {
            return Err(ConfigError(format!(
                "CONVEYOR_RETRY_BASE_MS ({}) must not exceed CONVEYOR_RETRY_MAX_MS ({})",
                self.retry_base_ms, self.retry_max_ms
            )));
        }
        Ok(())
    }
}

impl RemoteWorkerConfig {
    /// Checks the settings that constrain each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.retry.validate()
    }

    /// What remote workers' attempts run with.
    pub fn settings(&self) -> crate::remote::Settings {
        crate::remote::Settings {
            lease: Duration::from_secs(self.lease_secs),
            retry: crate::retry::RetryPolicy::from_config(&self.retry),
            ..crate::remote::Settings::default()
        }
    }
}

/// Connections each process may open to PostgreSQL.
#[derive(Debug, Clone, Args)]
pub struct PoolConfig {
    /// Most PostgreSQL connections this process opens. A job holds one only
    /// while a statement runs, so a few serve many concurrent jobs; keep
    /// (processes × this) under the server's max_connections.
    #[arg(long, env = "CONVEYOR_DB_POOL_SIZE", value_name = "CONVEYOR_DB_POOL_SIZE",
          default_value_t = DEFAULT_DB_POOL_SIZE,
          value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub db_pool_size: u32,
}

/// A worker's settings.
#[derive(Debug, Clone, Args)]
pub struct WorkerConfig {
    /// Queues to take jobs from, comma-separated, in strict priority order.
    #[arg(long, env = "CONVEYOR_QUEUES", value_name = "CONVEYOR_QUEUES",
          default_value = DEFAULT_QUEUES, value_parser = parse_queues)]
    pub queues: QueueList,

    /// Jobs run at once by this process.
    #[arg(long, env = "CONVEYOR_CONCURRENCY", value_name = "CONVEYOR_CONCURRENCY",
          default_value_t = DEFAULT_CONCURRENCY,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,

    /// How long a running job's lease lasts without a heartbeat; a killed
    /// worker's jobs run again about this long after it died.
    #[arg(long, env = "CONVEYOR_LEASE_SECS", value_name = "CONVEYOR_LEASE_SECS",
          default_value_t = DEFAULT_LEASE_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub lease_secs: u64,

    /// How often the worker heartbeats and extends its leases.
    #[arg(long, env = "CONVEYOR_HEARTBEAT_SECS", value_name = "CONVEYOR_HEARTBEAT_SECS",
          default_value_t = DEFAULT_HEARTBEAT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub heartbeat_secs: u64,

    /// Backoff of failed attempts.
    #[command(flatten)]
    pub retry: RetryConfig,

    /// Time running jobs get to finish after SIGTERM before they are put back.
    #[arg(long, env = "CONVEYOR_SHUTDOWN_GRACE_SECS", value_name = "CONVEYOR_SHUTDOWN_GRACE_SECS",
          default_value_t = DEFAULT_SHUTDOWN_GRACE_SECS,
          value_parser = clap::value_parser!(u64).range(0..=3_600))]
    pub shutdown_grace_secs: u64,

    /// How long completed jobs are kept, in seconds, in queues without a
    /// retention of their own (0: forever).
    #[arg(long, env = "CONVEYOR_RETAIN_COMPLETED_SECS", value_name = "CONVEYOR_RETAIN_COMPLETED_SECS",
          default_value_t = crate::maintenance::retention::DEFAULT_RETAIN_COMPLETED_SECS,
          value_parser = clap::value_parser!(i64).range(0..=crate::store::MAX_RETENTION_SECS))]
    pub retain_completed_secs: i64,

    /// How long failed jobs are kept, in seconds (0: forever).
    #[arg(long, env = "CONVEYOR_RETAIN_FAILED_SECS", value_name = "CONVEYOR_RETAIN_FAILED_SECS",
          default_value_t = crate::maintenance::retention::DEFAULT_RETAIN_FAILED_SECS,
          value_parser = clap::value_parser!(i64).range(0..=crate::store::MAX_RETENTION_SECS))]
    pub retain_failed_secs: i64,

    /// How long canceled jobs are kept, in seconds (0: forever).
    #[arg(long, env = "CONVEYOR_RETAIN_CANCELED_SECS", value_name = "CONVEYOR_RETAIN_CANCELED_SECS",
          default_value_t = crate::maintenance::retention::DEFAULT_RETAIN_CANCELED_SECS,
          value_parser = clap::value_parser!(i64).range(0..=crate::store::MAX_RETENTION_SECS))]
    pub retain_canceled_secs: i64,

    /// How often the maintenance leader deletes jobs past their retention.
    #[arg(long, env = "CONVEYOR_RETENTION_INTERVAL_SECS", value_name = "CONVEYOR_RETENTION_INTERVAL_SECS",
          default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub retention_interval_secs: u64,

    /// Where the worker serves `/metrics` and `/health`; unset: no listener.
    #[arg(
        long,
        env = "CONVEYOR_WORKER_METRICS_ADDR",
        value_name = "CONVEYOR_WORKER_METRICS_ADDR"
    )]
    pub metrics_addr: Option<SocketAddr>,
}

impl WorkerConfig {
    /// Checks the settings that constrain each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.heartbeat_secs >= self.lease_secs {
            return Err(ConfigError(format!(
                "CONVEYOR_HEARTBEAT_SECS ({}) must be less than CONVEYOR_LEASE_SECS ({}), \
                 or leases expire between heartbeats",
                self.heartbeat_secs, self.lease_secs
            )));
        }
        self.retry.validate()
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub fn retention(&self) -> crate::maintenance::retention::Retention {
        crate::maintenance::retention::Retention {
            completed_secs: self.retain_completed_secs,
            failed_secs: self.retain_failed_secs,
            canceled_secs: self.retain_canceled_secs,
        }
    }
}

/// Settings that contradict each other; the message names the variables.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Queue names in the order a worker serves them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueList(Vec<String>);

impl QueueList {
    pub fn names(&self) -> &[String] {
        &self.0
    }
}

fn parse_queues(value: &str) -> Result<QueueList, String> {
    let mut queues: Vec<String> = Vec::new();
    for name in value.split(',').map(str::trim) {
        let probe = crate::NewJob {
            queue: name.to_owned(),
            ..crate::NewJob::new("demo", serde_json::json!({}))
        };
        if let Err(invalid) = probe.validate() {
            return Err(format!("queue {:?} {}", name, invalid.message));
        }
        if queues.iter().any(|queue| queue == name) {
            return Err(format!("queue {name:?} is listed twice"));
        }
        queues.push(name.to_owned());
    }
    Ok(QueueList(queues))
}

fn parse_prefix(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(
            "must be 1 to 64 characters of letters, digits, '_', '-', '.' or ':' \
             (no glob characters, no braces)"
                .to_owned(),
        )
    }
}

fn parse_byte_count(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(bytes) if bytes > 0 => Ok(bytes),
        _ => Err("must be a whole number of bytes greater than 0".to_owned()),
    }
}

fn parse_token(value: &str) -> Result<String, String> {
    if value.len() >= 16 && value.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(value.to_owned())
    } else {
        Err("must be at least 16 printable ASCII characters without spaces".to_owned())
    }
}

fn parse_fraction(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(fraction) if (0.0..=1.0).contains(&fraction) => Ok(fraction),
        _ => Err("must be a number between 0 and 1".to_owned()),
    }
}

/// Reads one settings group from the environment alone, for applications
/// that embed Conveyor without a command line of their own.
pub fn from_env<T: Args>() -> Result<T, clap::Error> {
    #[derive(Parser)]
    struct EnvOnly<T: Args> {
        #[command(flatten)]
        inner: T,
    }
    EnvOnly::<T>::try_parse_from(["conveyor"]).map(|parsed| parsed.inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        worker: WorkerConfig,
        #[command(flatten)]
        connection: ConnectionConfig,
        #[command(flatten)]
        api: ApiConfig,
        #[command(flatten)]
        pool: PoolConfig,
        #[command(flatten)]
        metrics: MetricsConfig,
    }

    fn parse(args: &[&str]) -> Result<Cli, String> {
        Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
            .map_err(|err| err.to_string())
    }

    #[test]
    fn defaults_match_the_documented_constants() {
        let cli = parse(&[]).expect("defaults parse");
        assert_eq!(cli.worker.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(cli.worker.queues.names(), ["default"]);
        assert_eq!(cli.worker.retry.retry_jitter, DEFAULT_RETRY_JITTER);
        assert_eq!(cli.api.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(cli.api.addr.to_string(), DEFAULT_API_ADDR);
        assert_eq!(cli.connection.prefix, DEFAULT_PREFIX);
        assert_eq!(cli.worker.validate(), Ok(()));
        assert_eq!(cli.pool.db_pool_size, DEFAULT_DB_POOL_SIZE);
        assert_eq!(cli.worker.metrics_addr, None);
        assert_eq!(
            cli.metrics.metrics_max_label_values,
            crate::metrics::DEFAULT_MAX_LABEL_VALUES
        );
        assert_eq!(cli.api.read_pool_size, DEFAULT_API_READ_POOL_SIZE);
        assert_eq!(cli.api.max_in_flight, DEFAULT_API_MAX_IN_FLIGHT);
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (args, variable) in [
            (vec!["--concurrency", "lots"], "CONVEYOR_CONCURRENCY"),
            (vec!["--concurrency", "0"], "CONVEYOR_CONCURRENCY"),
            (vec!["--queues", "Critical"], "CONVEYOR_QUEUES"),
            (vec!["--queues", "a,a"], "CONVEYOR_QUEUES"),
            (vec!["--retry-jitter", "1.5"], "CONVEYOR_RETRY_JITTER"),
            (vec!["--addr", "nowhere"], "CONVEYOR_API_ADDR"),
            (vec!["--max-body-bytes=-1"], "CONVEYOR_MAX_BODY_BYTES"),
            (vec!["--prefix", "a*b"], "CONVEYOR_PREFIX"),
            (vec!["--lease-secs", "0"], "CONVEYOR_LEASE_SECS"),
            (vec!["--db-pool-size", "0"], "CONVEYOR_DB_POOL_SIZE"),
            (
                vec!["--metrics-addr", "port 9100"],
                "CONVEYOR_WORKER_METRICS_ADDR",
            ),
        ] {
            let err = parse(&args).expect_err("bad value must be refused");
            assert!(err.contains(variable), "{args:?}: {err}");
        }
    }

    #[test]
    fn settings_that_contradict_each_other_are_refused_by_name() {
        let cli = parse(&["--heartbeat-secs", "10", "--lease-secs", "5"]).expect("parses");
        let err = cli.worker.validate().expect_err("heartbeat >= lease");
        assert!(err.0.contains("CONVEYOR_HEARTBEAT_SECS"), "{err}");
        let cli = parse(&["--retry-base-ms", "500", "--retry-max-ms", "100"]).expect("parses");
        assert!(cli.worker.validate().is_err());
    }

    #[test]
    fn several_queues_keep_their_order() {
        let cli = parse(&["--queues", "critical, default,low"]).expect("parses");
        assert_eq!(cli.worker.queues.names(), ["critical", "default", "low"]);
    }
}
