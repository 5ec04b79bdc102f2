use std::sync::Arc;

use conveyor::config::DEFAULT_MAX_BODY_BYTES;
use conveyor::group_commit::StoreGroup;
use conveyor::{Broker, Inserted, NewJob, Store, StoreError};

/// Most single submissions inserted in one statement.
pub const MAX_INSERT_BATCH: usize = 256;

/// What every handler can reach. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub broker: Broker,
    pub settings: Arc<Settings>,
    /// Single submissions arriving together are inserted together.
    inserts: Arc<StoreGroup<NewJob, Inserted>>,
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
        let writer = store.clone();
        let inserts = StoreGroup::new("inserts", MAX_INSERT_BATCH, move |jobs: Vec<NewJob>| {
            let store = writer.clone();
            async move {
                let written = store.insert_many(&jobs).await;
                (jobs, written)
            }
        });
        AppState {
            store,
            broker,
            settings: Arc::new(settings),
            inserts: Arc::new(inserts),
        }
    }

    /// [`Store::insert`], made in one statement with the other submissions
    /// waiting (a group commit; see [`StoreGroup`] for how failures are
    /// answered).
    pub async fn insert(&self, job: NewJob) -> Result<Inserted, StoreError> {
        job.validate()?;
        self.inserts
            .write(job, |job| async move { self.store.insert(&job).await })
            .await
    }
}
