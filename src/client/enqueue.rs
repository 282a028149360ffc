//! Enqueueing: the start of a job's life. `perform_later` (and `set()`, `perform_all_later`,
//! enqueue by class name) turn jobs into [`Envelope`]s, record them in the job store when the
//! client has one (claiming a dedup key), and hand them to publishing.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Client;
use crate::envelope::{due_after, Envelope, Wire};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::registry::Registry;
use crate::store::{
    Dedup, JobRecord, JobStore, NewJob, OutboxMessage, Submitted, DEFAULT_DEDUP_WINDOW,
};

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
    /// Enqueues one job: checks it, records it in the store's outbox (claiming its dedup key, if
    /// any), publishes it, and marks it published. If the publish fails, the job stays in the
    /// outbox and the relay ([`Relay`](crate::relay::Relay)) publishes it: the enqueue still
    /// succeeds, because the job is durable. With the dedup key held by another job within its
    /// window, records nothing and returns that job, publishing it first if it is still in the
    /// outbox (a job whose enqueuer died before publishing is never a ghost).
    pub async fn submit(&self, env: Envelope, dedup: Option<Dedup>) -> Result<Submission> {
        let now = Utc::now();
        let body = self.check_envelope(&env, now)?;
        let Some(store) = self.store() else {
            if dedup.is_some() {
                return Err(Error::Config(format!(
                    "job class {}: a dedup key needs a job store (Client::with_store, --store)",
                    env.job_class
                )));
            }
            let job_id = env.job_id;
            self.publish_envelopes(vec![env], vec![body]).await?;
            return Ok(Submission {
                job_id,
                existing: false,
                record: None,
            });
        };
        let message = self.outbox_message(&env, body.clone(), now);
        if dedup.is_none() {
            // Concurrent submits share one store transaction and one publish.
            let job_id = env.job_id;
            let job = new_job(&env, None, Some(message));
            let record = self.submit_batched(store, env, body, job).await?;
            return Ok(Submission {
                job_id,
                existing: false,
                record: Some(Box::new(record)),
            });
        }
        let record = match store.submit(new_job(&env, dedup, Some(message))).await? {
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
        let job_id = env.job_id;
        self.publish_recorded(store, env, body).await;
        Ok(Submission {
            job_id,
            existing: false,
            record: Some(record),
        })
    }

    /// Checks an envelope and makes its outbox record (the store row with the message to
    /// publish) and its body, for [`Client::publish_recorded`] once the record is committed.
    #[cfg_attr(not(feature = "periodic"), allow(dead_code))]
    pub(crate) fn outbox_record(&self, env: &Envelope) -> Result<(NewJob, Vec<u8>)> {
        let now = Utc::now();
        let body = self.check_envelope(env, now)?;
        let message = self.outbox_message(env, body.clone(), now);
        Ok((new_job(env, None, Some(message)), body))
    }

    /// Publishes a job recorded in the outbox and marks it published. A failed publish is
    /// logged (`job.publish_deferred`) and left to the relay: the job is durable. Returns
    /// whether it was published now.
    pub(crate) async fn publish_recorded(
        &self,
        store: &Arc<dyn JobStore>,
        env: Envelope,
        body: Vec<u8>,
    ) -> bool {
        let job_id = env.job_id;
        match self.publish_envelopes(vec![env], vec![body]).await {
            Ok(()) => {
                self.mark_published(store, &[job_id]).await;
                true
            }
            Err(e) => {
                tracing::warn!(
                    event = "job.publish_deferred",
                    job_id = %job_id,
                    error = %e,
                    "publish failed; the job is in the outbox and the relay publishes it"
                );
                false
            }
        }
    }

    /// The outbox entry of an envelope whose body is `data`.
    pub(super) fn outbox_message(
        &self,
        env: &Envelope,
        data: Vec<u8>,
        now: DateTime<Utc>,
    ) -> OutboxMessage {
        OutboxMessage {
            topic: self.topic_for(env, now),
            data,
            attributes: env.attributes(),
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

    /// Checks envelopes, records them in the store's outbox, publishes them, and marks them
    /// published; a failed publish leaves them to the relay.
    async fn submit_all(&self, store: &Arc<dyn JobStore>, envelopes: Vec<Envelope>) -> Result<()> {
        let now = Utc::now();
        let bodies = envelopes
            .iter()
            .map(|env| self.check_envelope(env, now))
            .collect::<Result<Vec<_>>>()?;
        let ids: Vec<Uuid> = envelopes.iter().map(|e| e.job_id).collect();
        store
            .submit_many(
                envelopes
                    .iter()
                    .zip(&bodies)
                    .map(|(e, b)| new_job(e, None, Some(self.outbox_message(e, b.clone(), now))))
                    .collect(),
            )
            .await?;
        match self.publish_envelopes(envelopes, bodies).await {
            Ok(()) => self.mark_published(store, &ids).await,
            Err(e) => tracing::warn!(
                event = "job.publish_deferred",
                jobs = ids.len(),
                error = %e,
                "publish failed; the jobs are in the outbox and the relay publishes them"
            ),
        }
        Ok(())
    }

    /// Enqueues many jobs in batched publishes (ActiveJob's `perform_all_later`); returns their
    /// ids in order once all were accepted.
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

    async fn bulk<J: Job>(
        &self,
        queue: Option<&str>,
        jobs: impl IntoIterator<Item = J>,
    ) -> Result<Vec<Uuid>> {
        if self.store().is_some() || J::WIRE != Wire::PubsubJobs {
            // The store keeps the arguments, and the ActiveJob wire reshapes them: build them as
            // JSON values.
            let envelopes = jobs
                .into_iter()
                .map(|j| envelope_for(&j, queue, None))
                .collect::<Result<Vec<_>>>()?;
            let ids = envelopes.iter().map(|e| e.job_id).collect();
            match self.store() {
                Some(store) => self.submit_all(store, envelopes).await?,
                None => self.enqueue_envelopes(envelopes).await?,
            }
            return Ok(ids);
        }
        // Without a store, serialize each job straight into its message body, once.
        let (mut envelopes, mut bodies) = (Vec::new(), Vec::new());
        for job in jobs {
            let env = Envelope::new(
                J::NAME,
                queue.unwrap_or_else(|| job.queue()),
                serde_json::Value::Null,
            );
            let body = env.body_with(&job).map_err(|source| Error::Serialize {
                job_class: J::NAME.to_string(),
                source,
            })?;
            envelopes.push(env);
            bodies.push(body);
        }
        let ids = envelopes.iter().map(|e| e.job_id).collect();
        self.publish_envelopes(envelopes, bodies).await?;
        Ok(ids)
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

fn new_job(env: &Envelope, dedup: Option<Dedup>, message: Option<OutboxMessage>) -> NewJob {
    NewJob {
        id: env.job_id,
        job_class: env.job_class.clone(),
        queue: env.queue_name.clone(),
        arguments: env.arguments.clone(),
        enqueued_at: env.enqueued_at,
        scheduled_at: env.scheduled_at,
        dedup,
        message,
    }
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
    /// relay of any worker (or `worker api`, `worker relay`) publishes it at once. No dedup key.
    #[cfg(feature = "sql")]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
    pub async fn perform_later_in<T: crate::store::EnqueueTx>(self, tx: &mut T) -> Result<Uuid> {
        if self.dedup.is_some() {
            return Err(Error::Config(format!(
                "job class {}: a dedup key is not supported inside a transaction",
                J::NAME
            )));
        }
        let at = match (self.at, self.wait) {
            (Some(at), _) => Some(at),
            (None, Some(w)) => Some(due_after(w)),
            (None, None) => None,
        };
        let env = envelope_for(self.job, self.queue.as_deref(), at)?;
        crate::queue::validate_queue_name("", &env.queue_name)?;
        tx.insert_outbox(&env).await?;
        Ok(env.job_id)
    }

    /// Publishes the job; returns its id once Pub/Sub has accepted the message.
    pub async fn perform_later(self, client: &Client) -> Result<Uuid> {
        let at = match (self.at, self.wait) {
            (Some(at), _) => Some(at),
            (None, Some(w)) => Some(due_after(w)),
            (None, None) => None,
        };
        let env = envelope_for(self.job, self.queue.as_deref(), at)?;
        Ok(client.submit(env, self.dedup).await?.job_id)
    }
}
