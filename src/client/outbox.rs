//! The outbox's publishing side: rows recorded in the job store but not yet published (an
//! enqueuer that died or whose publish failed, a job written inside the application's
//! transaction, a dedup hit on an unpublished row) are claimed, published through the same
//! [`Client::publish_split`] as every enqueue, and marked. The [`Relay`](crate::relay::Relay)
//! calls it in a loop; the client calls it for a dedup hit.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::publish::Outgoing;
use super::Client;
use crate::broker::OutboundMessage;
use crate::error::Result;
use crate::store::{JobStore, Unpublished};

impl Client {
    /// Claims up to `limit` unpublished rows enqueued at or before `before` (and among `only`,
    /// when given) for `lease`, publishes them, and marks the published ones; returns how many
    /// were published. A request that fails leaves its rows to be claimed again once the lease
    /// lapses.
    pub(crate) async fn publish_outbox(
        &self,
        store: &Arc<dyn JobStore>,
        before: DateTime<Utc>,
        only: Option<&[Uuid]>,
        limit: u32,
        lease: Duration,
    ) -> Result<usize> {
        let rows = store.claim_unpublished(before, only, limit, lease).await?;
        self.publish_rows(store, rows).await
    }

    async fn publish_rows(
        &self,
        store: &Arc<dyn JobStore>,
        rows: Vec<Unpublished>,
    ) -> Result<usize> {
        let now = Utc::now();
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            // A row written by an older version inside an application's transaction has no
            // topic: it is routed by its envelope.
            let topic = if row.message.topic.is_empty() {
                match crate::envelope::Envelope::decode(&row.message.data, &row.message.attributes)
                {
                    Ok(env) => self.topic_for(&env, now),
                    Err(e) => {
                        tracing::error!(job_id = %row.id, error = %e, "relay: an outbox row holds no job envelope; left unpublished");
                        continue;
                    }
                }
            } else {
                row.message.topic
            };
            items.push(Outgoing {
                topic,
                message: OutboundMessage {
                    data: row.message.data,
                    attributes: row.message.attributes,
                },
                tag: row.id,
            });
        }
        let mut published = 0;
        for sent in self.publish_split(items).await {
            match sent.result {
                Ok(()) => {
                    store.mark_published(&sent.tags).await?;
                    published += sent.tags.len();
                    tracing::info!(
                        event = "outbox.published",
                        topic = %sent.topic,
                        jobs = sent.tags.len(),
                        "relay published jobs left in the outbox"
                    );
                }
                // The claim lapses and the rows are tried again.
                Err(e) => {
                    tracing::warn!(topic = %sent.topic, jobs = sent.tags.len(), error = %e, "relay: publish failed; the jobs stay in the outbox")
                }
            }
        }
        Ok(published)
    }
}
