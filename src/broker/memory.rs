//! [`Broker`] in process memory: topics fan out to subscriptions, leases expire and redeliver,
//! `modify_ack_deadline` works as on Pub/Sub. For unit tests and as a testing helper; never a
//! proof of a Pub/Sub behaviour.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{Broker, Delivery, DeliveryStream, OutboundMessage, StreamOptions};
use crate::error::{Error, Result};

#[derive(Clone, Debug)]
struct Stored {
    id: String,
    data: Vec<u8>,
    attributes: HashMap<String, String>,
}

#[derive(Default)]
struct Sub {
    ready: VecDeque<Stored>,
    leased: HashMap<String, (Stored, Instant)>,
}

#[derive(Default)]
struct State {
    topics: HashMap<String, Vec<String>>,
    subs: HashMap<String, Sub>,
    next_id: u64,
}

impl State {
    fn expire(&mut self, now: Instant) {
        for sub in self.subs.values_mut() {
            let expired: Vec<String> = sub
                .leased
                .iter()
                .filter(|(_, (_, until))| *until <= now)
                .map(|(k, _)| k.clone())
                .collect();
            for k in expired {
                if let Some((m, _)) = sub.leased.remove(&k) {
                    sub.ready.push_back(m);
                }
            }
        }
    }
}

/// An in-memory broker. Clones share state.
#[derive(Clone, Default)]
pub struct MemoryBroker {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker").finish_non_exhaustive()
    }
}

impl MemoryBroker {
    /// An empty broker.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bodies of the messages waiting (not leased) in a subscription, oldest first.
    pub fn pending(&self, subscription: &str) -> Vec<(Vec<u8>, HashMap<String, String>)> {
        let mut st = self.lock();
        st.expire(Instant::now());
        st.subs
            .get(subscription)
            .map(|s| {
                s.ready
                    .iter()
                    .map(|m| (m.data.clone(), m.attributes.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every message of a subscription not acked yet, waiting or leased (a job parked by a
    /// worker's scheduler is leased), in message-id order.
    pub fn unacked(&self, subscription: &str) -> Vec<(Vec<u8>, HashMap<String, String>)> {
        let mut st = self.lock();
        st.expire(Instant::now());
        let Some(sub) = st.subs.get(subscription) else {
            return Vec::new();
        };
        let mut all: Vec<&Stored> = sub
            .ready
            .iter()
            .chain(sub.leased.values().map(|(m, _)| m))
            .collect();
        all.sort_by_key(|m| m.id.parse::<u64>().unwrap_or(u64::MAX));
        all.into_iter()
            .map(|m| (m.data.clone(), m.attributes.clone()))
            .collect()
    }

    /// Messages waiting or leased in a subscription.
    pub fn outstanding(&self, subscription: &str) -> usize {
        let st = self.lock();
        st.subs
            .get(subscription)
            .map(|s| s.ready.len() + s.leased.len())
            .unwrap_or(0)
    }

    fn not_found(operation: &'static str, resource: &str) -> Error {
        Error::Broker {
            operation,
            resource: resource.to_string(),
            code: crate::error::BrokerCode::NotFound,
            message: format!("{resource:?} not found"),
        }
    }
}

/// Pub/Sub's limits on one publish request.
const PUBLISH_MAX_MESSAGES: usize = 1000;
const PUBLISH_MAX_BYTES: usize = 10_000_000;

#[async_trait]
impl Broker for MemoryBroker {
    async fn create_topic(&self, topic: &str) -> Result<()> {
        self.lock().topics.entry(topic.to_string()).or_default();
        Ok(())
    }

    /// Accepted and never fires: this broker keeps no delivery counts.
    async fn set_dead_letter(&self, subscription: &str, _: &super::DeadLetter) -> Result<()> {
        if self.lock().subs.contains_key(subscription) {
            Ok(())
        } else {
            Err(Self::not_found("update subscription", subscription))
        }
    }

    async fn create_subscription(
        &self,
        subscription: &str,
        topic: &str,
        _ack_deadline: Duration,
    ) -> Result<()> {
        let mut st = self.lock();
        if st.subs.contains_key(subscription) {
            return Ok(());
        }
        let subs = st
            .topics
            .get_mut(topic)
            .ok_or_else(|| Self::not_found("create subscription", topic))?;
        subs.push(subscription.to_string());
        st.subs.insert(subscription.to_string(), Sub::default());
        Ok(())
    }

    async fn subscription_exists(&self, subscription: &str) -> Result<bool> {
        Ok(self.lock().subs.contains_key(subscription))
    }

    async fn subscription_settings(
        &self,
        subscription: &str,
    ) -> Result<Option<super::SubscriptionSettings>> {
        let state = self.lock();
        if !state.subs.contains_key(subscription) {
            return Ok(None);
        }
        let topic = state
            .topics
            .iter()
            .find(|(_, subs)| subs.iter().any(|s| s == subscription))
            .map(|(t, _)| t.clone())
            .unwrap_or_else(|| "_deleted-topic_".into());
        Ok(Some(super::SubscriptionSettings {
            topic,
            retention: Some(super::RETENTION),
            expires_after: None,
            dead_letter: None,
        }))
    }

    async fn publish(&self, topic: &str, messages: &[OutboundMessage]) -> Result<Vec<String>> {
        // Refuse what Pub/Sub refuses, so that tests on this broker catch a request too big.
        let bytes: usize = messages.iter().map(OutboundMessage::wire_bytes).sum();
        if messages.len() > PUBLISH_MAX_MESSAGES || bytes > PUBLISH_MAX_BYTES {
            return Err(Error::Broker {
                operation: "publish",
                resource: topic.to_string(),
                code: crate::error::BrokerCode::InvalidArgument,
                message: format!(
                    "request of {} messages and {bytes} bytes is over Pub/Sub's limits ({PUBLISH_MAX_MESSAGES} messages, {PUBLISH_MAX_BYTES} bytes)",
                    messages.len()
                ),
            });
        }
        let mut st = self.lock();
        let subs = st
            .topics
            .get(topic)
            .cloned()
            .ok_or_else(|| Self::not_found("publish", topic))?;
        let mut ids = Vec::with_capacity(messages.len());
        for m in messages {
            st.next_id += 1;
            let stored = Stored {
                id: st.next_id.to_string(),
                data: m.data.clone(),
                attributes: m.attributes.clone(),
            };
            ids.push(stored.id.clone());
            for s in &subs {
                if let Some(sub) = st.subs.get_mut(s) {
                    sub.ready.push_back(stored.clone());
                }
            }
        }
        drop(st);
        self.notify.notify_waiters();
        Ok(ids)
    }

    async fn subscribe(
        &self,
        subscription: &str,
        options: StreamOptions,
    ) -> Result<Box<dyn DeliveryStream>> {
        if !self.lock().subs.contains_key(subscription) {
            return Err(Self::not_found("subscribe", subscription));
        }
        Ok(Box::new(MemoryStream {
            broker: self.clone(),
            subscription: subscription.to_string(),
            ack_deadline: options.ack_deadline,
        }))
    }

    async fn pull(&self, subscription: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        let mut stream = MemoryStream {
            broker: self.clone(),
            subscription: subscription.to_string(),
            ack_deadline: Duration::from_secs(60),
        };
        if !self.lock().subs.contains_key(subscription) {
            return Err(Self::not_found("pull", subscription));
        }
        let mut out = Vec::new();
        let first = tokio::time::timeout(wait, stream.next()).await;
        if let Ok(Some(d)) = first {
            out.push(d);
            while out.len() < max {
                match tokio::time::timeout(Duration::ZERO, stream.next()).await {
                    Ok(Some(d)) => out.push(d),
                    _ => break,
                }
            }
        }
        Ok(out)
    }

    async fn ack(&self, subscription: &str, ack_ids: Vec<String>) -> Result<()> {
        let mut st = self.lock();
        let sub = st
            .subs
            .get_mut(subscription)
            .ok_or_else(|| Self::not_found("ack", subscription))?;
        for id in ack_ids {
            sub.leased.remove(&id);
        }
        Ok(())
    }

    async fn modify_ack_deadline(
        &self,
        subscription: &str,
        ack_ids: Vec<String>,
        seconds: i32,
    ) -> Result<()> {
        let mut st = self.lock();
        let sub = st
            .subs
            .get_mut(subscription)
            .ok_or_else(|| Self::not_found("modify ack deadline", subscription))?;
        let until = Instant::now() + Duration::from_secs(seconds.max(0) as u64);
        for id in ack_ids {
            if let Some(entry) = sub.leased.get_mut(&id) {
                entry.1 = until;
            }
        }
        drop(st);
        if seconds <= 0 {
            self.notify.notify_waiters();
        }
        Ok(())
    }

    async fn seek_to_now(&self, subscription: &str) -> Result<()> {
        let mut st = self.lock();
        let sub = st
            .subs
            .get_mut(subscription)
            .ok_or_else(|| Self::not_found("seek", subscription))?;
        sub.ready.clear();
        sub.leased.clear();
        Ok(())
    }
}

struct MemoryStream {
    broker: MemoryBroker,
    subscription: String,
    ack_deadline: Duration,
}

#[async_trait]
impl DeliveryStream for MemoryStream {
    async fn next(&mut self) -> Option<Delivery> {
        loop {
            let notified = self.broker.notify.notified();
            {
                let mut st = self.broker.lock();
                let now = Instant::now();
                st.expire(now);
                let sub = st.subs.get_mut(&self.subscription)?;
                if let Some(m) = sub.ready.pop_front() {
                    let ack_id = format!("{}-{}", m.id, uuid::Uuid::new_v4());
                    let d = Delivery {
                        ack_id: ack_id.clone(),
                        message_id: m.id.clone(),
                        data: m.data.clone(),
                        attributes: m.attributes.clone(),
                    };
                    sub.leased.insert(ack_id, (m, now + self.ack_deadline));
                    return Some(d);
                }
            }
            // Wake on a publish or a release, or poll for lease expiry.
            let _ = tokio::time::timeout(Duration::from_millis(20), notified).await;
        }
    }

    async fn close(self: Box<Self>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(secs: u64) -> StreamOptions {
        StreamOptions {
            ack_deadline: Duration::from_secs(secs),
            max_outstanding: 0,
        }
    }

    fn msg(body: &str) -> OutboundMessage {
        OutboundMessage {
            data: body.as_bytes().to_vec(),
            attributes: HashMap::new(),
        }
    }

    #[tokio::test]
    async fn leases_expire_release_and_ack() {
        let b = MemoryBroker::new();
        b.create_topic("t").await.unwrap();
        b.create_subscription("s", "t", Duration::from_secs(10))
            .await
            .unwrap();
        assert!(b
            .publish("nope", &[msg("x")])
            .await
            .unwrap_err()
            .is_not_found());
        b.publish("t", &[msg("a"), msg("b")]).await.unwrap();
        let mut s = b.subscribe("s", opts(1)).await.unwrap();
        let a = s.next().await.unwrap();
        assert_eq!(a.data, b"a");
        let second = s.next().await.unwrap();
        assert_eq!(second.data, b"b");
        // Released: back at once.
        b.modify_ack_deadline("s", vec![second.ack_id.clone()], 0)
            .await
            .unwrap();
        let again = s.next().await.unwrap();
        assert_eq!(again.data, b"b");
        b.ack("s", vec![again.ack_id]).await.unwrap();
        // Not acked: redelivered after the 1 s lease.
        let redelivered = s.next().await.unwrap();
        assert_eq!(redelivered.data, b"a");
        b.ack("s", vec![redelivered.ack_id]).await.unwrap();
        assert_eq!(b.outstanding("s"), 0);
        b.publish("t", &[msg("c")]).await.unwrap();
        b.seek_to_now("s").await.unwrap();
        assert_eq!(b.outstanding("s"), 0);
    }
}

#[cfg(test)]
mod conformance {
    use std::sync::Arc;

    use super::MemoryBroker;
    use crate::broker::Broker;

    crate::broker_conformance_tests!(|| async { Arc::new(MemoryBroker::new()) as Arc<dyn Broker> });
}
