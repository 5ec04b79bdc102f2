use std::sync::Arc;

use conveyor::config::DEFAULT_MAX_BODY_BYTES;
use conveyor::group_commit::{GroupCommit, NotWritten};
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
    inserts: Arc<GroupCommit<NewJob, Result<Inserted, String>>>,
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
        let inserts = GroupCommit::new("inserts", MAX_INSERT_BATCH, move |jobs: Vec<NewJob>| {
            let store = writer.clone();
            async move {
                match store.insert_many(&jobs).await {
                    Ok(outcomes) => Ok(outcomes.into_iter().map(Ok).collect()),
                    // Down for one is down for all: answer each at once.
                    Err(err) if err.is_unavailable() => {
                        let detail = err.to_string();
                        Ok(jobs.iter().map(|_| Err(detail.clone())).collect())
                    }
                    Err(_) => Err(jobs),
                }
            }
        });
        AppState {
            store,
            broker,
            settings: Arc::new(settings),
            inserts: Arc::new(inserts),
        }
    }

    /// [`Store::insert`], made in one statement and one transaction with
    /// the other submissions waiting (a group commit). `job` must be valid.
    /// When the batch fails, this job is inserted alone, so the caller sees
    /// its own error and one bad row cannot fail its neighbours.
    pub async fn insert(&self, job: NewJob) -> Result<Inserted, StoreError> {
        job.validate()?;
        match self.inserts.write(job).await {
            Ok(Ok(inserted)) => Ok(inserted),
            Ok(Err(unavailable)) => Err(StoreError::unavailable(unavailable)),
            Err(NotWritten::Failed(job)) => self.store.insert(&job).await,
            Err(NotWritten::Stopped) => Err(StoreError::Interrupted("insert")),
        }
    }
}
