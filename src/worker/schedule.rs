//! Schedule: jobs that are not due yet (`set().wait(..)`, retries) wait in the queue's
//! `.scheduled` subscription, not in the queue itself, so they take no concurrency slot and never
//! stall due jobs. The scheduler consumes that subscription: a due job is republished to the
//! queue and acked; a job due within a couple of seconds is held in memory until due; any other
//! is parked with `modify_ack_deadline` (at most 600 s, Pub/Sub's limit) and forgotten: Pub/Sub
//! delivers it again when the deadline lapses, a second before it is due, and the worker looks
//! again. A parked message costs the worker no memory.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::ack::{AckBatcher, AckBatcherParams};
use super::lease::{LeaseKeeper, LeaseKeeperParams};
use super::pull::{consume, ConsumeParams};
use crate::broker::{Delivery, OutboundMessage, StreamOptions};
use crate::client::Client;
use crate::envelope::{scheduled_at_attribute, Envelope};

/// Jobs due within this are held in memory rather than parked.
const HOLD_WITHIN: Duration = Duration::from_secs(2);
/// Parked jobs come back this long before they are due.
const PARK_EARLY: Duration = Duration::from_secs(1);
/// Pub/Sub's largest ack deadline.
const MAX_PARK_SECS: u64 = 600;
/// Forwards in flight at once.
const MAX_FORWARDS: usize = 64;

/// Parameters of a [`Scheduler`].
pub(crate) struct SchedulerParams {
    pub client: Client,
    pub queue: String,
    pub ack_deadline: Duration,
    pub max_outstanding: i64,
    /// Counts parked messages.
    pub parked: Arc<std::sync::atomic::AtomicU64>,
}

/// Moves due jobs from a queue's scheduled subscription to the queue.
pub(crate) struct Scheduler {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// When a scheduled message is due: its attribute, or its body's `scheduled_at`, or now.
fn due_at(d: &Delivery) -> DateTime<Utc> {
    scheduled_at_attribute(&d.attributes)
        .or_else(|| {
            Envelope::decode(&d.data, &d.attributes)
                .ok()
                .and_then(|e| e.scheduled_at)
        })
        .unwrap_or_else(Utc::now)
}

impl Scheduler {
    pub(crate) fn start(p: SchedulerParams) -> Self {
        let stop = CancellationToken::new();
        let subscription = p.client.scheduled_resource_name(&p.queue);
        let broker = p.client.broker().clone();
        let acker = Arc::new(AckBatcher::start(AckBatcherParams {
            broker: broker.clone(),
            subscription: subscription.clone(),
            flush_every: Duration::from_millis(10),
            acked: None,
        }));
        let lease = LeaseKeeper::start(LeaseKeeperParams {
            broker,
            subscription: subscription.clone(),
            ack_deadline: p.ack_deadline,
            held: None,
        });
        let params = ConsumeParams {
            client: p.client.clone(),
            subscription,
            queue: p.queue.clone(),
            options: StreamOptions {
                ack_deadline: p.ack_deadline,
                max_outstanding: p.max_outstanding,
            },
            shutdown: stop.clone(),
            open_streams: None,
        };
        let target = p.client.resource_name(&p.queue);
        let parked = p.parked.clone();
        let client = p.client;
        let task = tokio::spawn(async move {
            let forwards = Arc::new(Semaphore::new(MAX_FORWARDS));
            let mut held = JoinSet::new();
            let stream = consume(params, |d| {
                let remaining = (due_at(&d) - Utc::now()).to_std().unwrap_or_default();
                if remaining > HOLD_WITHIN {
                    let secs = (remaining - PARK_EARLY).as_secs().clamp(1, MAX_PARK_SECS);
                    acker.set_deadline(d.ack_id, secs as i32);
                    parked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                } else {
                    lease.hold(&d.ack_id);
                    let (client, target, acker, lease, forwards) =
                        (client.clone(), target.clone(), acker.clone(), lease.clone(), forwards.clone());
                    held.spawn(async move {
                        tokio::time::sleep(remaining).await;
                        let Ok(_permit) = forwards.acquire().await else { return };
                        let msg = OutboundMessage {
                            data: d.data,
                            attributes: d.attributes,
                        };
                        let result = client.publish_to(&target, vec![msg]).await;
                        lease.forget(&d.ack_id);
                        match result {
                            Ok(_) => acker.ack(d.ack_id),
                            Err(e) => {
                                tracing::warn!(queue = %target, error = %e, "could not move a due job to its queue; trying again in 5 s");
                                acker.set_deadline(d.ack_id, 5);
                            }
                        }
                    });
                }
                // Reap finished forwards so the set stays small.
                while held.try_join_next().is_some() {}
                std::future::ready(())
            })
            .await;
            held.shutdown().await;
            lease.shutdown().await;
            acker.shutdown().await;
            if let Some(s) = stream {
                s.close().await;
            }
        });
        Self { stop, task }
    }

    /// Stops consuming; jobs held in memory are released to Pub/Sub.
    pub(crate) async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::recording::{wait_for, Call, RecordingBroker};
    use crate::broker::Broker;
    use crate::ClientConfig;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn envelope(at: DateTime<Utc>) -> Envelope {
        let mut env = Envelope::new("J", "jobs", serde_json::json!({}));
        env.scheduled_at = Some(at);
        env
    }

    /// A job due in an hour is parked (its lease set to 600 s, and forgotten), one due in 300 ms
    /// is held and moved to the queue when due, not before, and one already due moves at once.
    #[tokio::test]
    async fn jobs_are_parked_held_or_moved_by_their_due_time() {
        let broker = RecordingBroker::default();
        let client = Client::with_broker(Arc::new(broker.clone()), ClientConfig::default());
        client.ensure_queue("jobs").await.unwrap();
        let now = Utc::now();
        let (later, soon, due) = (
            envelope(now + chrono::Duration::hours(1)),
            envelope(now + chrono::Duration::milliseconds(300)),
            envelope(now - chrono::Duration::seconds(1)),
        );
        let scheduled = client.scheduled_resource_name("jobs");
        let message = |e: &Envelope| OutboundMessage {
            data: e.to_body(),
            attributes: e.attributes(),
        };
        broker
            .publish(
                &scheduled,
                &[message(&later), message(&soon), message(&due)],
            )
            .await
            .unwrap();
        let parked = Arc::new(AtomicU64::new(0));
        let scheduler = Scheduler::start(SchedulerParams {
            client: client.clone(),
            queue: "jobs".into(),
            ack_deadline: Duration::from_secs(10),
            max_outstanding: 100,
            parked: parked.clone(),
        });
        let ids_in_queue = || -> Vec<uuid::Uuid> {
            broker
                .inner
                .pending("jobs")
                .iter()
                .map(|(d, a)| Envelope::decode(d, a).unwrap().job_id)
                .collect()
        };
        assert!(
            wait_for(Duration::from_secs(5), || ids_in_queue()
                .contains(&due.job_id))
            .await
        );
        assert!(
            wait_for(Duration::from_secs(5), || ids_in_queue()
                .contains(&soon.job_id))
            .await
        );
        assert!(Utc::now() >= soon.scheduled_at.unwrap(), "never early");
        assert!(
            wait_for(Duration::from_secs(5), || parked.load(Ordering::Relaxed)
                == 1)
            .await
        );
        let parks: Vec<i32> = broker
            .calls()
            .iter()
            .filter_map(|c| match c {
                Call::Deadline(ids, secs) if ids.len() == 1 && *secs > 0 => Some(*secs),
                _ => None,
            })
            .collect();
        assert_eq!(parks, [600], "parked for Pub/Sub's longest lease");
        scheduler.shutdown().await;
        assert!(
            !ids_in_queue().contains(&later.job_id),
            "the parked job stays in .scheduled"
        );
        assert_eq!(
            broker.inner.unacked(&scheduled).len(),
            1,
            "only the parked job is left there"
        );
    }
}
