use std::sync::Arc;

use std::time::Duration;

use conveyor::config::{
    DEFAULT_API_DB_ACQUIRE_TIMEOUT_MS, DEFAULT_API_LOCK_TIMEOUT_MS,
    DEFAULT_API_STATEMENT_TIMEOUT_MS, DEFAULT_MAX_BODY_BYTES,
};
use conveyor::store::PoolSettings;
use conveyor::{Broker, Client, Store};

/// A pool of `max_connections` as the API opens them by default: a request
/// waits at most a second for a connection (so an outage is a prompt 503),
/// and PostgreSQL cancels any statement after five.
pub fn api_pool(max_connections: u32) -> PoolSettings {
    PoolSettings {
        max_connections,
        acquire_timeout: Duration::from_millis(DEFAULT_API_DB_ACQUIRE_TIMEOUT_MS),
        statement_timeout: Some(Duration::from_millis(DEFAULT_API_STATEMENT_TIMEOUT_MS)),
        lock_timeout: Some(Duration::from_millis(DEFAULT_API_LOCK_TIMEOUT_MS)),
    }
}

/// What every handler can reach. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Every write: enqueue, cancel, retry.
    pub client: Client,
    /// Reads, on their own pool when the process is set up so
    /// ([`AppState::with_reads`]): slow reads then cannot hold up writes.
    pub store: Store,
    pub broker: Broker,
    pub settings: Arc<Settings>,
    /// The latest `GET /jobs/summary`, shared by its callers.
    pub summaries: Arc<crate::routes::summary::SummaryCache>,
    /// Recent job counts for the dashboard's live refreshes.
    pub ui_counts: Arc<crate::ui::counts::CountCache>,
    /// Failed dashboard logins this minute.
    pub logins: Arc<crate::ui::login::LoginThrottle>,
    /// The queue labels the last `/metrics` scrape reported depths for.
    pub reported_queues: Arc<tokio::sync::Mutex<std::collections::BTreeSet<String>>>,
    /// Spans for enqueued jobs, when trace export is on.
    pub traces: conveyor::trace::Traces,
    /// The worker protocol's claims, heartbeats and reports.
    pub workers: conveyor::remote::RemoteWorkers,
}

/// The API's own settings (see `conveyor::config::ApiConfig`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_body_bytes: usize,
    pub api_token: Option<String>,
    /// `CONVEYOR_WORKER_TOKEN`: when set, the worker protocol's routes
    /// take this token, and only this one (so that job submitters cannot
    /// claim jobs); when unset, they take `api_token` like every route.
    pub worker_token: Option<String>,
    /// `CONVEYOR_UI_READ_ONLY`: the dashboard changes nothing.
    pub ui_read_only: bool,
    pub limits: crate::serve::Limits,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            api_token: None,
            worker_token: None,
            ui_read_only: false,
            limits: crate::serve::Limits::default(),
        }
    }
}

impl AppState {
    pub fn new(store: Store, broker: Broker, settings: Settings) -> Self {
        AppState {
            client: Client::new(store.clone(), broker.clone()),
            store: store.clone(),
            broker: broker.clone(),
            settings: Arc::new(settings),
            summaries: Arc::default(),
            logins: Arc::default(),
            ui_counts: Arc::default(),
            reported_queues: Arc::default(),
            traces: conveyor::trace::Traces::off(),
            workers: conveyor::remote::RemoteWorkers::new(
                store,
                broker,
                conveyor::remote::Settings::default(),
            ),
        }
    }

    /// Remote workers' attempts run with `settings` (lease, retry backoff).
    pub fn with_remote(mut self, settings: conveyor::remote::Settings) -> Self {
        self.workers = conveyor::remote::RemoteWorkers::new(
            self.client.store().clone(),
            self.broker.clone(),
            settings,
        );
        self
    }

    /// Enqueues make spans through `traces`.
    pub fn with_traces(mut self, traces: conveyor::trace::Traces) -> Self {
        self.traces = traces;
        self
    }

    /// Reads go through `reads` instead of the writes' store.
    pub fn with_reads(mut self, reads: Store) -> Self {
        self.store = reads;
        self
    }
}
