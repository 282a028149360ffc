//! A broker for unit tests that forwards to a [`MemoryBroker`] and records the publishes, acks
//! and lease changes it was asked for, so that tests beside the worker's parts (ack batching, the lease
//! keeper, parking) can assert what reached the broker and in how many requests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{Broker, Delivery, DeliveryStream, MemoryBroker, OutboundMessage, StreamOptions};
use crate::error::Result;

/// One request the broker received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    /// A publish of this many messages to this topic.
    Publish(String, usize),
    /// An ack of these ids.
    Ack(Vec<String>),
    /// A modify_ack_deadline of these ids to this many seconds.
    Deadline(Vec<String>, i32),
    /// An admin call (create topic, create subscription, get or update subscription) on this
    /// resource.
    Admin(&'static str, String),
}

/// A [`MemoryBroker`] that records [`Call`]s.
#[derive(Clone, Default)]
pub(crate) struct RecordingBroker {
    pub(crate) inner: MemoryBroker,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl RecordingBroker {
    /// The publishes, acks and deadline changes so far, in order.
    pub(crate) fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The acks and deadline changes so far, in order.
    pub(crate) fn lease_calls(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| matches!(c, Call::Ack(..) | Call::Deadline(..)))
            .collect()
    }

    fn record(&self, call: Call) {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(call);
    }
}

#[async_trait]
impl Broker for RecordingBroker {
    async fn create_topic(&self, topic: &str) -> Result<()> {
        self.record(Call::Admin("create topic", topic.to_string()));
        self.inner.create_topic(topic).await
    }
    async fn create_subscription(&self, s: &str, t: &str, d: Duration) -> Result<()> {
        self.record(Call::Admin("create subscription", s.to_string()));
        self.inner.create_subscription(s, t, d).await
    }
    async fn set_dead_letter(&self, s: &str, d: &super::DeadLetter) -> Result<()> {
        self.record(Call::Admin("update subscription", s.to_string()));
        self.inner.set_dead_letter(s, d).await
    }
    async fn subscription_exists(&self, s: &str) -> Result<bool> {
        self.record(Call::Admin("get subscription", s.to_string()));
        self.inner.subscription_exists(s).await
    }
    async fn subscription_settings(&self, s: &str) -> Result<Option<super::SubscriptionSettings>> {
        self.record(Call::Admin("get subscription", s.to_string()));
        self.inner.subscription_settings(s).await
    }
    async fn publish(&self, t: &str, m: &[OutboundMessage]) -> Result<Vec<String>> {
        self.record(Call::Publish(t.to_string(), m.len()));
        self.inner.publish(t, m).await
    }
    async fn subscribe(&self, s: &str, o: StreamOptions) -> Result<Box<dyn DeliveryStream>> {
        self.inner.subscribe(s, o).await
    }
    async fn pull(&self, s: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        self.inner.pull(s, max, wait).await
    }
    async fn ack(&self, s: &str, ids: Vec<String>) -> Result<()> {
        self.record(Call::Ack(ids.clone()));
        self.inner.ack(s, ids).await
    }
    async fn modify_ack_deadline(&self, s: &str, ids: Vec<String>, secs: i32) -> Result<()> {
        self.record(Call::Deadline(ids.clone(), secs));
        self.inner.modify_ack_deadline(s, ids, secs).await
    }
    async fn seek_to_now(&self, s: &str) -> Result<()> {
        self.inner.seek_to_now(s).await
    }
}

/// Waits up to `timeout` for `cond`, checking every 10 ms; whether it held.
pub(crate) async fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}
