//! What this worker knows of its queues' settings: paused or not, and
//! their limits, read from PostgreSQL every [`GATE_REFRESH`] (and at once
//! when a claim is refused for a reason the worker did not expect). Pauses
//! are also checked by every claim, so a stale view can cost a wasted
//! fetch, never a job started in a paused queue.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use conveyor::broker::{GATE_REFRESH, Gate};
use conveyor::store::QueueSettings;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::runtime::Runtime;

/// The gates of this worker's queues.
#[derive(Debug, Default)]
pub struct Gates {
    gates: RwLock<HashMap<String, Gate>>,
    /// Wakes the refresh loop early.
    stale: Notify,
}

impl Gates {
    pub fn of(&self, queue: &str) -> Gate {
        self.gates
            .read()
            .ok()
            .and_then(|gates| gates.get(queue).copied())
            .unwrap_or_default()
    }

    /// Asks for a refresh now (a claim lost for no reason this worker
    /// knows: perhaps its queue was paused).
    pub fn mark_stale(&self) {
        self.stale.notify_one();
    }

    fn replace(&self, queues: &[String], settings: &[QueueSettings]) {
        let mut fresh: HashMap<String, Gate> = queues
            .iter()
            .map(|queue| (queue.clone(), Gate::default()))
            .collect();
        for row in settings {
            fresh.insert(row.name.clone(), Gate::from(row));
        }
        if let Ok(mut gates) = self.gates.write() {
            *gates = fresh;
        }
    }
}

/// Reads the settings of this worker's queues once.
pub async fn refresh(runtime: &Runtime) {
    match runtime
        .store
        .queue_settings_of(&runtime.settings.queues)
        .await
    {
        Ok(settings) => runtime.gates.replace(&runtime.settings.queues, &settings),
        Err(err) if err.is_unavailable() => runtime.outages.postgres.failed("postgres", &err),
        Err(err) => tracing::warn!(error = %err, "could not read queue settings"),
    }
}

/// Refreshes the gates every [`GATE_REFRESH`], or sooner when asked, until
/// `stop`.
pub async fn refresh_loop(runtime: Arc<Runtime>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(GATE_REFRESH) => {}
            () = runtime.gates.stale.notified() => {}
            () = stop.cancelled() => return,
        }
        refresh(&runtime).await;
    }
}
