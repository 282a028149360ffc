//! The relay: the outbox's other half. A recorded enqueue is written to the job store first
//! (unpublished, with its message), then published and marked published. If the process dies in
//! between, or the publish fails or times out, the row stays unpublished; a relay publishes it
//! once it is older than a grace period. So whatever the store records as enqueued reaches
//! Pub/Sub, at least once.
//!
//! A relay runs in every process that has a store (each worker, `worker api`) and alone as
//! `worker relay`. Relays claim rows with a lease before publishing ([`OutboxStore::claim_unpublished`](crate::store::OutboxStore::claim_unpublished),
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL), so several relays do not publish the same row in the
//! normal case, and a relay killed mid-claim loses nothing: the lease lapses and another claims
//! the row. A publish whose outcome is unknown never removes the row; it is published again
//! (a duplicate delivery, which at-least-once allows).
//!
//! ```no_run
//! # async fn demo() -> pubsub_jobs::Result<()> {
//! use pubsub_jobs::relay::{Relay, RelayConfig};
//! # let client: pubsub_jobs::Client = todo!();
//! let relay = Relay::start(client, RelayConfig::default())?;
//! // ... until shutdown:
//! relay.shutdown().await;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::store::JobStore;
use crate::Client;

/// How a relay runs.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// How long a row may stay unpublished before the relay publishes it: its enqueuer's own
    /// publish normally marks it well within (default 5 s).
    pub grace: Duration,
    /// How often the relay looks (default 1 s).
    pub interval: Duration,
    /// Rows claimed per round (default 500).
    pub batch: u32,
    /// How long a claim holds off other relays (default 30 s).
    pub lease: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(5),
            interval: Duration::from_secs(1),
            batch: 500,
            lease: Duration::from_secs(30),
        }
    }
}

/// A running relay; stops with [`Relay::shutdown`].
pub struct Relay {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").finish_non_exhaustive()
    }
}

impl Relay {
    /// Starts relaying the outbox of `client`'s store. Fails if the client has no store.
    pub fn start(client: Client, config: RelayConfig) -> Result<Self> {
        let store = client
            .store()
            .cloned()
            .ok_or_else(|| Error::StoreRequired {
                what: "the relay".into(),
            })?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(client, store, config, stop.clone()));
        Ok(Self { stop, task })
    }

    /// Stops after the round in progress.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn run(
    client: Client,
    store: Arc<dyn JobStore>,
    config: RelayConfig,
    stop: CancellationToken,
) {
    tracing::info!(
        grace_s = config.grace.as_secs_f64(),
        "relay started: publishing jobs left unpublished in the outbox"
    );
    loop {
        let before = Utc::now() - chrono::Duration::from_std(config.grace).unwrap_or_default();
        let published = tokio::select! {
            r = relay_round(&client, &store, before, &config) => r,
            _ = stop.cancelled() => break,
        };
        match published {
            // A full batch: more may be waiting, go again at once.
            Ok(n) if n >= config.batch as usize => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "relay: could not read the outbox; retrying"),
        }
        // PostgreSQL wakes the relay when a transaction enqueues; otherwise it polls.
        tokio::select! {
            _ = store.wait_for_outbox(config.interval) => {}
            _ = stop.cancelled() => break,
        }
    }
}

async fn relay_round(
    client: &Client,
    store: &Arc<dyn JobStore>,
    before: DateTime<Utc>,
    config: &RelayConfig,
) -> Result<usize> {
    client
        .publish_outbox(store, before, None, config.batch, config.lease)
        .await
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;
    use crate::broker::MemoryBroker;
    use crate::envelope::Envelope;
    use crate::{ClientConfig, Job, JobContext, JobError};
    use uuid::Uuid;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Big {
        pad: String,
    }

    impl Job for Big {
        const NAME: &'static str = "Big";
        async fn perform(&self, _ctx: &JobContext) -> std::result::Result<(), JobError> {
            Ok(())
        }
    }

    /// The relay's requests stay within Pub/Sub's limits (which the memory broker enforces):
    /// 500 rows of 100 KB each, written in the application's transaction, are all published
    /// and marked, each once.
    #[tokio::test]
    async fn large_rows_are_published_in_requests_pub_sub_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("app.db").display());
        let store = crate::store::connect(&url).await.unwrap();
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let broker = MemoryBroker::new();
        let client = Client::with_memory_broker(broker.clone(), ClientConfig::default())
            .with_store(store.clone());
        client.ensure_queue("big").await.unwrap();
        let pad = "x".repeat(100_000);
        let jobs = (0..500).map(|_| Big { pad: pad.clone() });
        let mut tx = pool.begin().await.unwrap();
        let ids: std::collections::HashSet<Uuid> = client
            .perform_all_later_in_on("big", &mut tx, jobs)
            .await
            .unwrap()
            .into_iter()
            .collect();
        tx.commit().await.unwrap();
        let published = client
            .publish_outbox(&store, Utc::now(), None, 500, RelayConfig::default().lease)
            .await
            .unwrap();
        assert_eq!(published, 500);
        let pending = broker.pending("big");
        assert_eq!(pending.len(), 500, "each once");
        let got: std::collections::HashSet<Uuid> = pending
            .iter()
            .map(|(data, attrs)| Envelope::decode(data, attrs).unwrap().job_id)
            .collect();
        assert_eq!(got, ids);
        for id in ids {
            assert!(store.get(id).await.unwrap().unwrap().published_at.is_some());
        }
    }
}
