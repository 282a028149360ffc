//! Job store: the record of every job's life, beside Pub/Sub (which stays the queue). Optional:
//! a [`Client`](crate::Client) given a store records each enqueue, and a worker whose client has
//! one records each transition (started, succeeded, failed, retry scheduled, morgued, discarded);
//! the HTTP API reads it for status, results, history, counts and metrics, and writes cancels.
//!
//! It is event-sourced: an append-only table of [`JobEvent`]s, and a current-state row per job
//! ([`JobRecord`]) updated in the same transaction as the event it follows from.
//!
//! [`connect`] opens one by URL: `sqlite://jobs.db` (embedded, WAL; the default of `worker api`)
//! or `postgres://user@host/db` (many machines). Both are [`SqlStore`] through sqlx; the schema is
//! migrated at connect.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use pubsub_jobs::{store, Client};
//! let store = store::connect("sqlite://jobs.db").await?;
//! let client = Client::from_env().await?.with_store(store);
//! # Ok(()) }
//! ```

mod actions;
#[cfg(any(test, feature = "conformance"))]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
mod enqueue;
mod lifecycle;
pub mod maintenance;
mod metrics;
mod periodic;
mod process;
mod query;
mod record;
mod retention;
#[cfg(feature = "sql")]
mod sql;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::error::StoreError;
pub use actions::*;
pub use enqueue::*;
pub use lifecycle::*;
pub use metrics::*;
pub use periodic::{PeriodicDefinition, PeriodicState, TickAction, TickClaim, TickRecord};
pub use process::*;
pub use query::*;
pub use record::*;
pub use retention::*;
#[cfg(feature = "sql")]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub use sql::tx::EnqueueTx;
#[cfg(feature = "sql")]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub use sql::SqlStore;
/// The store's contract, as small capability traits, one per concern (apalis's backends are the
/// model): [`OutboxStore`] (enqueue and the outbox), [`LifecycleStore`] (a job's life, as the
/// worker records it), [`ReadStore`] (what the API and the dashboard show), [`ActionStore`]
/// (operator actions), [`ProcessStore`] (heartbeats), [`HousekeepingStore`] and
/// [`PeriodicStore`]. A job store is all of them: [`JobStore`], which every type implementing
/// them is. Call its methods with the traits in scope: `use pubsub_jobs::store::prelude::*;`.
///
/// Every write is one transaction that appends the event and updates the state row; several API
/// instances and workers may write at once. A default method that a store does not override
/// answers [`StoreError::Unsupported`] where an empty answer would mislead.
/// `store_conformance_tests!` checks every trait (one file per area in `store/conformance/`).
pub trait JobStore:
    OutboxStore
    + LifecycleStore
    + ReadStore
    + ActionStore
    + ProcessStore
    + HousekeepingStore
    + PeriodicStore
    + Send
    + Sync
    + 'static
{
}

impl<T> JobStore for T where
    T: OutboxStore
        + LifecycleStore
        + ReadStore
        + ActionStore
        + ProcessStore
        + HousekeepingStore
        + PeriodicStore
        + Send
        + Sync
        + 'static
{
}

/// The store's traits, to call a [`JobStore`]'s methods: `use pubsub_jobs::store::prelude::*;`.
pub mod prelude {
    pub use super::{
        ActionStore, HousekeepingStore, JobStore, LifecycleStore, OutboxStore, PeriodicStore,
        ProcessStore, ReadStore,
    };
}

/// Enqueue and the outbox: what the client writes, and what the relay publishes.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Records a job about to be published (event enqueued or scheduled). With a dedup key, and
    /// the key held by another job within its window, records nothing and returns that job;
    /// atomic across processes.
    async fn submit(&self, job: NewJob) -> Result<Submitted, StoreError>;
    /// Records many jobs (no dedup) in one transaction.
    async fn submit_many(&self, jobs: Vec<NewJob>) -> Result<(), StoreError>;
    /// Forgets a job, its events and its dedup key, as if it never existed. (The client no
    /// longer calls it when a publish fails: the job stays in the outbox for the relay.)
    async fn abandon(&self, id: Uuid) -> Result<(), StoreError>;
    /// Marks jobs published: the relay will not publish them (again).
    async fn mark_published(&self, ids: &[Uuid]) -> Result<(), StoreError>;
    /// Claims up to `limit` unpublished jobs enqueued at or before `enqueued_before` (and among
    /// the jobs `only`, when given) for `lease`: another relay does not claim
    /// them until the lease lapses, so a relay that dies mid-claim loses nothing. Oldest first.
    async fn claim_unpublished(
        &self,
        enqueued_before: DateTime<Utc>,
        only: Option<&[Uuid]>,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<Unpublished>, StoreError>;
    /// How many jobs are unpublished, and the oldest's enqueue time.
    async fn outbox_status(&self) -> Result<OutboxStatus, StoreError>;
    /// Waits until a job may have been written to the outbox (a PostgreSQL `NOTIFY` from a
    /// transactional enqueue), or `max`, whichever comes first. The default just waits `max`.
    async fn wait_for_outbox(&self, max: Duration) {
        tokio::time::sleep(max).await;
    }
}

/// A job's life: what the worker records.
#[async_trait]
pub trait LifecycleStore: Send + Sync {
    /// Marks an execution started, unless the job was cancelled, or the store shows it finished
    /// (succeeded, morgued, discarded) at this attempt or a later one of the same or a later
    /// generation: a duplicate. Creates the row for a job enqueued without a store. Atomic with
    /// [`ActionStore::cancel`]: one of them wins. A started job was evidently published: it leaves
    /// the outbox (marked published), so no relay publishes it again.
    async fn start(&self, start: Start) -> Result<StartOutcome, StoreError>;
    /// Records the end of an execution or of the job. A job without a row is ignored.
    async fn finish(&self, id: Uuid, attempt: u32, t: Transition) -> Result<(), StoreError>;
    /// Records a running execution's latest progress (if any) and appends the lines it logged,
    /// only while `attempt` is the job's running execution; lines beyond
    /// [`MAX_STORED_LOG_LINES`] per job are dropped. The default keeps nothing.
    async fn progress(
        &self,
        id: Uuid,
        attempt: u32,
        progress: Option<&Progress>,
        logs: &[LogLine],
    ) -> Result<(), StoreError> {
        let _ = (id, attempt, progress, logs);
        Ok(())
    }
    /// Applies a worker's writes in order, as one transaction where the store can (group
    /// commit): each start's outcome (`Some`), `None` for each finish. On an error nothing of
    /// the batch is recorded (the caller may retry the writes one by one). The default applies
    /// them one by one, each in its own transaction.
    async fn record_batch(&self, ops: &[StoreOp]) -> Result<Vec<Option<StartOutcome>>, StoreError> {
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            out.push(match op {
                StoreOp::Start(s) => Some(self.start(s.clone()).await?),
                StoreOp::Finish {
                    id,
                    attempt,
                    transition,
                } => {
                    self.finish(*id, *attempt, transition.clone()).await?;
                    None
                }
                StoreOp::Progress {
                    id,
                    attempt,
                    progress,
                    logs,
                } => {
                    self.progress(*id, *attempt, progress.as_ref(), logs)
                        .await?;
                    None
                }
            });
        }
        Ok(out)
    }
    /// How many [`LifecycleStore::record_batch`] calls may usefully run at once (1 for a database
    /// with a single writer).
    fn batch_writers(&self) -> usize {
        1
    }
}

/// Reads: what the API and the dashboard show.
#[async_trait]
pub trait ReadStore: Send + Sync {
    /// The job's current state.
    async fn get(&self, id: Uuid) -> Result<Option<JobRecord>, StoreError>;
    /// The job's history, oldest first.
    async fn events(&self, id: Uuid) -> Result<Vec<JobEvent>, StoreError>;
    /// A page of jobs, newest first.
    async fn list(&self, query: ListQuery) -> Result<Page, StoreError>;
    /// How many jobs match `query` (its limit and cursor ignored). Exact from the aggregates
    /// for queue and status filters, through the class index for a class alone; otherwise over
    /// at most [`SCAN_WINDOW`] jobs (then `exact` says whether that held them all).
    async fn count(&self, query: &ListQuery) -> Result<JobCount, StoreError>;
    /// Jobs by queue and status.
    async fn queue_counts(&self) -> Result<Vec<QueueCount>, StoreError>;
    /// Figures for `/metrics`.
    async fn metrics(&self) -> Result<MetricsSnapshot, StoreError>;
    /// Executions finished per minute, for the minutes from `since` (at most
    /// [`THROUGHPUT_KEPT`] back), oldest first; minutes without any are left out.
    async fn throughput(&self, since: DateTime<Utc>) -> Result<Vec<MinuteCount>, StoreError>;
    /// The job's stored log lines numbered above `after` (all from the first without), oldest
    /// first, at most `limit`. A store that keeps none returns none.
    async fn logs(
        &self,
        id: Uuid,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<JobLog>, StoreError> {
        let _ = (id, after, limit);
        Ok(Vec::new())
    }
}

/// The most log lines a store keeps per job ([`JobContext::log`](crate::JobContext::log)):
/// later lines still go to the worker's log, not to the store.
pub const MAX_STORED_LOG_LINES: u64 = 1000;

/// Operator actions (`crate::admin::jobs`).
#[async_trait]
pub trait ActionStore: Send + Sync {
    /// Cancels a job that has not started (pending, scheduled, retrying).
    async fn cancel(&self, id: Uuid) -> Result<CancelOutcome, StoreError>;
    /// Puts a failed, morgued, discarded or cancelled job back to pending as
    /// `requeue.generation`, with its message in the outbox (claimed by the caller, who
    /// publishes it, as an enqueue does), and records an `enqueued` event; only if its version
    /// is still `requeue.version`.
    async fn requeue(&self, requeue: Requeue) -> Result<RequeueOutcome, StoreError>;
    /// Deletes a finished job (succeeded, morgued, discarded, cancelled, or failed), its events
    /// and its dedup key.
    async fn delete(&self, id: Uuid) -> Result<DeleteOutcome, StoreError>;
    /// Cancels every job of `queue` not started (pending, scheduled, retrying) whose last change
    /// (its enqueue, or the retry it waits for) is at or before `before`: what clearing the
    /// queue on Pub/Sub at that time removed (`admin::clear`). Each gets a `cancelled` event
    /// (detail `{"cleared": true}`) and leaves the outbox: a relay never publishes it. Returns
    /// how many.
    async fn cancel_cleared(&self, queue: &str, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// Processes: heartbeats of workers, API servers and relays.
#[async_trait]
pub trait ProcessStore: Send + Sync {
    /// Records that `process` is alive now (insert or update).
    async fn heartbeat(&self, process: &ProcessInfo) -> Result<(), StoreError>;
    /// Forgets a process that is shutting down.
    async fn forget_process(&self, id: &str) -> Result<(), StoreError>;
    /// Processes that reported since `since`, by kind then id.
    async fn processes(&self, since: DateTime<Utc>) -> Result<Vec<ProcessInfo>, StoreError>;
    /// Records that the dashboard session `id`, valid until `expires_at`, was signed out (and
    /// forgets sessions revoked earlier that have expired since). The default answers
    /// [`StoreError::Unsupported`]: sign-out then only clears the browser's cookie.
    async fn revoke_session(&self, id: &str, expires_at: DateTime<Utc>) -> Result<(), StoreError> {
        let _ = (id, expires_at);
        Err(StoreError::Unsupported {
            operation: "revoke_session",
        })
    }
    /// Whether the dashboard session `id` was signed out. The default: never.
    async fn session_revoked(&self, id: &str) -> Result<bool, StoreError> {
        let _ = id;
        Ok(false)
    }
}

/// Housekeeping.
#[async_trait]
pub trait HousekeepingStore: Send + Sync {
    /// Housekeeping, called every second or so by each process's
    /// [`Maintainer`](maintenance::Maintainer): folds the aggregates' pending deltas, and, in
    /// the one process holding the store's short prune lease, prunes finished jobs past
    /// `retention` in small batches. Safe with any number of processes. The default answers
    /// [`StoreError::Unsupported`] (the maintainer then stops asking).
    async fn maintain(&self, retention: &Retention) -> Result<Maintenance, StoreError> {
        let _ = retention;
        Err(StoreError::Unsupported {
            operation: "maintain",
        })
    }
    /// Prunes finished jobs past `retention` now (`worker store prune`), of one queue or all,
    /// or with `dry_run` only counts them. The default answers [`StoreError::Unsupported`].
    async fn prune_now(
        &self,
        retention: &Retention,
        queue: Option<&str>,
        dry_run: bool,
    ) -> Result<PruneReport, StoreError> {
        let _ = (retention, queue, dry_run);
        Err(StoreError::Unsupported {
            operation: "prune_now",
        })
    }
    /// Checks the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Periodic jobs: entries and ticks.
#[async_trait]
pub trait PeriodicStore: Send + Sync {
    /// Records periodic entries' definitions (insert or update; pause state and last tick are
    /// kept) and returns their states, in the given order.
    async fn register_periodic(
        &self,
        definitions: &[PeriodicDefinition],
    ) -> Result<Vec<PeriodicState>, StoreError>;
    /// Every periodic entry any scheduler registered, by name.
    async fn periodic_entries(&self) -> Result<Vec<PeriodicState>, StoreError>;
    /// Pauses or resumes an entry; `None` if no scheduler registered it.
    async fn set_periodic_paused(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<Option<PeriodicState>, StoreError>;
    /// Claims the tick of entry `name` at `tick_at` and records `action` in the same
    /// transaction: exactly one caller gets [`TickClaim::Claimed`] (or `Paused`) for a given
    /// (name, tick), however many schedulers race; the others get `AlreadyClaimed`. An
    /// enqueue is written to the outbox, so a claimer that dies before publishing loses nothing.
    async fn claim_tick(
        &self,
        name: &str,
        tick_at: DateTime<Utc>,
        action: TickAction,
    ) -> Result<TickClaim, StoreError>;
    /// The last `limit` claimed ticks of entry `name`, newest first.
    async fn periodic_ticks(&self, name: &str, limit: u32) -> Result<Vec<TickRecord>, StoreError>;
    /// Deletes tick records claimed before `before` (entries keep their last tick); returns how
    /// many.
    async fn prune_ticks(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// A store URL fit for a log or an error: the password of `scheme://user:password@host/...` and
/// any `password=` parameter replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let authority_end = out[rest..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@') {
            let userinfo = &out[rest..rest + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest + colon + 1..rest + at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&");
        out = format!("{head}{query}");
    }
    out
}

/// Opens the store at `url` (`sqlite://PATH` or `postgres://...`) and migrates its schema.
#[cfg(feature = "sql")]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub async fn connect(url: &str) -> Result<std::sync::Arc<dyn JobStore>, StoreError> {
    Ok(std::sync::Arc::new(SqlStore::connect(url).await?))
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn store_urls_lose_their_passwords() {
        for (url, want) in [
            (
                "postgres://app:s3cret@db.internal:5432/jobs",
                "postgres://app:***@db.internal:5432/jobs",
            ),
            (
                "postgresql://app:p%40ss@db/jobs?sslmode=require",
                "postgresql://app:***@db/jobs?sslmode=require",
            ),
            (
                "postgres://db/jobs?user=app&password=s3cret",
                "postgres://db/jobs?user=app&password=***",
            ),
            ("postgres://app@db/jobs", "postgres://app@db/jobs"),
            ("sqlite://jobs.db?mode=rwc", "sqlite://jobs.db?mode=rwc"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }
}
