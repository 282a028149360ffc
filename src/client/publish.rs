//! Publish: the step every enqueue ends with, and the relay too. Messages are grouped by topic,
//! split into requests within Pub/Sub's limits (at most 1,000 messages and 9 MB, attributes
//! counted, per request), and sent up to 32 requests at once; topics are created on first use.
//! [`Client::publish_split`] is the one place that happens: prepared jobs
//! ([`Client::publish_prepared`]), a worker's retries and the relay's outbox rows all go through it.

use std::collections::HashMap;

use chrono::Utc;
use futures::StreamExt;

use super::prepare::Prepared;
use super::Client;
use crate::broker::OutboundMessage;
use crate::envelope::Envelope;
use crate::error::Result;

/// Messages per publish request, at most (Pub/Sub's limit is 1,000).
pub(crate) const MAX_BATCH_MESSAGES: usize = 1000;
/// Bytes per publish request, at most (Pub/Sub's limit is 10 MB; the rest is headroom for the
/// request's own framing).
pub(crate) const MAX_BATCH_BYTES: usize = 9_000_000;
/// Publish requests in flight at once.
const PUBLISH_IN_FLIGHT: usize = 32;

/// One message for [`Client::publish_split`]: its topic, the message, and what the caller wants
/// back with the request's outcome (an envelope to log, an outbox row's id).
pub(crate) struct Outgoing<T> {
    pub(crate) topic: String,
    pub(crate) message: OutboundMessage,
    pub(crate) tag: T,
}

/// One publish request's outcome: its topic, the tags of its messages, and whether Pub/Sub
/// accepted them.
pub(crate) struct Sent<T> {
    pub(crate) topic: String,
    pub(crate) tags: Vec<T>,
    pub(crate) result: Result<()>,
}

/// Groups messages by topic, topics in the order they first appear (one topic, the common case,
/// without a map).
fn by_topic<T>(items: Vec<Outgoing<T>>) -> Vec<(String, Vec<(OutboundMessage, T)>)> {
    let one_topic = items.windows(2).all(|w| w[0].topic == w[1].topic);
    if one_topic {
        let Some(topic) = items.first().map(|i| i.topic.clone()) else {
            return Vec::new();
        };
        let msgs = items.into_iter().map(|i| (i.message, i.tag)).collect();
        return vec![(topic, msgs)];
    }
    let mut order: Vec<String> = Vec::new();
    let mut groups: HashMap<String, Vec<(OutboundMessage, T)>> = HashMap::new();
    for item in items {
        let msgs = groups.entry(item.topic).or_insert_with_key(|t| {
            order.push(t.clone());
            Vec::new()
        });
        msgs.push((item.message, item.tag));
    }
    order
        .into_iter()
        .map(|topic| {
            let msgs = groups.remove(&topic).unwrap_or_default();
            (topic, msgs)
        })
        .collect()
}

/// Splits one topic's messages into requests of at most `max_messages` messages and
/// `max_bytes` bytes (a message larger than `max_bytes` goes alone).
fn split<T>(
    msgs: Vec<(OutboundMessage, T)>,
    max_messages: usize,
    max_bytes: usize,
) -> Vec<Vec<(OutboundMessage, T)>> {
    let mut requests = Vec::new();
    let capacity = msgs.len().min(max_messages);
    let mut batch: Vec<(OutboundMessage, T)> = Vec::with_capacity(capacity);
    let mut bytes = 0;
    for (m, tag) in msgs {
        let size = m.wire_bytes();
        if !batch.is_empty() && (batch.len() >= max_messages || bytes + size > max_bytes) {
            requests.push(std::mem::replace(&mut batch, Vec::with_capacity(capacity)));
            bytes = 0;
        }
        bytes += size;
        batch.push((m, tag));
    }
    if !batch.is_empty() {
        requests.push(batch);
    }
    requests
}

impl Client {
    /// Publishes to a topic whose subscription this client manages; recreates both once if the
    /// broker says they are gone (for instance after an emulator restart).
    pub(crate) async fn publish_to(
        &self,
        resource: &str,
        messages: Vec<OutboundMessage>,
    ) -> Result<Vec<String>> {
        self.ensure_resource(resource).await?;
        match self.inner.broker.publish(resource, &messages).await {
            Err(e) if e.is_not_found() && !self.config().create_queues => {
                Err(crate::Error::QueueMissing {
                    queue: self.queue_of(resource),
                    kind: "topic",
                    resource: resource.to_string(),
                })
            }
            Err(e) if e.is_not_found() => {
                tracing::warn!(topic = resource, "topic is gone; creating it again");
                self.forget_resource(resource);
                self.ensure_resource(resource).await?;
                self.inner.broker.publish(resource, &messages).await
            }
            other => other,
        }
    }

    /// Publishes `items` in requests within Pub/Sub's limits (see the module docs); returns
    /// each request's outcome, so that a caller can act on what was accepted (the relay marks
    /// those rows) even when another request failed.
    pub(crate) async fn publish_split<T: Send>(&self, items: Vec<Outgoing<T>>) -> Vec<Sent<T>> {
        let mut requests = Vec::new();
        for (topic, msgs) in by_topic(items) {
            for batch in split(msgs, MAX_BATCH_MESSAGES, MAX_BATCH_BYTES) {
                requests.push((topic.clone(), batch));
            }
        }
        futures::stream::iter(requests)
            .map(|(topic, batch)| async move {
                let (messages, tags): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                #[cfg(feature = "opentelemetry")]
                if self.traced() {
                    return self.publish_traced(topic, messages, tags).await;
                }
                let result = self.publish_to(&topic, messages).await.map(|_| ());
                Sent {
                    topic,
                    tags,
                    result,
                }
            })
            .buffer_unordered(PUBLISH_IN_FLIGHT)
            .collect()
            .await
    }

    /// One publish request inside its `send` span, counted in `messaging.client.sent.messages`.
    #[cfg(feature = "opentelemetry")]
    async fn publish_traced<T>(
        &self,
        topic: String,
        messages: Vec<OutboundMessage>,
        tags: Vec<T>,
    ) -> Sent<T> {
        use tracing::Instrument;
        let queue = self.queue_of(&topic);
        let created = crate::telemetry::created(messages.iter().map(|m| &m.attributes));
        let span = crate::telemetry::send(&queue, &created);
        let n = messages.len();
        let result = self
            .publish_to(&topic, messages)
            .instrument(span)
            .await
            .map(|_| ());
        if result.is_ok() {
            crate::telemetry::sent(&queue, n);
        }
        Sent {
            topic,
            tags,
            result,
        }
    }

    /// Publishes prepared jobs (creating their queues on first use); returns once every one
    /// was accepted, or the first error. Each accepted job is logged (`job.enqueued`).
    pub(crate) async fn publish_prepared(&self, jobs: Vec<Prepared>) -> Result<()> {
        let mut queues: Vec<&str> = jobs.iter().map(|p| p.env.queue_name.as_str()).collect();
        queues.sort_unstable();
        queues.dedup();
        for q in queues {
            self.ensure_queue(q).await?;
        }
        // The envelopes stay here (for the log lines); the requests carry their indexes.
        let mut envelopes = Vec::with_capacity(jobs.len());
        let mut items = Vec::with_capacity(jobs.len());
        for (i, p) in jobs.into_iter().enumerate() {
            envelopes.push(p.env);
            items.push(Outgoing {
                topic: p.message.topic,
                message: OutboundMessage {
                    data: p.message.data,
                    attributes: p.message.attributes,
                },
                tag: i,
            });
        }
        let mut first_error = None;
        for sent in self.publish_split(items).await {
            match sent.result {
                Ok(()) => sent.tags.iter().for_each(|&i| log_enqueued(&envelopes[i])),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Prepares and publishes envelopes without recording them in the job store: a worker's
    /// next execution of a job it records itself, or a morgued job sent back.
    pub(crate) async fn publish_envelopes(&self, envelopes: Vec<Envelope>) -> Result<()> {
        let jobs = self.prepare_all(envelopes, Utc::now())?;
        self.publish_prepared(jobs).await
    }
}

fn log_enqueued(env: &Envelope) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(bytes: usize) -> OutboundMessage {
        OutboundMessage {
            data: vec![b'x'; bytes],
            attributes: HashMap::from([("k".to_string(), "v".to_string())]),
        }
    }

    #[test]
    fn requests_split_by_bytes_and_by_count() {
        // 500 messages of 100 KB: 9 MB requests, never more.
        let msgs = (0..500).map(|i| (msg(100_000), i)).collect();
        let requests = split(msgs, MAX_BATCH_MESSAGES, MAX_BATCH_BYTES);
        assert_eq!(requests.len(), 6);
        for r in &requests {
            let bytes: usize = r.iter().map(|(m, _)| m.wire_bytes()).sum();
            assert!(bytes <= MAX_BATCH_BYTES, "{bytes}");
        }
        let tags: Vec<i32> = requests.into_iter().flatten().map(|(_, t)| t).collect();
        assert_eq!(
            tags,
            (0..500).collect::<Vec<_>>(),
            "every message once, in order"
        );
        // Small messages: 1,000 per request.
        let msgs = (0..2500).map(|i| (msg(10), i)).collect();
        let sizes: Vec<usize> = split(msgs, MAX_BATCH_MESSAGES, MAX_BATCH_BYTES)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        // One message over the request size goes alone.
        let msgs = vec![(msg(10), 0), (msg(9_500_000), 1), (msg(10), 2)];
        let sizes: Vec<usize> = split(msgs, MAX_BATCH_MESSAGES, MAX_BATCH_BYTES)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [1, 1, 1]);
    }
}
