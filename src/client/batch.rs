//! Batched submits: where concurrent enqueues on one client with a job store meet. Each caller
//! adds its checked job to a queue; whoever finds no batch running starts one (a task, so a
//! caller that goes away does not strand the others), which takes everything queued: one store
//! transaction for all of them (multi-row inserts into the outbox), one publish per topic, one
//! mark. Each caller is answered once its own job is durable in the store. As many batches run
//! at once as the store commits side by side (`JobStore::batch_writers`); while they run, new jobs queue for the next, so the batch size follows the load
//! with no timer.
//!
//! Jobs with a dedup key do not come here: their key is claimed one job at a time.

use std::sync::{Arc, Mutex};

use chrono::Utc;
use tokio::sync::oneshot;

use super::Client;
use crate::envelope::Envelope;
use crate::error::{Error, Result};
use crate::store::{JobRecord, JobStore, NewJob, Submitted};

struct Pending {
    env: Envelope,
    body: Vec<u8>,
    job: NewJob,
    reply: oneshot::Sender<Result<JobRecord>>,
}

/// The queue of submits waiting for a batch.
#[derive(Default)]
pub(super) struct SubmitQueue {
    state: Mutex<State>,
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
}

impl Client {
    /// Records `job` (the outbox row of `env`, whose body is `body`) in the next batch and
    /// publishes it with the batch; returns its record once it is durable.
    pub(super) async fn submit_batched(
        &self,
        store: &Arc<dyn JobStore>,
        env: Envelope,
        body: Vec<u8>,
        job: NewJob,
    ) -> Result<JobRecord> {
        let (reply, answer) = oneshot::channel();
        let lead = {
            let mut st = self.inner.submits.lock();
            st.pending.push(Pending {
                env,
                body,
                job,
                reply,
            });
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

    /// Runs batches until nothing is queued.
    async fn run_batches(&self, store: Arc<dyn JobStore>) {
        loop {
            let batch = {
                let mut st = self.inner.submits.lock();
                if st.pending.is_empty() {
                    st.running -= 1;
                    return;
                }
                std::mem::take(&mut st.pending)
            };
            self.submit_batch(&store, batch).await;
        }
    }

    async fn submit_batch(&self, store: &Arc<dyn JobStore>, batch: Vec<Pending>) {
        let jobs: Vec<NewJob> = batch.iter().map(|p| p.job.clone()).collect();
        if let Err(e) = store.submit_many(jobs).await {
            // One by one: one job's trouble (or a store that is down) answers each its own.
            tracing::debug!(error = %e, jobs = batch.len(), "job store: a submit batch failed; recording one by one");
            for p in batch {
                let result = match store.submit(p.job.clone()).await {
                    Ok(Submitted::Created(rec)) => {
                        self.publish_recorded(store, p.env, p.body).await;
                        Ok(*rec)
                    }
                    Ok(Submitted::Existing(rec)) => Ok(*rec),
                    Err(e) => Err(e.into()),
                };
                let _ = p.reply.send(result);
            }
            return;
        }
        let now = Utc::now();
        let ids: Vec<_> = batch.iter().map(|p| p.job.id).collect();
        let (mut envs, mut bodies, mut rest) = (Vec::new(), Vec::new(), Vec::new());
        for p in batch {
            envs.push(p.env);
            bodies.push(p.body);
            rest.push((p.job, p.reply));
        }
        let published = match self.publish_envelopes(envs, bodies).await {
            Ok(()) => {
                self.mark_published(store, &ids).await;
                true
            }
            Err(e) => {
                tracing::warn!(
                    event = "job.publish_deferred",
                    jobs = ids.len(),
                    error = %e,
                    "publish failed; the jobs are in the outbox and the relay publishes them"
                );
                false
            }
        };
        for (job, reply) in rest {
            let _ = reply.send(Ok(JobRecord::recorded(&job, now, published)));
        }
    }
}
