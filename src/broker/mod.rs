//! The broker: the one small trait between pubsub-jobs and Pub/Sub.
//!
//! Everything the client and the worker do to Pub/Sub goes through [`Broker`]. Two
//! implementations exist: [`PubSubBroker`] (Google Cloud Pub/Sub or its emulator, over gRPC) and
//! [`MemoryBroker`] (in-process, for unit tests and as a testing helper; it proves nothing about
//! Pub/Sub itself).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;

#[cfg(any(test, feature = "conformance"))]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
mod memory;
mod pubsub;
mod pubsub_publish;
mod pubsub_pull;
#[cfg(test)]
pub(crate) mod recording;

pub use memory::MemoryBroker;
pub use pubsub::{PubSubBroker, EMULATOR_PROJECT, RETENTION};
pub use pubsub_pull::MAX_RESPONSE_BYTES;

/// A message to publish.
#[derive(Clone, Debug, Default)]
pub struct OutboundMessage {
    /// The body.
    pub data: Vec<u8>,
    /// Small string attributes.
    pub attributes: HashMap<String, String>,
}

impl OutboundMessage {
    /// The bytes Pub/Sub counts of this message against its limits (see [`message_bytes`]).
    pub fn wire_bytes(&self) -> usize {
        message_bytes(&self.data, &self.attributes)
    }
}

/// The bytes Pub/Sub counts of a message against its limits: the body, and each attribute's
/// key and value.
pub fn message_bytes(data: &[u8], attributes: &HashMap<String, String>) -> usize {
    data.len()
        + attributes
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

/// A message received from a subscription, leased until acked, released or expired.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The handle for ack and modify_ack_deadline.
    pub ack_id: String,
    /// The broker's message id.
    pub message_id: String,
    /// The body.
    pub data: Vec<u8>,
    /// The attributes.
    pub attributes: HashMap<String, String>,
}

/// Options for one streaming subscription.
#[derive(Clone, Debug)]
pub struct StreamOptions {
    /// The lease given to each delivered message.
    pub ack_deadline: Duration,
    /// Server-side flow control: at most this many unacked messages on the stream (ignored by
    /// the emulator; the worker bounds itself too).
    pub max_outstanding: i64,
}

/// A stream of deliveries from one subscription.
#[async_trait]
pub trait DeliveryStream: Send {
    /// The next delivery; `None` when the stream ended (closed, or the subscription is gone).
    async fn next(&mut self) -> Option<Delivery>;
    /// Stops the stream and releases every message it received but did not hand out.
    async fn close(self: Box<Self>);
}

/// A subscription's dead-letter policy: a message delivered `max_delivery_attempts` times
/// without an ack is moved by Pub/Sub to `topic`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The topic (its short name, prefix included).
    pub topic: String,
    /// Deliveries before a message is moved: 5 to 100 on Pub/Sub.
    pub max_delivery_attempts: u32,
}

/// A subscription's settings, as `worker queues verify` checks them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriptionSettings {
    /// The topic it reads (its short name; `_deleted-topic_` when the topic was deleted).
    pub topic: String,
    /// How long unacked messages are kept (`None`: the service's default, 7 days).
    pub retention: Option<Duration>,
    /// After how long without activity it is deleted (`None`: never).
    pub expires_after: Option<Duration>,
    /// Its dead-letter topic (short name) and maximum of delivery attempts, if any.
    pub dead_letter: Option<(String, u32)>,
}

/// What pubsub-jobs needs from a message broker. Every method is safe to call concurrently from
/// many tasks and many processes.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Creates a topic. A topic that already exists is success (several processes may race).
    async fn create_topic(&self, topic: &str) -> Result<()>;

    /// Creates a subscription on `topic` that never expires and retains unacked messages 7 days.
    /// One that already exists is success.
    async fn create_subscription(
        &self,
        subscription: &str,
        topic: &str,
        ack_deadline: Duration,
    ) -> Result<()>;

    /// [`create_subscription`](Self::create_subscription) with a dead-letter policy. One that
    /// already exists is success, and is left as it is. The default ignores the policy: a
    /// broker without delivery counts (the in-memory one) never dead-letters.
    async fn create_dead_lettered_subscription(
        &self,
        subscription: &str,
        topic: &str,
        ack_deadline: Duration,
        dead_letter: &DeadLetter,
    ) -> Result<()> {
        let _ = dead_letter;
        self.create_subscription(subscription, topic, ack_deadline)
            .await
    }

    /// Sets the dead-letter policy of an existing subscription. The default: this broker
    /// cannot (an error saying so).
    async fn set_dead_letter(&self, subscription: &str, dead_letter: &DeadLetter) -> Result<()> {
        let _ = dead_letter;
        Err(crate::error::Error::Config(format!(
            "this broker cannot set a dead-letter policy on subscription {subscription:?}"
        )))
    }

    /// Deletes the subscription and the topic named `name` (a queue's pair); ones already gone
    /// are success. The default: this broker cannot (an error saying so). Only `worker queues
    /// smoke` uses it, on the queue it created for itself.
    async fn delete_pair(&self, name: &str) -> Result<()> {
        Err(crate::error::Error::Config(format!(
            "this broker cannot delete {name:?}"
        )))
    }

    /// Whether a subscription exists.
    async fn subscription_exists(&self, subscription: &str) -> Result<bool>;

    /// A subscription's settings, `None` if it does not exist. The default: this broker cannot
    /// tell (an error saying so).
    async fn subscription_settings(
        &self,
        subscription: &str,
    ) -> Result<Option<SubscriptionSettings>> {
        Err(crate::error::Error::Config(format!(
            "this broker cannot read the settings of subscription {subscription:?}"
        )))
    }

    /// Publishes messages in one request; returns once the broker has accepted all of them
    /// (durable), with their message ids in order. Fails with `not_found` if the topic is missing.
    /// The messages are borrowed: a caller keeps them for a retry without copying them.
    async fn publish(&self, topic: &str, messages: &[OutboundMessage]) -> Result<Vec<String>>;

    /// Opens one streaming pull on a subscription.
    async fn subscribe(
        &self,
        subscription: &str,
        options: StreamOptions,
    ) -> Result<Box<dyn DeliveryStream>>;

    /// Pulls up to `max` messages in one request, waiting at most `wait` for the first (an empty
    /// result means none arrived). Each is leased for the subscription's ack deadline. Unlike a
    /// stream, nothing is buffered behind the caller's back: for tools that inspect a queue.
    async fn pull(&self, subscription: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>>;

    /// Acknowledges messages: they will not be delivered again (at-least-once: an ack that is lost
    /// means a redelivery).
    async fn ack(&self, subscription: &str, ack_ids: Vec<String>) -> Result<()>;

    /// Sets the lease of messages to `seconds` from now (0 releases them for redelivery at once).
    async fn modify_ack_deadline(
        &self,
        subscription: &str,
        ack_ids: Vec<String>,
        seconds: i32,
    ) -> Result<()>;

    /// Drops every message of the subscription published before now, leased or not.
    async fn seek_to_now(&self, subscription: &str) -> Result<()>;
}
