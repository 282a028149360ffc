//! Store housekeeping beside the job's life: every process with a store (workers, `worker api`,
//! `worker relay`) runs a [`Maintainer`] that calls [`HousekeepingStore::maintain`](super::HousekeepingStore::maintain) every second: the
//! aggregates' deltas are folded (so counts stay fast to read), and the one process holding the
//! short prune lease deletes finished jobs past their retention, in small batches. Given a
//! [`ProcessInfo`], it also reports the process every [`HEARTBEAT_INTERVAL`] (the dashboard's
//! list of workers, API servers and relays) and forgets it on shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{JobStore, ProcessInfo, Retention, StoreError, HEARTBEAT_INTERVAL};

/// Settings of the [`Maintainer`].
#[derive(Clone, Debug)]
pub struct MaintainerConfig {
    /// Between rounds.
    pub interval: Duration,
    /// What to keep; [`Retention::keep_all`] turns pruning off.
    pub retention: Retention,
    /// The process to report to the store, if any.
    pub process: Option<ProcessInfo>,
}

impl Default for MaintainerConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            retention: Retention::default(),
            process: None,
        }
    }
}

/// Runs [`HousekeepingStore::maintain`](super::HousekeepingStore::maintain) every `interval` until shut down.
pub struct Maintainer {
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

impl std::fmt::Debug for Maintainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Maintainer").finish_non_exhaustive()
    }
}

impl Maintainer {
    /// Starts maintaining `store`.
    pub fn start(store: Arc<dyn JobStore>, config: MaintainerConfig) -> Self {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let handle = tokio::spawn(async move {
            let mut last_beat: Option<tokio::time::Instant> = None;
            // A store that keeps nothing to fold or prune says so once; it is not asked again.
            let mut maintains = true;
            loop {
                if let Some(p) = &config.process {
                    if last_beat.is_none_or(|t| t.elapsed() >= HEARTBEAT_INTERVAL) {
                        last_beat = Some(tokio::time::Instant::now());
                        if let Err(e) = store.heartbeat(p).await {
                            tracing::debug!(error = %e, "job store: heartbeat failed");
                        }
                    }
                }
                match maintains.then(|| store.maintain(&config.retention)) {
                    None => {}
                    Some(f) => match f.await {
                        Ok(m) if m.pruned.jobs > 0 => tracing::info!(
                            event = "store.pruned",
                            jobs = m.pruned.jobs,
                            events = m.pruned.events,
                            "job store: pruned finished jobs past their retention"
                        ),
                        Ok(_) => {}
                        Err(StoreError::Unsupported { .. }) => {
                            tracing::debug!(
                                "job store: no maintenance to do (unsupported by this store)"
                            );
                            maintains = false;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "job store: maintenance failed; retrying")
                        }
                    },
                }
                tokio::select! {
                    _ = token.cancelled() => {
                        if let Some(p) = &config.process {
                            let _ = store.forget_process(&p.id).await;
                        }
                        return;
                    }
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
