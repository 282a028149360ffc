//! Enqueueing envelopes: the one path every job takes into the system. The typed job API
//! (`perform_later`, `perform_all_later`, `perform_later_in`, ...: `src/job/enqueue.rs`), the HTTP
//! API, the dashboard and the CLI all end here, in [`Client::submit`] / [`Client::submit_all`]
//! or, inside the application's transaction, in `record_in`. Every one goes the same way:
//! *prepare* (`prepare.rs`: checked once), *record* in the store's outbox when the client has
//! one (claiming a dedup key; concurrent submits share one transaction in `batch.rs`), *publish*
//! (`publish.rs`), *mark* published. A job recorded inside the application's transaction is
//! published by the relay once it commits.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::prepare::Prepared;
use super::Client;
use crate::envelope::Envelope;
use crate::error::{Error, Result};
use crate::middleware::EnqueueSource;
#[cfg(feature = "sql")]
use crate::store::NewJob;
use crate::store::{Dedup, JobRecord, JobStore, Submitted};

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
    ///
    /// With [`middleware`](crate::middleware), the envelope passes through every `enqueue` hook
    /// first; one that leaves the job out makes this an [`Error::EnqueueSkipped`].
    pub async fn submit(&self, env: Envelope, dedup: Option<Dedup>) -> Result<Submission> {
        if self.middleware().is_empty() {
            return self.submit_one(env, dedup).await;
        }
        Box::pin(self.submit_through_middleware(env, dedup)).await
    }

    /// [`Client::submit`] through the middleware's `enqueue` hooks.
    async fn submit_through_middleware(
        &self,
        env: Envelope,
        dedup: Option<Dedup>,
    ) -> Result<Submission> {
        let (job_class, queue) = (env.job_class.clone(), env.queue_name.clone());
        let mut submitted = None;
        let slot = &mut submitted;
        let ids = self
            .middleware()
            .enqueue(EnqueueSource::Client, vec![env], move |mut jobs| {
                Box::pin(async move {
                    if jobs.len() > 1 {
                        if dedup.is_some() {
                            return Err(Error::Config(format!(
                                "job class {}: a middleware turned one enqueue with a dedup key into {} jobs",
                                jobs[0].job_class,
                                jobs.len()
                            )));
                        }
                        return self.submit_all_now(jobs).await;
                    }
                    let Some(env) = jobs.pop() else {
                        return Ok(Vec::new());
                    };
                    let s = self.submit_one(env, dedup).await?;
                    let id = s.job_id;
                    *slot = Some(s);
                    Ok(vec![id])
                })
            })
            .await?;
        match (submitted, ids.first()) {
            (Some(s), _) => Ok(s),
            (None, Some(&job_id)) => Ok(Submission {
                job_id,
                existing: false,
                record: None,
            }),
            (None, None) => Err(Error::EnqueueSkipped { job_class, queue }),
        }
    }

    /// [`Client::submit`] past the middleware.
    async fn submit_one(&self, env: Envelope, dedup: Option<Dedup>) -> Result<Submission> {
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
    /// in order (with [`middleware`](crate::middleware), of the jobs its `enqueue` hooks let
    /// through).
    pub async fn submit_all(&self, envelopes: Vec<Envelope>) -> Result<Vec<Uuid>> {
        if self.middleware().is_empty() {
            return self.submit_all_now(envelopes).await;
        }
        self.middleware()
            .enqueue(EnqueueSource::Client, envelopes, |jobs| {
                Box::pin(self.submit_all_now(jobs))
            })
            .await
    }

    /// [`Client::submit_all`] past the middleware.
    async fn submit_all_now(&self, envelopes: Vec<Envelope>) -> Result<Vec<Uuid>> {
        let jobs = self.prepare_all(envelopes, Utc::now())?;
        self.submit_prepared(jobs).await
    }

    /// Records (with a store) and publishes prepared jobs; returns their ids in order.
    pub(crate) async fn submit_prepared(&self, jobs: Vec<Prepared>) -> Result<Vec<Uuid>> {
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
        match self
            .publish_outbox(store, DateTime::<Utc>::MAX_UTC, only, 500, OUTBOX_LEASE)
            .await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "could not publish from the outbox; the relay retries");
                0
            }
        }
    }

    /// Records jobs in the application's transaction, through the middleware's `enqueue` hooks
    /// ([`EnqueueSource::Transaction`]): the relay publishes them once it commits. Every one is
    /// checked first; nothing is written if one is refused.
    #[cfg(feature = "sql")]
    pub(crate) async fn record_in<T: crate::store::EnqueueTx>(
        &self,
        tx: &mut T,
        envelopes: Vec<Envelope>,
    ) -> Result<Vec<Uuid>> {
        if self.middleware().is_empty() {
            return self.record_in_now(tx, envelopes).await;
        }
        self.middleware()
            .enqueue(EnqueueSource::Transaction, envelopes, move |jobs| {
                Box::pin(self.record_in_now(tx, jobs))
            })
            .await
    }

    #[cfg(feature = "sql")]
    async fn record_in_now<T: crate::store::EnqueueTx>(
        &self,
        tx: &mut T,
        envelopes: Vec<Envelope>,
    ) -> Result<Vec<Uuid>> {
        let jobs = self.prepare_all(envelopes, Utc::now())?;
        let rows: Vec<NewJob> = jobs.iter().map(|p| p.new_job(None)).collect();
        tx.insert_outbox(&rows).await?;
        Ok(rows.iter().map(|r| r.id).collect())
    }
}

/// How long a client's claim on outbox rows it publishes holds off the relays (as a relay's).
const OUTBOX_LEASE: Duration = Duration::from_secs(30);

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
