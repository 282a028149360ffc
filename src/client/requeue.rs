//! Retrying a finished job from the store: a second life for a failed, morgued, discarded or
//! cancelled job, asked for from the dashboard or `POST /v1/jobs/{id}/retry`. The job keeps its
//! id and runs again as a new generation, from its first execution, published through the
//! outbox like any enqueue (so a crash between the store's write and the publish loses nothing:
//! the relay publishes it).

use chrono::Utc;

use super::Client;
use crate::envelope::Envelope;
use crate::error::{Error, Result};
use crate::store::{JobRecord, Requeue, RequeueOutcome};

impl Client {
    /// Retries the stored job as read in `rec` (applies only if it has not changed since); the
    /// operator layer's [`admin::jobs::retry`](crate::admin::jobs::retry) and bulk retry call it.
    pub(crate) async fn requeue(&self, rec: &JobRecord) -> Result<RequeueOutcome> {
        let store = self.store().ok_or_else(|| Error::StoreRequired {
            what: "retrying a stored job".into(),
        })?;
        let mut env = Envelope::new(&rec.job_class, &rec.queue, rec.arguments.clone());
        env.job_id = rec.id;
        env.enqueued_at = rec.enqueued_at;
        env.generation = rec.generation.saturating_add(1);
        env.metadata = rec.metadata.clone();
        let job = self.prepare(env, Utc::now())?;
        let generation = job.env.generation;
        let outcome = store
            .requeue(Requeue {
                id: rec.id,
                version: rec.version,
                generation,
                message: job.message.clone(),
            })
            .await?;
        if let RequeueOutcome::Requeued(r) = &outcome {
            tracing::info!(event = "job.retry_requested", job_id = %r.id, job_class = %r.job_class, queue = %r.queue, generation, "stored job retried");
            self.publish_recorded(store, vec![job]).await;
        }
        Ok(outcome)
    }
}
