//! Enqueueing: the start of a job's life, on two axes (one job or many; inside the application's
//! transaction or not) plus `set()`: `perform_later`, `perform_all_later`, `perform_later_in`,
//! `perform_all_later_in`, and the envelope-level `submit` / `submit_all` that the API and the
//! CLI use. Every one of them goes the same way: [`prepare`](super::prepare) (checked once),
//! *record* in the store's outbox when the client has one (claiming a dedup key), *publish*
//! ([`publish`](super::publish)), *mark* published. A job recorded inside the application's
//! transaction is published by the relay once it commits.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::prepare::Prepared;
use super::Client;
use crate::envelope::{due_after, Envelope, Wire};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::registry::Registry;
#[cfg(feature = "sql")]
use crate::store::NewJob;
use crate::store::{Dedup, JobRecord, JobStore, Submitted, DEFAULT_DEDUP_WINDOW};

/// What [`Client::submit`] did.
#[derive(Clone, Debug)]
pub struct Submission {
    /// The job's id: the new job's, or the one holding the dedup key.
    pub job_id: Uuid,
    /// True when the dedup key was taken within its window and nothing was published.
    pub existing: bool,
    /// The job's stored state, when the client has a store.
    pub record: Option<Box<JobRecord>>,
}

impl Client {
    /// Enqueues one job: prepares it (checks it, makes its message), records it in the store's
    /// outbox (claiming its dedup key, if any), publishes it, and marks it published. If the
    /// publish fails, the job stays in the outbox and the relay ([`Relay`](crate::relay::Relay))
    /// publishes it: the enqueue still succeeds, because the job is durable. With the dedup key
    /// held by another job within its window, records nothing and returns that job, publishing
    /// it first if it is still in the outbox (a job whose enqueuer died before publishing is
    /// never a ghost).
    pub async fn submit(&self, env: Envelope, dedup: Option<Dedup>) -> Result<Submission> {
        let job = self.prepare(env, Utc::now())?;
        let job_id = job.env.job_id;
        let Some(store) = self.store() else {
            if dedup.is_some() {
                return Err(Error::StoreRequired {
                    what: format!("job class {}: a dedup key", job.env.job_class),
                });
            }
            self.publish_prepared(vec![job]).await?;
            return Ok(Submission {
                job_id,
                existing: false,
                record: None,
            });
        };
        if dedup.is_none() {
            // Concurrent submits share one store transaction and one publish.
            let record = self.submit_batched(store, job).await?;
            return Ok(Submission {
                job_id,
                existing: false,
                record: Some(Box::new(record)),
            });
        }
        let record = match store.submit(job.new_job(dedup)).await? {
            Submitted::Existing(rec) => {
                tracing::info!(event = "job.deduplicated", job_id = %rec.id, job_class = %rec.job_class, queue = %rec.queue, "dedup key held: returning the existing job");
                if rec.published_at.is_none() {
                    self.publish_from_outbox(store, Some(&[rec.id])).await;
                }
                return Ok(Submission {
                    job_id: rec.id,
                    existing: true,
                    record: Some(rec),
                });
            }
            Submitted::Created(rec) => rec,
        };
        self.publish_recorded(store, vec![job]).await;
        Ok(Submission {
            job_id,
            existing: false,
            record: Some(record),
        })
    }

    /// Enqueues many envelopes: prepares every one first (nothing is written if one is
    /// refused), records them in the store's outbox in one transaction when the client has a
    /// store, publishes them in batched requests, and marks them published. Returns their ids
    /// in order.
    pub async fn submit_all(&self, envelopes: Vec<Envelope>) -> Result<Vec<Uuid>> {
        let now = Utc::now();
        let jobs = envelopes
            .into_iter()
            .map(|env| self.prepare(env, now))
            .collect::<Result<Vec<_>>>()?;
        self.submit_prepared(jobs).await
    }

    /// Records (with a store) and publishes prepared jobs; returns their ids in order.
    async fn submit_prepared(&self, jobs: Vec<Prepared>) -> Result<Vec<Uuid>> {
        let ids: Vec<Uuid> = jobs.iter().map(|p| p.env.job_id).collect();
        match self.store() {
            Some(store) => {
                store
                    .submit_many(jobs.iter().map(|p| p.new_job(None)).collect())
                    .await?;
                self.publish_recorded(store, jobs).await;
            }
            None => self.publish_prepared(jobs).await?,
        }
        Ok(ids)
    }

    /// Publishes jobs recorded in the outbox and marks them published. A failed publish is
    /// logged (`job.publish_deferred`) and left to the relay: the jobs are durable. Returns
    /// whether they were published now.
    pub(crate) async fn publish_recorded(
        &self,
        store: &Arc<dyn JobStore>,
        jobs: Vec<Prepared>,
    ) -> bool {
        let ids: Vec<Uuid> = jobs.iter().map(|p| p.env.job_id).collect();
        match self.publish_prepared(jobs).await {
            Ok(()) => {
                self.mark_published(store, &ids).await;
                true
            }
            Err(e) => {
                log_deferred(&ids, &e);
                false
            }
        }
    }

    /// Marks jobs published; a failure is logged (the relay then publishes them again: a
    /// duplicate delivery, never a loss).
    pub(super) async fn mark_published(&self, store: &Arc<dyn JobStore>, ids: &[Uuid]) {
        if let Err(e) = store.mark_published(ids).await {
            tracing::warn!(error = %e, jobs = ids.len(), "job store: could not mark jobs published; the relay may publish them again");
        }
    }

    /// Publishes the outbox's jobs `only` (whatever their age; `None`: every unpublished one),
    /// claiming them first so that a relay does not publish them at the same time. Returns how
    /// many were published; a failure is logged and left to the relay.
    pub(crate) async fn publish_from_outbox(
        &self,
        store: &Arc<dyn JobStore>,
        only: Option<&[Uuid]>,
    ) -> usize {
        match crate::relay::publish_claimed(self, store, DateTime::<Utc>::MAX_UTC, only, 500).await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "could not publish from the outbox; the relay retries");
                0
            }
        }
    }

    /// Enqueues many jobs in batched publishes (ActiveJob's `perform_all_later`); returns their
    /// ids in order once all were accepted (with a store: once all are durable in it).
    pub async fn perform_all_later<J: Job>(
        &self,
        jobs: impl IntoIterator<Item = J>,
    ) -> Result<Vec<Uuid>> {
        self.bulk(None, jobs).await
    }

    /// Like [`Client::perform_all_later`], but every job goes to `queue`.
    pub async fn perform_all_later_on<J: Job>(
        &self,
        queue: &str,
        jobs: impl IntoIterator<Item = J>,
    ) -> Result<Vec<Uuid>> {
        self.bulk(Some(queue), jobs).await
    }

    /// Writes many jobs inside the application's own transaction `tx` on the job store's
    /// database (see [`ConfiguredJob::perform_later_in`]); each is prepared first, so nothing is
    /// written if one is refused. Returns their ids in order.
    #[cfg(feature = "sql")]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
    pub async fn perform_all_later_in<J: Job, T: crate::store::EnqueueTx>(
        &self,
        tx: &mut T,
        jobs: impl IntoIterator<Item = J>,
    ) -> Result<Vec<Uuid>> {
        self.bulk_in(None, tx, jobs).await
    }

    /// Like [`Client::perform_all_later_in`], but every job goes to `queue`.
    #[cfg(feature = "sql")]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
    pub async fn perform_all_later_in_on<J: Job, T: crate::store::EnqueueTx>(
        &self,
        queue: &str,
        tx: &mut T,
        jobs: impl IntoIterator<Item = J>,
    ) -> Result<Vec<Uuid>> {
        self.bulk_in(Some(queue), tx, jobs).await
    }

    #[cfg(feature = "sql")]
    async fn bulk_in<J: Job, T: crate::store::EnqueueTx>(
        &self,
        queue: Option<&str>,
        tx: &mut T,
        jobs: impl IntoIterator<Item = J>,
    ) -> Result<Vec<Uuid>> {
        let now = Utc::now();
        let prepared = jobs
            .into_iter()
            .map(|j| self.prepare(envelope_for(&j, queue, None)?, now))
            .collect::<Result<Vec<_>>>()?;
        self.record_in(tx, prepared).await
    }

    /// Records prepared jobs in the application's transaction: the relay publishes them once it
    /// commits.
    #[cfg(feature = "sql")]
    async fn record_in<T: crate::store::EnqueueTx>(
        &self,
        tx: &mut T,
        jobs: Vec<Prepared>,
    ) -> Result<Vec<Uuid>> {
        let rows: Vec<NewJob> = jobs.iter().map(|p| p.new_job(None)).collect();
        tx.insert_outbox(&rows).await?;
        Ok(rows.iter().map(|r| r.id).collect())
    }

    async fn bulk<J: Job>(
        &self,
        queue: Option<&str>,
        jobs: impl IntoIterator<Item = J>,
    ) -> Result<Vec<Uuid>> {
        let now = Utc::now();
        let prepared = if self.store().is_some() || J::WIRE != Wire::PubsubJobs {
            // The store keeps the arguments, and the ActiveJob wire reshapes them: build them as
            // JSON values.
            jobs.into_iter()
                .map(|j| self.prepare(envelope_for(&j, queue, None)?, now))
                .collect::<Result<Vec<_>>>()?
        } else {
            // Without a store, serialize each job straight into its message body, once.
            jobs.into_iter()
                .map(|job| {
                    let env = Envelope::new(
                        J::NAME,
                        queue.unwrap_or_else(|| job.queue()),
                        serde_json::Value::Null,
                    );
                    let body = env.body_with(&job).map_err(|source| Error::Serialize {
                        job_class: J::NAME.to_string(),
                        source,
                    })?;
                    self.prepare_with_body(env, body, now)
                })
                .collect::<Result<Vec<_>>>()?
        };
        self.submit_prepared(prepared).await
    }

    /// Enqueues a job given by class name and JSON arguments, as the CLI does. The class must
    /// be in `registry` and the arguments must deserialize into it (checked once, here); the job
    /// goes to `queue`, or to its own queue ([`Job::queue`]) when `None`.
    pub async fn enqueue_by_name(
        &self,
        registry: &Registry,
        job_class: &str,
        arguments: serde_json::Value,
        queue: Option<&str>,
        scheduled_at: Option<DateTime<Utc>>,
    ) -> Result<Envelope> {
        let job = registry.decode(job_class, arguments.clone())?;
        let queue = queue.unwrap_or_else(|| job.queue_erased());
        let mut env = Envelope::new(job_class, queue, arguments);
        env.scheduled_at = scheduled_at;
        self.submit(env.clone(), None).await?;
        Ok(env)
    }
}

/// Logs jobs whose publish failed after they were recorded: the relay publishes them.
pub(super) fn log_deferred(ids: &[Uuid], e: &Error) {
    tracing::warn!(
        event = "job.publish_deferred",
        job_id = %ids.first().map(Uuid::to_string).unwrap_or_default(),
        jobs = ids.len(),
        error = %e,
        "publish failed; the jobs are in the outbox and the relay publishes them"
    );
}

fn envelope_for<J: Job>(
    job: &J,
    queue: Option<&str>,
    at: Option<DateTime<Utc>>,
) -> Result<Envelope> {
    let arguments = serde_json::to_value(job).map_err(|source| Error::Serialize {
        job_class: J::NAME.to_string(),
        source,
    })?;
    let mut env = Envelope::new(J::NAME, queue.unwrap_or_else(|| job.queue()), arguments);
    env.scheduled_at = at;
    env.wire = J::WIRE;
    Ok(env)
}

/// A job with options for one enqueue, from [`Job::set`].
pub struct ConfiguredJob<'a, J: Job> {
    job: &'a J,
    queue: Option<String>,
    at: Option<DateTime<Utc>>,
    wait: Option<Duration>,
    dedup: Option<Dedup>,
}

impl<'a, J: Job> ConfiguredJob<'a, J> {
    pub(crate) fn new(job: &'a J) -> Self {
        Self {
            job,
            queue: None,
            at: None,
            wait: None,
            dedup: None,
        }
    }

    /// Runs the job no earlier than `wait` from now.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self.at = None;
        self
    }

    /// Runs the job no earlier than `at`.
    pub fn wait_until(mut self, at: DateTime<Utc>) -> Self {
        self.at = Some(at);
        self.wait = None;
        self
    }

    /// At most one job with this key within 5 minutes: a second enqueue returns the first
    /// job's id and publishes nothing. Needs a job store ([`Client::with_store`]).
    pub fn dedup_key(self, key: impl Into<String>) -> Self {
        self.dedup_key_within(key, DEFAULT_DEDUP_WINDOW)
    }

    /// Like [`ConfiguredJob::dedup_key`] with another window.
    pub fn dedup_key_within(mut self, key: impl Into<String>, window: Duration) -> Self {
        self.dedup = Some(Dedup {
            key: key.into(),
            window,
        });
        self
    }

    /// Publishes to another queue than [`Job::queue`].
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Writes the job inside the application's own transaction `tx` on the job store's database
    /// (River's `InsertTx`): if `tx` rolls back, the job never exists; once it commits, the
    /// relay of any worker (or `worker api`, `worker relay`) publishes it at once. It is checked
    /// first like every enqueue (the queue name with `client`'s prefix, Pub/Sub's size limit,
    /// the 7-day retention), so a job that could never be published is refused before anything
    /// is written. No dedup key.
    #[cfg(feature = "sql")]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
    pub async fn perform_later_in<T: crate::store::EnqueueTx>(
        self,
        client: &Client,
        tx: &mut T,
    ) -> Result<Uuid> {
        if self.dedup.is_some() {
            return Err(Error::Config(format!(
                "job class {}: a dedup key is not supported inside a transaction",
                J::NAME
            )));
        }
        let env = self.envelope()?;
        let job = client.prepare(env, Utc::now())?;
        let ids = client.record_in(tx, vec![job]).await?;
        Ok(ids[0])
    }

    /// The envelope of this enqueue.
    fn envelope(&self) -> Result<Envelope> {
        let at = match (self.at, self.wait) {
            (Some(at), _) => Some(at),
            (None, Some(w)) => Some(due_after(w)),
            (None, None) => None,
        };
        envelope_for(self.job, self.queue.as_deref(), at)
    }

    /// Publishes the job; returns its id once Pub/Sub has accepted the message.
    pub async fn perform_later(self, client: &Client) -> Result<Uuid> {
        let env = self.envelope()?;
        Ok(client.submit(env, self.dedup).await?.job_id)
    }
}
