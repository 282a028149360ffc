//! What an operator does to stored jobs: retry, cancel or delete one, or every job a filter
//! matches. The HTTP API (`POST /v1/jobs/{id}/retry|cancel|delete`, `DELETE /v1/jobs/{id}`,
//! `POST /v1/jobs/bulk`) and the dashboard call these, so an action behaves the same whichever
//! way it is asked. Each needs a client with a job store.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::store::{CancelOutcome, DeleteOutcome, JobRecord, JobStore, ListQuery, RequeueOutcome};

/// The most jobs one bulk action touches.
pub const BULK_LIMIT: u64 = 10_000;

fn store_of(client: &Client, what: &str) -> Result<Arc<dyn JobStore>> {
    client.store().cloned().ok_or_else(|| Error::StoreRequired {
        what: what.to_string(),
    })
}

/// Retries the stored job `id` now: a failed, morgued, discarded or cancelled job runs again
/// under the same id as a new generation, from its first execution, published through the
/// outbox like any enqueue. [`RequeueOutcome::Conflict`] for a job in another state, or one that
/// changed while this ran.
pub async fn retry(client: &Client, id: Uuid) -> Result<RequeueOutcome> {
    let store = store_of(client, "retrying a stored job")?;
    let Some(rec) = store.get(id).await? else {
        return Ok(RequeueOutcome::NotFound);
    };
    client.requeue(&rec).await
}

/// Cancels a job that has not started (pending, scheduled or retrying): it will not run.
pub async fn cancel(client: &Client, id: Uuid) -> Result<CancelOutcome> {
    let store = store_of(client, "cancelling a stored job")?;
    let outcome = store.cancel(id).await?;
    if let CancelOutcome::Cancelled(rec) = &outcome {
        tracing::info!(event = "job.cancel_requested", job_id = %id, job_class = %rec.job_class, queue = %rec.queue, "job cancelled");
    }
    Ok(outcome)
}

/// Deletes a finished job (succeeded, failed, morgued, discarded or cancelled) and its history.
pub async fn delete(client: &Client, id: Uuid) -> Result<DeleteOutcome> {
    let store = store_of(client, "deleting a stored job")?;
    let outcome = store.delete(id).await?;
    if let DeleteOutcome::Deleted = outcome {
        tracing::info!(event = "job.deleted", job_id = %id, "stored job deleted");
    }
    Ok(outcome)
}

/// A bulk action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BulkAction {
    /// Retry each failed, morgued, discarded or cancelled job.
    Retry,
    /// Cancel each pending, scheduled or retrying job.
    Cancel,
    /// Delete each finished job.
    Delete,
}

impl BulkAction {
    /// The action by its name: `retry`, `cancel` or `delete`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "retry" => Some(Self::Retry),
            "cancel" => Some(Self::Cancel),
            "delete" => Some(Self::Delete),
            _ => None,
        }
    }

    /// The action's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::Cancel => "cancel",
            Self::Delete => "delete",
        }
    }
}

/// What a bulk action did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema), schema(as = BulkResponse))]
pub struct BulkReport {
    /// Jobs the filter matched (at most [`BULK_LIMIT`]).
    pub matched: u64,
    /// Jobs the action applied to.
    pub done: u64,
    /// Jobs it did not apply to (wrong state, or changed meanwhile).
    pub skipped: u64,
    /// True when more than [`BULK_LIMIT`] jobs matched: run it again for the rest.
    pub truncated: bool,
}

/// Applies `action` to the jobs `query` matches (its limit and cursor ignored), newest first,
/// at most [`BULK_LIMIT`]. Each job is acted on as [`retry`], [`cancel`] or [`delete`] would,
/// at the version it was read at. Pages are read with their values cut (bounded memory
/// whatever the jobs carry); a retry reads its job in full.
pub async fn bulk(client: &Client, action: BulkAction, mut query: ListQuery) -> Result<BulkReport> {
    let store = store_of(client, "a bulk action")?;
    let mut out = BulkReport::default();
    query.limit = 500;
    query.cursor = None;
    query.cut_values_at = Some(crate::store::LIST_VALUE_CHARS);
    let done = bulk_pages(client, &store, action, query, &mut out).await;
    // One line per bulk action, whether it finished or stopped on an error half-way.
    match &done {
        Ok(()) => tracing::info!(
            event = "jobs.bulk",
            action = action.as_str(),
            matched = out.matched,
            done = out.done,
            skipped = out.skipped,
            truncated = out.truncated,
            "bulk action"
        ),
        Err(e) => tracing::warn!(
            event = "jobs.bulk",
            action = action.as_str(),
            matched = out.matched,
            done = out.done,
            skipped = out.skipped,
            error = %e,
            "bulk action stopped by an error; what it did so far stays done"
        ),
    }
    done.map(|()| out)
}

async fn bulk_pages(
    client: &Client,
    store: &Arc<dyn JobStore>,
    action: BulkAction,
    mut query: ListQuery,
    out: &mut BulkReport,
) -> Result<()> {
    loop {
        let page = store.list(query.clone()).await?;
        for job in &page.jobs {
            if out.matched >= BULK_LIMIT {
                out.truncated = true;
                break;
            }
            out.matched += 1;
            if apply(client, store, action, job).await? {
                out.done += 1;
            } else {
                out.skipped += 1;
            }
        }
        match page.next_cursor {
            Some(c) if !out.truncated => query.cursor = Some(c),
            _ => return Ok(()),
        }
    }
}

async fn apply(
    client: &Client,
    store: &Arc<dyn JobStore>,
    action: BulkAction,
    job: &JobRecord,
) -> Result<bool> {
    Ok(match action {
        BulkAction::Retry if !job.truncated.is_empty() => {
            // Read with its values cut: retry what the store holds in full.
            match store.get(job.id).await? {
                Some(full) => matches!(client.requeue(&full).await?, RequeueOutcome::Requeued(_)),
                None => false,
            }
        }
        BulkAction::Retry => matches!(client.requeue(job).await?, RequeueOutcome::Requeued(_)),
        BulkAction::Cancel => matches!(store.cancel(job.id).await?, CancelOutcome::Cancelled(_)),
        BulkAction::Delete => matches!(store.delete(job.id).await?, DeleteOutcome::Deleted),
    })
}
