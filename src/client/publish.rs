//! Publishing: the last step of an enqueue. Checks envelopes against Pub/Sub's limits, routes
//! due jobs to the queue's topic and future ones to its `.scheduled` topic, and sends them in
//! batched requests, creating topics on first use.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::Client;
use crate::broker::{OutboundMessage, RETENTION};
use crate::envelope::{Envelope, Wire};
use crate::error::{Error, Result};

/// The largest message body accepted (Pub/Sub's limit is 10 MB per message, attributes included).
pub const MAX_MESSAGE_BYTES: usize = 10_000_000;
const MAX_BATCH_BYTES: usize = 9_000_000;
const MAX_BATCH_MESSAGES: usize = 1000;
/// Publish requests in flight at once for a bulk enqueue.
const PUBLISH_IN_FLIGHT: usize = 32;

impl Client {
    /// Publishes to a topic whose subscription this client manages; recreates both once if the
    /// broker says they are gone (for instance after an emulator restart).
    pub(crate) async fn publish_to(
        &self,
        resource: &str,
        messages: Vec<OutboundMessage>,
    ) -> Result<Vec<String>> {
        self.ensure_resource(resource).await?;
        match self.inner.broker.publish(resource, messages.clone()).await {
            Err(e) if e.is_not_found() => {
                tracing::warn!(topic = resource, "topic is gone; creating it again");
                self.forget_resource(resource);
                self.ensure_resource(resource).await?;
                self.inner.broker.publish(resource, messages).await
            }
            other => other,
        }
    }

    /// Checks an envelope against the queue-name rules and Pub/Sub's limits; returns its body.
    pub(super) fn check_envelope(&self, env: &Envelope, now: DateTime<Utc>) -> Result<Vec<u8>> {
        let data = env.to_body();
        self.check_body(env, &data, now)?;
        Ok(data)
    }

    /// Checks an envelope whose body is already serialized.
    pub(super) fn check_body(&self, env: &Envelope, data: &[u8], now: DateTime<Utc>) -> Result<()> {
        self.validate_queue(&env.queue_name)?;
        if data.len() > MAX_MESSAGE_BYTES {
            return Err(Error::PayloadTooLarge {
                job_class: env.job_class.clone(),
                queue: env.queue_name.clone(),
                size: data.len(),
                limit: MAX_MESSAGE_BYTES,
            });
        }
        if let Some(at) = env.scheduled_at {
            let delay = (at - now).to_std().unwrap_or_default();
            if delay >= RETENTION {
                return Err(Error::DelayTooLong {
                    job_class: env.job_class.clone(),
                    queue: env.queue_name.clone(),
                    delay,
                });
            }
        }
        Ok(())
    }
    /// Publishes envelopes: due ones to their queue, future ones to the queue's scheduled topic,
    /// in batches. Returns once every message was accepted. Records nothing in the job store
    /// (the worker uses it for retries); [`Client::submit`] is the recorded way in.
    pub async fn enqueue_envelopes(&self, envelopes: Vec<Envelope>) -> Result<()> {
        let bodies = envelopes.iter().map(Envelope::to_body).collect();
        self.publish_envelopes(envelopes, bodies).await
    }

    /// Where an envelope is published: its queue's topic when due, else the queue's scheduled
    /// topic. The ActiveJob wire waits the adapters' way: in the queue, with a timestamp.
    pub(crate) fn topic_for(&self, env: &Envelope, now: DateTime<Utc>) -> String {
        match env.scheduled_at {
            Some(at) if at > now && env.wire == Wire::PubsubJobs => {
                self.scheduled_resource_name(&env.queue_name)
            }
            _ => self.resource_name(&env.queue_name),
        }
    }

    /// [`Client::enqueue_envelopes`] with the bodies already serialized (`bodies[i]` is
    /// `envelopes[i]`'s; the envelopes' arguments are not looked at again).
    pub(super) async fn publish_envelopes(
        &self,
        envelopes: Vec<Envelope>,
        bodies: Vec<Vec<u8>>,
    ) -> Result<()> {
        let now = Utc::now();
        let mut by_topic: HashMap<String, Vec<(OutboundMessage, usize)>> = HashMap::new();
        for (index, (env, data)) in envelopes.iter().zip(bodies).enumerate() {
            self.check_body(env, &data, now)?;
            let topic = self.topic_for(env, now);
            let msg = OutboundMessage {
                data,
                attributes: env.attributes(),
            };
            by_topic.entry(topic).or_default().push((msg, index));
        }
        let mut queues: Vec<&str> = envelopes.iter().map(|e| e.queue_name.as_str()).collect();
        queues.sort_unstable();
        queues.dedup();
        for q in queues {
            self.ensure_queue(q).await?;
        }
        // Split into requests within Pub/Sub's limits, then send up to PUBLISH_IN_FLIGHT at once.
        let mut requests: Vec<(String, Vec<OutboundMessage>, Vec<usize>)> = Vec::new();
        for (topic, msgs) in by_topic {
            let mut batch: Vec<OutboundMessage> = Vec::new();
            let mut batch_envs: Vec<usize> = Vec::new();
            let mut bytes = 0;
            for (m, env) in msgs {
                if !batch.is_empty()
                    && (batch.len() >= MAX_BATCH_MESSAGES || bytes + m.data.len() > MAX_BATCH_BYTES)
                {
                    requests.push((
                        topic.clone(),
                        std::mem::take(&mut batch),
                        std::mem::take(&mut batch_envs),
                    ));
                    bytes = 0;
                }
                bytes += m.data.len();
                batch.push(m);
                batch_envs.push(env);
            }
            if !batch.is_empty() {
                requests.push((topic, batch, batch_envs));
            }
        }
        use futures::{StreamExt, TryStreamExt};
        futures::stream::iter(requests)
            .map(|(topic, batch, indices)| {
                let envelopes = &envelopes;
                async move { self.publish_batch(&topic, batch, envelopes, indices).await }
            })
            .buffer_unordered(PUBLISH_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn publish_batch(
        &self,
        topic: &str,
        batch: Vec<OutboundMessage>,
        envelopes: &[Envelope],
        indices: Vec<usize>,
    ) -> Result<()> {
        self.publish_to(topic, batch).await?;
        for env in indices.iter().map(|i| &envelopes[*i]) {
            tracing::info!(
                event = "job.enqueued",
                job_id = %env.job_id,
                job_class = %env.job_class,
                queue = %env.queue_name,
                attempt = env.attempt(),
                scheduled_at = env.scheduled_at.map(|t| t.to_rfc3339()),
                "job enqueued"
            );
        }
        Ok(())
    }
}
