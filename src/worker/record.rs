//! Recording a job's life in the store, batched: where dispatch's start and outcome's
//! transitions go when the worker has a job store. Group commit: the writes of all running jobs
//! queue up and a few writer tasks apply them in batches, each one transaction
//! ([`LifecycleStore::record_batch`]) of up to `max_batch` writes gathered for at most `linger`.
//!
//! A start waits for its batch (its outcome says whether the job was cancelled, or is a
//! duplicate of a finished execution: cancel-before-start still wins atomically). A transition
//! waits for its batch too, so that the ack follows the record, but never for long: if the
//! queue is full (the store is slow) or the batch does not commit within `wait`, the job goes
//! on and the write is counted and logged (`store.unrecorded`), never dropped silently; a
//! queued write is still applied when the store answers again. Writes of one job always go to
//! the same writer, in order. A batch that fails is retried one write at a time, so one bad
//! write does not lose the others.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::store::{JobStore, Start, StartOutcome, StoreError, StoreOp, Transition};

/// Settings of the batched writer.
#[derive(Clone, Debug)]
pub(crate) struct RecorderConfig {
    /// Writes per batch, at most.
    pub max_batch: usize,
    /// How long a batch waits for more writes after its first.
    pub linger: Duration,
    /// Writes queued per writer, at most.
    pub queue: usize,
    /// How long a transition waits for its batch before the job goes on.
    pub wait: Duration,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        Self {
            max_batch: 256,
            linger: Duration::ZERO,
            queue: 4096,
            wait: Duration::from_secs(5),
        }
    }
}

type Reply = oneshot::Sender<Result<Option<StartOutcome>, String>>;

/// The batched writer of one worker.
pub(crate) struct Recorder {
    lanes: Vec<mpsc::Sender<(StoreOp, Reply)>>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    stop: CancellationToken,
    unrecorded: Arc<AtomicU64>,
    wait: Duration,
}

impl Recorder {
    /// Starts `store.batch_writers()` writer tasks.
    pub(crate) fn start(store: Arc<dyn JobStore>, config: RecorderConfig) -> Self {
        let n = store.batch_writers().max(1);
        let mut lanes = Vec::with_capacity(n);
        let mut tasks = Vec::with_capacity(n);
        let stop = CancellationToken::new();
        for _ in 0..n {
            let (tx, rx) = mpsc::channel(config.queue.max(1));
            lanes.push(tx);
            tasks.push(tokio::spawn(write_loop(
                store.clone(),
                rx,
                config.clone(),
                stop.clone(),
            )));
        }
        Self {
            lanes,
            tasks: std::sync::Mutex::new(tasks),
            stop,
            unrecorded: Arc::default(),
            wait: config.wait,
        }
    }

    fn lane(&self, id: Uuid) -> &mpsc::Sender<(StoreOp, Reply)> {
        &self.lanes[(id.as_u128() % self.lanes.len() as u128) as usize]
    }

    /// Records a start and returns its outcome (waits for its batch).
    pub(crate) async fn start_job(&self, s: Start) -> Result<StartOutcome, String> {
        let (tx, rx) = oneshot::channel();
        let lane = self.lane(s.id);
        lane.send((StoreOp::Start(s), tx))
            .await
            .map_err(|_| "the store writer has stopped".to_string())?;
        match rx.await {
            Ok(Ok(Some(outcome))) => Ok(outcome),
            Ok(Ok(None)) => Err("the store writer answered a start without an outcome".into()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("the store writer has stopped".into()),
        }
    }

    /// Records a transition, waiting for its batch at most `wait`.
    pub(crate) async fn finish(&self, id: Uuid, attempt: u32, transition: Transition) {
        let (tx, rx) = oneshot::channel();
        let op = StoreOp::Finish {
            id,
            attempt,
            transition,
        };
        if self.lane(id).try_send((op, tx)).is_err() {
            let n = self.unrecorded.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                event = "store.unrecorded",
                unrecorded = n,
                "job store: the write queue is full (the store is slow or down); this transition is not recorded"
            );
            return;
        }
        match tokio::time::timeout(self.wait, rx).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(e))) => {
                let n = self.unrecorded.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(event = "store.unrecorded", unrecorded = n, error = %e, "job store: could not record a transition");
            }
            Ok(Err(_)) => {}
            Err(_) => tracing::warn!(
                "job store: a transition is not committed after {:?}; the job goes on and the write stays queued",
                self.wait
            ),
        }
    }

    /// Queues a running job's progress and log lines without waiting (they are latest-wins and
    /// best effort): with the queue full, they are dropped and counted.
    pub(crate) fn send_progress(&self, op: StoreOp) {
        let (tx, _) = oneshot::channel();
        let id = match &op {
            StoreOp::Progress { id, .. } => *id,
            _ => return,
        };
        if self.lane(id).try_send((op, tx)).is_err() {
            let n = self.unrecorded.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::debug!(
                event = "store.unrecorded",
                unrecorded = n,
                "job store: the write queue is full; a progress report is dropped"
            );
        }
    }

    /// Applies what is queued, then stops the writers.
    pub(crate) async fn shutdown(&self) {
        self.stop.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
        let n = self.unrecorded.load(Ordering::Relaxed);
        if n > 0 {
            tracing::warn!(
                event = "store.unrecorded",
                unrecorded = n,
                "job store: transitions left unrecorded by this worker"
            );
        }
    }
}

async fn write_loop(
    store: Arc<dyn JobStore>,
    mut rx: mpsc::Receiver<(StoreOp, Reply)>,
    config: RecorderConfig,
    stop: CancellationToken,
) {
    let mut ops = Vec::with_capacity(config.max_batch);
    let mut replies = Vec::with_capacity(config.max_batch);
    loop {
        let first = tokio::select! {
            biased;
            op = rx.recv() => op,
            _ = stop.cancelled() => rx.try_recv().ok(),
        };
        let Some((op, reply)) = first else { return };
        ops.push(op);
        replies.push(reply);
        let deadline = tokio::time::Instant::now() + config.linger;
        while ops.len() < config.max_batch {
            match rx.try_recv() {
                Ok((op, reply)) => {
                    ops.push(op);
                    replies.push(reply);
                }
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some((op, reply))) => {
                            ops.push(op);
                            replies.push(reply);
                        }
                        _ => break,
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        }
        let began = std::time::Instant::now();
        let results = apply(&*store, &ops).await;
        // The store's own timing per batch (RUST_LOG=pubsub_jobs::worker::record=debug).
        tracing::debug!(
            event = "store.batch",
            writes = ops.len(),
            us = began.elapsed().as_micros() as u64,
            "batch recorded"
        );
        for (reply, r) in replies.drain(..).zip(results) {
            let _ = reply.send(r.map_err(|e| e.to_string()));
        }
        ops.clear();
    }
}

/// One transaction for the batch; if it fails, each write alone (so one bad write, or a
/// conflict, does not cost the others their record).
async fn apply(
    store: &dyn JobStore,
    ops: &[StoreOp],
) -> Vec<Result<Option<StartOutcome>, StoreError>> {
    match store.record_batch(ops).await {
        Ok(out) => out.into_iter().map(Ok).collect(),
        Err(batch_error) => {
            tracing::debug!(error = %batch_error, writes = ops.len(), "job store: a batch failed; writing one by one");
            let mut out = Vec::with_capacity(ops.len());
            for op in ops {
                out.push(
                    store
                        .record_batch(std::slice::from_ref(op))
                        .await
                        .map(|mut v| v.pop().flatten()),
                );
            }
            out
        }
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;
    use crate::store::{JobStatus, SqlStore};
    use chrono::Utc;

    fn start(id: Uuid, attempt: u32) -> Start {
        Start {
            id,
            job_class: "J".into(),
            queue: "q".into(),
            arguments: serde_json::json!({}),
            metadata: Default::default(),
            attempt,
            enqueued_at: Utc::now(),
            due_at: Utc::now(),
            generation: 0,
        }
    }

    /// 300 jobs started and finished from concurrent tasks: every start is answered, every
    /// transition recorded in order, and a duplicate start of a finished execution is refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_are_recorded_in_order_per_job() {
        let store: Arc<dyn JobStore> =
            Arc::new(SqlStore::connect("sqlite::memory:").await.unwrap());
        let recorder = Arc::new(Recorder::start(store.clone(), RecorderConfig::default()));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..300 {
            let recorder = recorder.clone();
            tasks.spawn(async move {
                let id = Uuid::now_v7();
                let outcome = recorder.start_job(start(id, 1)).await.unwrap();
                assert!(matches!(outcome, StartOutcome::Run), "{outcome:?}");
                let transition = Transition::Succeeded {
                    result: Some(serde_json::json!({ "id": id })),
                    run: Duration::from_millis(1),
                };
                recorder.finish(id, 1, transition).await;
                id
            });
        }
        let mut ids = Vec::new();
        while let Some(id) = tasks.join_next().await {
            ids.push(id.unwrap());
        }
        for id in &ids {
            let rec = store.get(*id).await.unwrap().unwrap();
            assert_eq!(rec.status, JobStatus::Succeeded, "{id}");
            assert_eq!(rec.result, Some(serde_json::json!({ "id": id })));
            let kinds: Vec<&str> = store
                .events(*id)
                .await
                .unwrap()
                .iter()
                .map(|e| e.kind.as_str())
                .collect();
            assert_eq!(kinds, ["started", "succeeded"], "{id}");
        }
        // A redelivery of a finished execution is a duplicate: not started again.
        let again = recorder.start_job(start(ids[0], 1)).await.unwrap();
        assert!(matches!(again, StartOutcome::AlreadyFinished), "{again:?}");
        recorder.shutdown().await;
    }
}
