use std::sync::Arc;

use conveyor::config::DEFAULT_MAX_BODY_BYTES;
use conveyor::{Broker, Client, Store};

/// What every handler can reach. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Every write: enqueue, cancel, retry.
    pub client: Client,
    /// Reads.
    pub store: Store,
    pub broker: Broker,
    pub settings: Arc<Settings>,
}

/// The API's own settings (see `conveyor::config::ApiConfig`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_body_bytes: usize,
    pub api_token: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            api_token: None,
        }
    }
}

impl AppState {
    pub fn new(store: Store, broker: Broker, settings: Settings) -> Self {
        AppState {
            client: Client::new(store.clone(), broker.clone()),
            store,
            broker,
            settings: Arc::new(settings),
        }
    }
}
