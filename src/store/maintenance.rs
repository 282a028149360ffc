//! Store housekeeping beside the job's life: every process with a store (workers, `worker api`,
//! `worker relay`) runs a [`Maintainer`] that calls [`JobStore::maintain`] every second: the
//! aggregates' deltas are folded (so counts stay fast to read), and the one process holding the
//! short prune lease deletes finished jobs past their retention, in small batches.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{JobStore, Retention};

/// Settings of the [`Maintainer`].
#[derive(Clone, Debug)]
pub struct MaintainerConfig {
    /// Between rounds.
    pub interval: Duration,
    /// What to keep; [`Retention::keep_all`] turns pruning off.
    pub retention: Retention,
}

impl Default for MaintainerConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            retention: Retention::default(),
        }
    }
}

/// Runs [`JobStore::maintain`] every `interval` until shut down.
pub struct Maintainer {
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

impl Maintainer {
    /// Starts maintaining `store`.
    pub fn start(store: Arc<dyn JobStore>, config: MaintainerConfig) -> Self {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let handle = tokio::spawn(async move {
            loop {
                match store.maintain(&config.retention).await {
                    Ok(m) if m.pruned.jobs > 0 => tracing::info!(
                        event = "store.pruned",
                        jobs = m.pruned.jobs,
                        events = m.pruned.events,
                        "job store: pruned finished jobs past their retention"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "job store: maintenance failed; retrying"),
                }
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(config.interval) => {}
                }
            }
        });
        Self { stop, handle }
    }

    /// Stops after the round in progress.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.handle.await;
    }
}
