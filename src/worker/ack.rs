//! Ack: the last step of a job's life. Acks (and lease changes such as parking a scheduled job)
//! are batched: one request per subscription every few milliseconds instead of one per message.
//! A lost ack means a redelivery, never a loss: delivery is at-least-once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::broker::Broker;

enum Op {
    Ack(String),
    Deadline(String, i32),
    Stop,
}

/// Parameters of an [`AckBatcher`].
pub(crate) struct AckBatcherParams {
    pub broker: Arc<dyn Broker>,
    pub subscription: String,
    pub flush_every: Duration,
    /// Counts the messages acked (the request answered), when given.
    pub acked: Option<Arc<AtomicU64>>,
}

/// Collects acks and deadline changes for one subscription and sends them in batches.
pub(crate) struct AckBatcher {
    tx: mpsc::UnboundedSender<Op>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl AckBatcher {
    pub(crate) fn start(p: AckBatcherParams) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Op>();
        let task = tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1000);
            loop {
                let n = rx.recv_many(&mut buf, 1000).await;
                // Give concurrent completions a moment to join the batch.
                if n > 0 && buf.len() < 1000 && !buf.iter().any(|op| matches!(op, Op::Stop)) {
                    tokio::time::sleep(p.flush_every).await;
                    while buf.len() < 1000 {
                        match rx.try_recv() {
                            Ok(op) => buf.push(op),
                            Err(_) => break,
                        }
                    }
                }
                let stop = n == 0 || buf.iter().any(|op| matches!(op, Op::Stop));
                // Drained, not taken: the buffer keeps its capacity for the next batch.
                flush(&p, &mut buf).await;
                if stop {
                    break;
                }
            }
        });
        Self {
            tx,
            task: std::sync::Mutex::new(Some(task)),
        }
    }

    /// Acks a message (after its outcome is durable).
    pub(crate) fn ack(&self, ack_id: String) {
        let _ = self.tx.send(Op::Ack(ack_id));
    }

    /// Sets a message's lease to `seconds` from now (0 releases it).
    pub(crate) fn set_deadline(&self, ack_id: String, seconds: i32) {
        let _ = self.tx.send(Op::Deadline(ack_id, seconds));
    }

    /// Sends what is pending and stops.
    pub(crate) async fn shutdown(&self) {
        let _ = self.tx.send(Op::Stop);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}

async fn flush(p: &AckBatcherParams, ops: &mut Vec<Op>) {
    let (broker, subscription) = (&*p.broker, p.subscription.as_str());
    let mut acks = Vec::with_capacity(ops.len());
    let mut deadlines: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for op in ops.drain(..) {
        match op {
            Op::Ack(id) => acks.push(id),
            Op::Deadline(id, s) => deadlines.entry(s).or_default().push(id),
            Op::Stop => {}
        }
    }
    // The acks and each deadline group go out at once, not one request after another (free
    // on the emulator, a round trip each at real latency).
    let mut requests: Vec<futures::future::BoxFuture<'_, ()>> =
        Vec::with_capacity(1 + deadlines.len());
    if !acks.is_empty() {
        let n = acks.len();
        // The log lines of these jobs (`job.succeeded`, ...) go out before their acks.
        crate::logging::flush();
        requests.push(Box::pin(async move {
            match broker.ack(subscription, acks).await {
                Ok(()) => {
                    if let Some(acked) = &p.acked {
                        acked.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    // What a benchmark of the `worker` binary counts (RUST_LOG=...ack=debug).
                    tracing::debug!(event = "acks.sent", subscription, count = n, "acked");
                }
                Err(e) => {
                    tracing::warn!(subscription, count = n, error = %e, "ack failed; those messages will be redelivered")
                }
            }
        }));
    }
    for (seconds, ids) in deadlines {
        requests.push(Box::pin(async move {
            let n = ids.len();
            if let Err(e) = broker.modify_ack_deadline(subscription, ids, seconds).await {
                tracing::warn!(subscription, count = n, seconds, error = %e, "modify_ack_deadline failed");
            }
        }));
    }
    match requests.len() {
        0 => {}
        1 => {
            if let Some(only) = requests.pop() {
                only.await;
            }
        }
        _ => {
            futures::future::join_all(requests).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::recording::{Call, RecordingBroker};
    use crate::broker::OutboundMessage;

    /// Publishes `n` messages to a fresh topic and subscription and leases them all.
    async fn leased(broker: &RecordingBroker, n: usize) -> Vec<String> {
        broker.create_topic("t").await.unwrap();
        broker
            .create_subscription("s", "t", Duration::from_secs(60))
            .await
            .unwrap();
        let msgs = (0..n)
            .map(|i| OutboundMessage {
                data: i.to_string().into_bytes(),
                ..Default::default()
            })
            .collect::<Vec<_>>();
        for chunk in msgs.chunks(1000) {
            broker.publish("t", chunk).await.unwrap();
        }
        let mut ids = Vec::new();
        while ids.len() < n {
            let got = broker
                .pull("s", 1000, Duration::from_millis(100))
                .await
                .unwrap();
            ids.extend(got.into_iter().map(|d| d.ack_id));
        }
        ids
    }

    #[tokio::test]
    async fn acks_from_many_tasks_go_out_in_few_requests_of_at_most_1000() {
        let broker = RecordingBroker::default();
        let ids = leased(&broker, 2500).await;
        let acker = Arc::new(AckBatcher::start(AckBatcherParams {
            broker: Arc::new(broker.clone()),
            subscription: "s".into(),
            flush_every: Duration::from_millis(20),
            acked: None,
        }));
        let mut tasks = tokio::task::JoinSet::new();
        for chunk in ids.chunks(100) {
            let (acker, chunk) = (acker.clone(), chunk.to_vec());
            tasks.spawn(async move { chunk.into_iter().for_each(|id| acker.ack(id)) });
        }
        while tasks.join_next().await.is_some() {}
        acker.shutdown().await;
        let calls = broker.lease_calls();
        let sizes: Vec<usize> = calls
            .iter()
            .map(|c| match c {
                Call::Ack(ids) => ids.len(),
                _ => panic!("only acks were asked: {c:?}"),
            })
            .collect();
        assert_eq!(sizes.iter().sum::<usize>(), 2500, "every ack sent once");
        assert!(sizes.iter().all(|n| *n <= 1000), "{sizes:?}");
        assert!(sizes.len() <= 4, "batched: {sizes:?}");
        assert_eq!(broker.inner.outstanding("s"), 0, "nothing left leased");
    }

    #[tokio::test]
    async fn deadline_changes_are_grouped_by_their_seconds() {
        let broker = RecordingBroker::default();
        let ids = leased(&broker, 4).await;
        let acker = AckBatcher::start(AckBatcherParams {
            broker: Arc::new(broker.clone()),
            subscription: "s".into(),
            flush_every: Duration::from_millis(50),
            acked: None,
        });
        acker.set_deadline(ids[0].clone(), 300);
        acker.set_deadline(ids[1].clone(), 0);
        acker.set_deadline(ids[2].clone(), 300);
        acker.ack(ids[3].clone());
        acker.shutdown().await;
        let calls = broker.lease_calls();
        let want = [
            Call::Ack(vec![ids[3].clone()]),
            Call::Deadline(vec![ids[1].clone()], 0),
            Call::Deadline(vec![ids[0].clone(), ids[2].clone()], 300),
        ];
        assert_eq!(calls.len(), want.len(), "{calls:?}");
        for w in &want {
            assert!(calls.contains(w), "{w:?} not in {calls:?}");
        }
        // Released: one message is back, ready to be delivered again.
        assert_eq!(broker.inner.pending("s").len(), 1);
    }
}
