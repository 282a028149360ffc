//! Lease: from the moment a message is pulled until its outcome is acked, the worker holds its
//! lease. The lease keeper extends the ack deadline of every held message before it lapses
//! (batched modify_ack_deadline), so a job running longer than the ack deadline runs once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;

/// Parameters of a [`LeaseKeeper`].
pub(crate) struct LeaseKeeperParams {
    pub broker: Arc<dyn Broker>,
    pub subscription: String,
    /// The lease given on each extension (10-600 s on Pub/Sub).
    pub ack_deadline: Duration,
    /// Kept equal to the number of messages held (the worker's `leased` count).
    pub held: Option<Arc<AtomicU64>>,
}

/// Holds the leases of one subscription's messages and extends them.
pub(crate) struct LeaseKeeper {
    leases: Arc<Mutex<HashMap<String, Instant>>>,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
    broker: Arc<dyn Broker>,
    subscription: String,
    ack_deadline: Duration,
    held: Option<Arc<AtomicU64>>,
}

impl LeaseKeeper {
    pub(crate) fn start(p: LeaseKeeperParams) -> Arc<Self> {
        let keeper = Arc::new(Self {
            leases: Arc::default(),
            stop: CancellationToken::new(),
            task: Mutex::new(None),
            broker: p.broker,
            subscription: p.subscription,
            ack_deadline: p.ack_deadline,
            held: p.held,
        });
        let k = keeper.clone();
        let tick = (p.ack_deadline / 10).clamp(Duration::from_millis(200), Duration::from_secs(2));
        let handle = tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = k.stop.cancelled() => break,
                    _ = interval.tick() => k.extend_due().await,
                }
            }
        });
        *keeper.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        keeper
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes the count of held messages (called with the lock held, after a change).
    fn count(&self, leases: &HashMap<String, Instant>) {
        if let Some(held) = &self.held {
            held.store(leases.len() as u64, Relaxed);
        }
    }

    /// Starts holding a message just received.
    pub(crate) fn hold(&self, ack_id: &str) {
        let mut leases = self.lock();
        leases.insert(ack_id.to_string(), Instant::now() + self.ack_deadline);
        self.count(&leases);
    }

    /// Stops extending a message (its outcome is about to be acked, or it is released).
    pub(crate) fn forget(&self, ack_id: &str) {
        let mut leases = self.lock();
        leases.remove(ack_id);
        self.count(&leases);
    }

    /// Whether a message is held (pulled, and neither acked nor released yet).
    pub(crate) fn holds(&self, ack_id: &str) -> bool {
        self.lock().contains_key(ack_id)
    }

    /// How many messages are held.
    pub(crate) fn held(&self) -> usize {
        self.lock().len()
    }

    async fn extend_due(&self) {
        let now = Instant::now();
        let margin = self.ack_deadline / 2;
        let due: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, until)| until.saturating_duration_since(now) < margin)
            .map(|(k, _)| k.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        let secs = self.ack_deadline.as_secs().clamp(1, 600) as i32;
        match self
            .broker
            .modify_ack_deadline(&self.subscription, due.clone(), secs)
            .await
        {
            Ok(()) => {
                let until = now + self.ack_deadline;
                let mut leases = self.lock();
                for id in due {
                    if let Some(u) = leases.get_mut(&id) {
                        *u = until;
                    }
                }
            }
            Err(e) => tracing::warn!(
                subscription = %self.subscription,
                count = due.len(),
                error = %e,
                "could not extend leases; they may be redelivered"
            ),
        }
    }

    /// Releases every held message for immediate redelivery and stops extending.
    pub(crate) async fn shutdown(&self) {
        self.stop.cancel();
        let handle = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.await;
        }
        let ids: Vec<String> = {
            let mut leases = self.lock();
            let ids = leases.drain().map(|(k, _)| k).collect();
            self.count(&leases);
            ids
        };
        if !ids.is_empty() {
            let n = ids.len();
            match self
                .broker
                .modify_ack_deadline(&self.subscription, ids, 0)
                .await
            {
                Ok(()) => {
                    tracing::info!(subscription = %self.subscription, count = n, "released leased messages")
                }
                Err(e) => {
                    tracing::warn!(subscription = %self.subscription, error = %e, "could not release leased messages; they return when their lease lapses")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::recording::{wait_for, Call, RecordingBroker};
    use crate::broker::OutboundMessage;

    #[tokio::test]
    async fn held_messages_are_extended_before_they_lapse_and_released_at_shutdown() {
        let broker = RecordingBroker::default();
        broker.create_topic("t").await.unwrap();
        broker
            .create_subscription("s", "t", Duration::from_secs(2))
            .await
            .unwrap();
        let msgs = vec![OutboundMessage::default(); 3];
        broker.publish("t", &msgs).await.unwrap();
        let ids: Vec<String> = broker
            .pull("s", 3, Duration::from_millis(100))
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.ack_id)
            .collect();
        let pulled_at = Instant::now();
        let keeper = LeaseKeeper::start(LeaseKeeperParams {
            broker: Arc::new(broker.clone()),
            subscription: "s".into(),
            ack_deadline: Duration::from_secs(2),
            held: None,
        });
        for id in &ids {
            keeper.hold(id);
        }
        assert_eq!(keeper.held(), 3);
        // Within the second half of the lease, all three are extended by 2 s, in one request.
        let extended = |calls: &[Call], want: &[String]| {
            calls.iter().any(|c| {
                matches!(c, Call::Deadline(got, 2) if {
                    let mut got = got.clone();
                    got.sort();
                    let mut want = want.to_vec();
                    want.sort();
                    got == want
                })
            })
        };
        assert!(
            wait_for(Duration::from_secs(5), || extended(
                &broker.lease_calls(),
                &ids
            ))
            .await,
            "{:?}",
            broker.lease_calls()
        );
        // A forgotten message is no longer extended; the others still are.
        keeper.forget(&ids[0]);
        let before = broker.lease_calls().len();
        assert!(
            wait_for(Duration::from_secs(5), || extended(
                &broker.lease_calls()[before..],
                &ids[1..]
            ))
            .await,
            "{:?}",
            broker.lease_calls()
        );
        // Past the first lease's end, nothing came back: the extensions held it.
        let past = Duration::from_millis(2500);
        tokio::time::sleep(past.saturating_sub(pulled_at.elapsed())).await;
        assert!(broker.inner.pending("s").is_empty());
        keeper.shutdown().await;
        let last = broker.lease_calls().last().cloned();
        let mut released = match last {
            Some(Call::Deadline(ids, 0)) => ids,
            other => panic!("shutdown releases what is held: {other:?}"),
        };
        released.sort();
        let mut want = ids[1..].to_vec();
        want.sort();
        assert_eq!(released, want);
        assert_eq!(keeper.held(), 0);
    }
}
