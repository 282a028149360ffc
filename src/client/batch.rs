//! Batched submits: where concurrent enqueues on one client with a job store meet. Each caller
//! adds its checked job to a queue; whoever finds no batch running starts one (a task, so a
//! caller that goes away does not strand the others), which takes everything queued: one store
//! transaction for all of them (multi-row inserts into the outbox), then one publish per topic.
//! While batches run, new jobs queue for the next, so the batch size follows the load with no
//! timer.
//!
//! Each caller is answered once its own job is durable in the store, as River answers an
//! insert: from then on the job will be published, by this batch right after, or, if this
//! process dies first, by a relay once the enqueuer's claim on the row lapses (see `relay`).
//! [`Client::flush`] waits for the publishes and marks still under way.
//!
//! Published jobs are marked in the outbox by a marker that gathers the ids of many batches
//! for up to [`MARK_LINGER`] and marks them in one statement: a mark is an update of the job's
//! row, which costs far more one batch at a time than many at once. Until its mark lands the
//! row stays claimed by this client ([`crate::store::sql`] gives an enqueuer 5 s), and a job a
//! worker has already started needs no mark (the start marks it).
//!
//! On a store that commits one transaction at a time (SQLite, `LifecycleStore::batch_writers() ==
//! 1`) the batches' writes and the marker's take turns through an async lock here, rather than
//! through SQLite's sleeping busy handler.
//!
//! Jobs with a dedup key do not come here: their key is claimed one job at a time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{oneshot, Notify};
use uuid::Uuid;

use super::prepare::Prepared;
use super::Client;
use crate::error::{Error, Result};
use crate::store::{JobRecord, JobStore, NewJob, Submitted};

/// How long the marker gathers published ids before it marks them.
pub(super) const MARK_LINGER: Duration = Duration::from_millis(50);

struct Pending {
    job: Prepared,
    row: NewJob,
    reply: oneshot::Sender<Result<JobRecord>>,
}

/// The queue of submits waiting for a batch, and the published ids waiting for their mark.
#[derive(Default)]
pub(super) struct SubmitQueue {
    state: Mutex<State>,
    /// Turns at a one-writer store.
    store_turn: tokio::sync::Mutex<()>,
    /// Signalled whenever a batch runner or the marker stops.
    idle: Notify,
}

impl SubmitQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Default)]
struct State {
    pending: Vec<Pending>,
    /// Batch runners at work.
    running: usize,
    /// Published, not marked yet.
    to_mark: Vec<Uuid>,
    /// Whether the marker is at work.
    marking: bool,
}

impl State {
    fn idle(&self) -> bool {
        self.pending.is_empty() && self.running == 0 && self.to_mark.is_empty() && !self.marking
    }
}

impl Client {
    /// Records the prepared `job` in the next batch; returns its record once it is durable.
    /// The batch publishes it right after.
    pub(super) async fn submit_batched(
        &self,
        store: &Arc<dyn JobStore>,
        job: Prepared,
    ) -> Result<JobRecord> {
        let row = job.new_job(None);
        let (reply, answer) = oneshot::channel();
        let lead = {
            let mut st = self.inner.submits.lock();
            st.pending.push(Pending { job, row, reply });
            // Batches in flight at once, at most: as many as the store commits side by side
            // (one on SQLite, four on PostgreSQL).
            if st.running < store.batch_writers().max(1) {
                st.running += 1;
                true
            } else {
                false
            }
        };
        if lead {
            let (client, store) = (self.clone(), store.clone());
            tokio::spawn(async move { client.run_batches(store).await });
        }
        answer
            .await
            .map_err(|_| Error::WorkerTask("the submit batch stopped before answering".into()))?
    }

    /// Waits until every job submitted on this client so far is published (or left to the
    /// relay, if its publish failed) and marked in the store's outbox. Call it before a
    /// short-lived process exits: `perform_later` with a store returns once the job is
    /// durable, and publishes it in the background. Without a store, or with nothing under
    /// way, it returns at once.
    pub async fn flush(&self) {
        let queue = &self.inner.submits;
        loop {
            let idle = queue.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if queue.lock().idle() {
                return;
            }
            idle.await;
        }
    }

    /// Runs batches until nothing is queued.
    async fn run_batches(&self, store: Arc<dyn JobStore>) {
        loop {
            let batch = {
                let mut st = self.inner.submits.lock();
                if st.pending.is_empty() {
                    st.running -= 1;
                    drop(st);
                    self.inner.submits.idle.notify_waiters();
                    return;
                }
                std::mem::take(&mut st.pending)
            };
            self.submit_batch(&store, batch).await;
        }
    }

    /// The store's turn for this client's writes (on a one-writer store; else no wait).
    async fn store_turn(
        &self,
        store: &Arc<dyn JobStore>,
    ) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        if store.batch_writers() <= 1 {
            Some(self.inner.submits.store_turn.lock().await)
        } else {
            None
        }
    }

    async fn submit_batch(&self, store: &Arc<dyn JobStore>, batch: Vec<Pending>) {
        let rows: Vec<NewJob> = batch.iter().map(|p| p.row.clone()).collect();
        let written = {
            let _turn = self.store_turn(store).await;
            store.submit_many(rows).await
        };
        if let Err(e) = written {
            // One by one: one job's trouble (or a store that is down) answers each its own.
            tracing::debug!(error = %e, jobs = batch.len(), "job store: a submit batch failed; recording one by one");
            for p in batch {
                let result = match store.submit(p.row).await {
                    Ok(Submitted::Created(rec)) => {
                        self.publish_recorded(store, vec![p.job]).await;
                        Ok(*rec)
                    }
                    Ok(Submitted::Existing(rec)) => Ok(*rec),
                    Err(e) => Err(e.into()),
                };
                let _ = p.reply.send(result);
            }
            return;
        }
        // Durable: answer now, publish next.
        let now = Utc::now();
        let ids: Vec<Uuid> = batch.iter().map(|p| p.row.id).collect();
        let mut jobs = Vec::with_capacity(ids.len());
        for p in batch {
            let _ = p.reply.send(Ok(JobRecord::recorded(&p.row, now, false)));
            jobs.push(p.job);
        }
        match self.publish_prepared(jobs).await {
            Ok(()) => self.to_mark(store, ids),
            Err(e) => super::enqueue::log_deferred(&ids, &e),
        }
    }

    /// Hands published ids to the marker (starting it if it is not at work).
    fn to_mark(&self, store: &Arc<dyn JobStore>, ids: Vec<Uuid>) {
        let start = {
            let mut st = self.inner.submits.lock();
            st.to_mark.extend(ids);
            !std::mem::replace(&mut st.marking, true)
        };
        if start {
            let (client, store) = (self.clone(), store.clone());
            tokio::spawn(async move { client.run_marker(store).await });
        }
    }

    /// Marks what was published, every [`MARK_LINGER`], until nothing is left.
    async fn run_marker(&self, store: Arc<dyn JobStore>) {
        loop {
            tokio::time::sleep(MARK_LINGER).await;
            let ids = {
                let mut st = self.inner.submits.lock();
                if st.to_mark.is_empty() {
                    st.marking = false;
                    drop(st);
                    self.inner.submits.idle.notify_waiters();
                    return;
                }
                std::mem::take(&mut st.to_mark)
            };
            let _turn = self.store_turn(&store).await;
            self.mark_published(&store, &ids).await;
        }
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;
    use crate::broker::recording::{Call, RecordingBroker};
    use crate::envelope::Envelope;
    use crate::store::SqlStore;
    use crate::ClientConfig;

    /// 200 concurrent submits: each is answered once its job is recorded; they share store
    /// batches and publish requests; after `flush` every job is published once and marked.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_submits_share_batches_and_each_is_published_once_and_marked() {
        let store: Arc<dyn JobStore> =
            Arc::new(SqlStore::connect("sqlite::memory:").await.unwrap());
        let broker = RecordingBroker::default();
        let client = Client::with_broker(Arc::new(broker.clone()), ClientConfig::default())
            .with_store(store.clone());
        client.ensure_queue("jobs").await.unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..200 {
            let client = client.clone();
            tasks.spawn(async move {
                let env = Envelope::new("J", "jobs", serde_json::json!({ "n": n }));
                let id = env.job_id;
                let submission = client.submit(env, None).await.unwrap();
                (id, submission)
            });
        }
        let mut ids = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let (id, submission) = done.unwrap();
            assert_eq!(submission.job_id, id);
            assert!(!submission.existing);
            // Answered once durable: the row is there.
            assert!(
                store.get(id).await.unwrap().is_some(),
                "{id} recorded when answered"
            );
            ids.push(id);
        }
        client.flush().await;
        let published: Vec<Uuid> = broker
            .inner
            .pending("jobs")
            .iter()
            .map(|(d, a)| Envelope::decode(d, a).unwrap().job_id)
            .collect();
        assert_eq!(published.len(), 200, "each once");
        let mut sorted = published.clone();
        sorted.sort();
        ids.sort();
        assert_eq!(sorted, ids);
        let requests = broker
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::Publish(t, _) if t == "jobs"))
            .count();
        assert!(requests < 200, "publishes are shared: {requests} requests");
        for id in &ids {
            let rec = store.get(*id).await.unwrap().unwrap();
            assert!(rec.published_at.is_some(), "{id} marked published");
        }
    }
}
