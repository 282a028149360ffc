//! Enqueueing typed jobs: the job API above the envelope-level [`Client`]. Two axes (one job or
//! many; inside the application's transaction or not) plus `set()`:
//!
//! | | one | many |
//! |---|---|---|
//! | now | `job.perform_later(&client)` | `client.perform_all_later(jobs)` |
//! | in your transaction | `job.perform_later_in(&client, &mut tx)` | `client.perform_all_later_in(&mut tx, jobs)` |
//!
//! `job.set()` adds a delay, an exact time, another queue or a dedup key to one enqueue;
//! `perform_all_later_on` / `perform_all_later_in_on` send many to another queue. Each builds an
//! [`Envelope`] and hands it to the client's one path (prepare, record, publish, mark:
//! `src/client/`); `Client::enqueue_by_name` (`src/registry.rs`) does the same for a class given by name.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Job;
use crate::client::prepare::Prepared;
use crate::client::Client;
use crate::envelope::{due_after, Envelope, Wire};
use crate::error::{Error, Result};
use crate::store::{Dedup, DEFAULT_DEDUP_WINDOW};

impl Client {
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
        let envelopes = envelopes_for(queue, jobs)?;
        self.record_in(tx, envelopes).await
    }

    /// Prepares jobs with their arguments as JSON values (what a store keeps and the ActiveJob
    /// wire reshapes), in a vector sized once: a bulk of 100,000 jobs grown by doubling spent a
    /// fifth of its time copying and faulting in memory.
    fn prepare_values<J: Job>(
        &self,
        queue: Option<&str>,
        jobs: impl IntoIterator<Item = J>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Prepared>> {
        let jobs = jobs.into_iter();
        let mut prepared = Vec::with_capacity(jobs.size_hint().0);
        for j in jobs {
            prepared.push(self.prepare(envelope_for(&j, queue, None)?, now)?);
        }
        Ok(prepared)
    }

    async fn bulk<J: Job>(
        &self,
        queue: Option<&str>,
        jobs: impl IntoIterator<Item = J>,
    ) -> Result<Vec<Uuid>> {
        if !self.middleware().is_empty() {
            // The hooks see (and may change) each job's envelope before it is checked.
            return self.submit_all(envelopes_for(queue, jobs)?).await;
        }
        let now = Utc::now();
        // A traced enqueue writes each job's trace context into its envelope first.
        if self.store().is_some() || J::WIRE != Wire::PubsubJobs || self.traced() {
            let prepared = self.prepare_values(queue, jobs, now)?;
            return self.submit_prepared(prepared).await;
        }
        // Without a store, serialize each job straight into its message body, once.
        let jobs = jobs.into_iter();
        let mut prepared = Vec::with_capacity(jobs.size_hint().0);
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
            prepared.push(self.prepare_with_body(env, body, now)?);
        }
        self.submit_prepared(prepared).await
    }
}

/// The envelopes of a bulk, in a vector sized once.
fn envelopes_for<J: Job>(
    queue: Option<&str>,
    jobs: impl IntoIterator<Item = J>,
) -> Result<Vec<Envelope>> {
    let jobs = jobs.into_iter();
    let mut envelopes = Vec::with_capacity(jobs.size_hint().0);
    for j in jobs {
        envelopes.push(envelope_for(&j, queue, None)?);
    }
    Ok(envelopes)
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
#[derive(Debug)]
pub struct ConfiguredJob<'a, J: Job> {
    job: &'a J,
    queue: Option<String>,
    at: Option<DateTime<Utc>>,
    wait: Option<Duration>,
    dedup: Option<DedupBy>,
}

/// How a [`ConfiguredJob`] is deduplicated: by a key, or by its arguments.
#[derive(Debug)]
enum DedupBy {
    Key(Dedup),
    Arguments {
        fields: Option<Vec<String>>,
        window: Duration,
    },
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
        self.dedup = Some(DedupBy::Key(Dedup {
            key: key.into(),
            window,
        }));
        self
    }

    /// Unique by its arguments within `window`: while a job of this class on this queue with
    /// equal arguments was enqueued less than `window` ago, an enqueue returns that job's id and
    /// publishes nothing. Its key is [`Dedup::by_arguments`]; it replaces a dedup key given
    /// before. Needs a job store ([`Client::with_store`]).
    pub fn unique_within(mut self, window: Duration) -> Self {
        self.dedup = Some(DedupBy::Arguments {
            fields: None,
            window,
        });
        self
    }

    /// Like [`ConfiguredJob::unique_within`], comparing only the top-level argument `fields`
    /// (a job's `object_id`, not the note it carries); an enqueue whose arguments lack one is
    /// refused, naming it.
    pub fn unique_by(mut self, fields: &[&str], window: Duration) -> Self {
        self.dedup = Some(DedupBy::Arguments {
            fields: Some(fields.iter().map(|f| f.to_string()).collect()),
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
    /// is written. No dedup key, nor uniqueness.
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
        let (job_class, queue) = (env.job_class.clone(), env.queue_name.clone());
        let ids = client.record_in(tx, vec![env]).await?;
        ids.first()
            .copied()
            .ok_or(Error::EnqueueSkipped { job_class, queue })
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
        let dedup = match self.dedup {
            None => None,
            Some(DedupBy::Key(d)) => Some(d),
            Some(DedupBy::Arguments { fields, window }) => Some(Dedup::by_arguments(
                &env.job_class,
                &env.queue_name,
                &env.arguments,
                fields.as_deref(),
                window,
            )?),
        };
        Ok(client.submit(env, dedup).await?.job_id)
    }
}
