//! The relay: the outbox's other half. A recorded enqueue is written to the job store first
//! (unpublished, with its message), then published and marked published. If the process dies in
//! between, or the publish fails or times out, the row stays unpublished; a relay publishes it
//! once it is older than a grace period. So whatever the store records as enqueued reaches
//! Pub/Sub, at least once.
//!
//! A relay runs in every process that has a store (each worker, `worker api`) and alone as
//! `worker relay`. Relays claim rows with a lease before publishing ([`JobStore::claim_unpublished`],
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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::broker::OutboundMessage;
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

impl Relay {
    /// Starts relaying the outbox of `client`'s store. Fails if the client has no store.
    pub fn start(client: Client, config: RelayConfig) -> Result<Self> {
        let store = client.store().cloned().ok_or_else(|| {
            Error::Config("the relay needs a job store (--store / PUBSUB_JOBS_STORE)".into())
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
    let rows = store
        .claim_unpublished(before, None, config.batch, config.lease)
        .await?;
    publish_rows(client, store, rows).await
}

/// Claims unpublished rows enqueued before `before` (and among `only`, when given), publishes
/// them, marks them published; returns how many were published.
pub(crate) async fn publish_claimed(
    client: &Client,
    store: &Arc<dyn JobStore>,
    before: DateTime<Utc>,
    only: Option<&[Uuid]>,
    limit: u32,
) -> Result<usize> {
    let rows = store
        .claim_unpublished(before, only, limit, RelayConfig::default().lease)
        .await?;
    publish_rows(client, store, rows).await
}

async fn publish_rows(
    client: &Client,
    store: &Arc<dyn JobStore>,
    rows: Vec<crate::store::Unpublished>,
) -> Result<usize> {
    let mut by_topic: HashMap<String, (Vec<OutboundMessage>, Vec<Uuid>)> = HashMap::new();
    let now = Utc::now();
    for row in rows {
        // A job enqueued inside an application's transaction is routed by its envelope here.
        let topic = if row.message.topic.is_empty() {
            match crate::Envelope::decode(&row.message.data, &row.message.attributes) {
                Ok(env) => client.topic_for(&env, now),
                Err(e) => {
                    tracing::error!(job_id = %row.id, error = %e, "relay: an outbox row holds no job envelope; left unpublished");
                    continue;
                }
            }
        } else {
            row.message.topic
        };
        let entry = by_topic.entry(topic).or_default();
        entry.0.push(OutboundMessage {
            data: row.message.data,
            attributes: row.message.attributes,
        });
        entry.1.push(row.id);
    }
    let mut published = 0;
    for (topic, (messages, ids)) in by_topic {
        for (chunk, chunk_ids) in messages.chunks(500).zip(ids.chunks(500)) {
            match client.publish_to(&topic, chunk.to_vec()).await {
                Ok(_) => {
                    store.mark_published(chunk_ids).await?;
                    published += chunk_ids.len();
                    tracing::info!(
                        event = "outbox.published",
                        topic = %topic,
                        jobs = chunk_ids.len(),
                        "relay published jobs left in the outbox"
                    );
                }
                // The claim lapses and the rows are tried again.
                Err(e) => {
                    tracing::warn!(topic = %topic, jobs = chunk_ids.len(), error = %e, "relay: publish failed; the jobs stay in the outbox")
                }
            }
        }
    }
    Ok(published)
}
