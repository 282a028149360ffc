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

#[cfg(any(test, feature = "conformance"))]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
mod error;
pub mod maintenance;
mod periodic;
#[cfg(feature = "sql")]
mod sql;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use error::StoreError;
pub use periodic::{PeriodicDefinition, PeriodicState, TickAction, TickClaim, TickRecord};
#[cfg(feature = "sql")]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub use sql::tx::EnqueueTx;
#[cfg(feature = "sql")]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub use sql::SqlStore;

/// A job's status, the state row's summary of its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum JobStatus {
    /// Enqueued, due, not started.
    Pending,
    /// Enqueued for later.
    Scheduled,
    /// An execution is running.
    Running,
    /// An execution failed; a retry is scheduled.
    Retrying,
    /// The last execution succeeded.
    Succeeded,
    /// An execution failed and its outcome (retry or morgue) is being published.
    Failed,
    /// Retries spent (or unrunnable): the job is in the morgue.
    Morgued,
    /// Cancelled before it started; it will not run.
    Cancelled,
    /// Failed with an error its policy discards.
    Discarded,
}

impl JobStatus {
    /// Every status.
    pub const ALL: [JobStatus; 9] = [
        Self::Pending,
        Self::Scheduled,
        Self::Running,
        Self::Retrying,
        Self::Succeeded,
        Self::Failed,
        Self::Morgued,
        Self::Cancelled,
        Self::Discarded,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Morgued => "morgued",
            Self::Cancelled => "cancelled",
            Self::Discarded => "discarded",
        }
    }

    /// True once nothing more will happen to the job (short of a morgue retry).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Morgued | Self::Cancelled | Self::Discarded
        )
    }

    /// True while a cancel can still stop the job.
    pub fn is_cancellable(self) -> bool {
        matches!(self, Self::Pending | Self::Scheduled | Self::Retrying)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown status {s:?}; one of {}",
                    Self::ALL.map(|s| s.as_str()).join(", ")
                )
            })
    }
}

/// What happened to a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// Published, due now.
    Enqueued,
    /// Published, due later.
    Scheduled,
    /// An execution started.
    Started,
    /// An execution succeeded.
    Succeeded,
    /// An execution failed.
    Failed,
    /// A retry was published.
    RetryScheduled,
    /// Sent to the morgue.
    Morgued,
    /// Discarded by its retry policy.
    Discarded,
    /// Cancelled before it started.
    Cancelled,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 9] = [
        Self::Enqueued,
        Self::Scheduled,
        Self::Started,
        Self::Succeeded,
        Self::Failed,
        Self::RetryScheduled,
        Self::Morgued,
        Self::Discarded,
        Self::Cancelled,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enqueued => "enqueued",
            Self::Scheduled => "scheduled",
            Self::Started => "started",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::RetryScheduled => "retry_scheduled",
            Self::Morgued => "morgued",
            Self::Discarded => "discarded",
            Self::Cancelled => "cancelled",
        }
    }

    /// The kind named `s` (snake_case), if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A job's current state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job id.
    pub id: Uuid,
    /// The class name.
    pub job_class: String,
    /// The queue.
    pub queue: String,
    /// The status.
    pub status: JobStatus,
    /// Executions started so far.
    pub attempts: u32,
    /// The job's arguments.
    pub arguments: serde_json::Value,
    /// When it was first enqueued.
    pub enqueued_at: DateTime<Utc>,
    /// When it is (or was) due, if later than enqueued.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// When the last execution started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished (succeeded, morgued, discarded, cancelled).
    pub finished_at: Option<DateTime<Utc>>,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
    /// The last execution's error.
    pub last_error: Option<String>,
    /// What the job recorded with [`JobContext::set_result`](crate::JobContext::set_result).
    pub result: Option<serde_json::Value>,
    /// The dedup key it was submitted with.
    pub dedup_key: Option<String>,
    /// Grows by one on every change (the API's ETag).
    pub version: i64,
    /// Bumped by every retry of the finished job (from the dashboard, the API or the morgue).
    #[serde(default)]
    pub generation: u32,
    /// When its message was published (`None`: still in the outbox, the relay publishes it).
    #[serde(default)]
    pub published_at: Option<DateTime<Utc>>,
}

impl JobRecord {
    /// The record of a job just recorded by a bulk submit, as a read would return it
    /// (times at the store's millisecond precision).
    pub(crate) fn recorded(job: &NewJob, now: DateTime<Utc>, published: bool) -> Self {
        let ms =
            |t: DateTime<Utc>| DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t);
        let due_later = job.scheduled_at.filter(|at| *at > job.enqueued_at);
        Self {
            id: job.id,
            job_class: job.job_class.clone(),
            queue: job.queue.clone(),
            status: if due_later.is_some() {
                JobStatus::Scheduled
            } else {
                JobStatus::Pending
            },
            attempts: 0,
            arguments: job.arguments.clone(),
            enqueued_at: ms(job.enqueued_at),
            scheduled_at: due_later.map(ms),
            started_at: None,
            finished_at: None,
            updated_at: ms(now),
            last_error: None,
            result: None,
            dedup_key: job.dedup.as_ref().map(|d| d.key.clone()),
            version: 1,
            generation: 0,
            published_at: (published || job.message.is_none()).then(|| ms(now)),
        }
    }
}

/// One entry of a job's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct JobEvent {
    /// What happened.
    pub kind: EventKind,
    /// The execution it belongs to (0 before the first).
    pub attempt: u32,
    /// When.
    pub at: DateTime<Utc>,
    /// The error, for failures.
    pub error: Option<String>,
    /// More: the due time of a retry, a run's duration.
    pub detail: Option<serde_json::Value>,
}

/// A job about to be published.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// The job id.
    pub id: Uuid,
    /// The class name.
    pub job_class: String,
    /// The queue.
    pub queue: String,
    /// The arguments.
    pub arguments: serde_json::Value,
    /// When it was enqueued.
    pub enqueued_at: DateTime<Utc>,
    /// When it is due, if later.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// At most one job per key within the window.
    pub dedup: Option<Dedup>,
    /// The message to publish. With one, the job is written to the outbox, unpublished, until
    /// [`JobStore::mark_published`]; without, it is recorded as published.
    pub message: Option<OutboxMessage>,
}

/// A message waiting in the outbox: what to publish, where.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxMessage {
    /// The topic (prefix included).
    pub topic: String,
    /// The body (UTF-8 JSON).
    pub data: Vec<u8>,
    /// The attributes.
    pub attributes: std::collections::HashMap<String, String>,
}

/// A job left unpublished, claimed by a relay ([`JobStore::claim_unpublished`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Unpublished {
    /// The job id.
    pub id: Uuid,
    /// What to publish.
    pub message: OutboxMessage,
}

/// How the outbox stands.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OutboxStatus {
    /// Jobs recorded but not published yet.
    pub unpublished: u64,
    /// When the oldest of them was enqueued.
    pub oldest: Option<DateTime<Utc>>,
}

/// A dedup key and how long it holds.
#[derive(Clone, Debug)]
pub struct Dedup {
    /// The key.
    pub key: String,
    /// How long a second submit with the key returns the first job.
    pub window: Duration,
}

/// The default dedup window: 5 minutes.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(300);

/// What [`JobStore::submit`] did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Submitted {
    /// A new job was recorded: publish it.
    Created(Box<JobRecord>),
    /// The dedup key is taken within its window: this is the job that holds it.
    Existing(Box<JobRecord>),
}

/// What [`JobStore::cancel`] did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum CancelOutcome {
    /// Cancelled; the worker will ack it without running it.
    Cancelled(Box<JobRecord>),
    /// Running or finished: too late.
    TooLate(Box<JobRecord>),
    /// No such job.
    NotFound,
}

/// What [`JobStore::start`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartOutcome {
    /// Run it.
    Run,
    /// It was cancelled: ack without running.
    Cancelled,
    /// The store shows this execution (or a later one) of this generation finished: a
    /// duplicate delivery. Ack without running.
    AlreadyFinished,
}

/// An execution starting.
#[derive(Clone, Debug)]
pub struct Start {
    /// The job id.
    pub id: Uuid,
    /// The class name.
    pub job_class: String,
    /// The queue.
    pub queue: String,
    /// The arguments (a job enqueued without a store gets its row now).
    pub arguments: serde_json::Value,
    /// The 1-based execution number.
    pub attempt: u32,
    /// When it was first enqueued.
    pub enqueued_at: DateTime<Utc>,
    /// When this execution was due.
    pub due_at: DateTime<Utc>,
    /// The envelope's generation (bumped by a retry from the morgue).
    pub generation: u32,
}

/// The end of an execution, or of the job.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Transition {
    /// Succeeded, with the job's result.
    Succeeded {
        /// The result, if the job set one.
        result: Option<serde_json::Value>,
        /// How long it ran.
        run: Duration,
    },
    /// Failed; its outcome follows.
    Failed {
        /// The error.
        error: String,
        /// How long it ran.
        run: Duration,
        /// The result so far, if the job set one (a multi-step job's finished steps).
        result: Option<serde_json::Value>,
    },
    /// A retry was published, due at `at`.
    RetryScheduled {
        /// When it is due.
        at: DateTime<Utc>,
    },
    /// In the morgue.
    Morgued {
        /// Why.
        error: String,
    },
    /// Discarded.
    Discarded {
        /// The error discarded.
        error: String,
    },
}

/// A page request of [`JobStore::list`].
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// Only this status.
    pub status: Option<JobStatus>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this job class.
    pub job_class: Option<String>,
    /// Only jobs whose arguments or last error contain this text (case-insensitive). Read over
    /// at most the newest [`SCAN_WINDOW`] jobs of the other filters per page: a page may come
    /// back short with a cursor that goes on below.
    pub text: Option<String>,
    /// Page size (1-500).
    pub limit: u32,
    /// From [`Page::next_cursor`] of the previous page.
    pub cursor: Option<String>,
    /// The order of the page.
    pub order: ListOrder,
}

/// The order of a [`ListQuery`]'s page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListOrder {
    /// Newest enqueued first.
    #[default]
    Newest,
    /// Soonest due first (then oldest enqueued): for scheduled and retrying jobs, filtered by
    /// status (one of those two) and at most a queue; other queries fall back to newest first.
    DueFirst,
}

impl ListQuery {
    /// True when the page is read in due order (see [`ListOrder::DueFirst`]).
    pub fn is_due_order(&self) -> bool {
        self.order == ListOrder::DueFirst
            && matches!(
                self.status,
                Some(JobStatus::Scheduled) | Some(JobStatus::Retrying)
            )
            && self.job_class.is_none()
            && self.text.is_none()
    }

    /// True when a read needs more than one index (two or more of queue, status and class) or
    /// a text match: it is then bounded by [`SCAN_WINDOW`].
    pub fn is_windowed(&self) -> bool {
        let indexed = [
            self.status.is_some(),
            self.queue.is_some(),
            self.job_class.is_some(),
        ]
        .into_iter()
        .filter(|x| *x)
        .count();
        indexed > 1 || self.text.is_some()
    }
}

/// How many jobs a filtered read looks at, at most, per page or count: the newest of the most
/// selective filter's jobs. Keeps every dashboard page fast at millions of jobs.
pub const SCAN_WINDOW: u32 = 20_000;

/// How many jobs match a [`ListQuery`] (its limit and cursor ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct JobCount {
    /// The count.
    pub count: u64,
    /// False when only the newest [`SCAN_WINDOW`] jobs were looked at and more lie beyond: the
    /// count is then a lower bound.
    pub exact: bool,
}

/// A retry of a finished job from the store ([`JobStore::requeue`]): the job runs again under
/// the same id, as a new generation.
#[derive(Clone, Debug)]
pub struct Requeue {
    /// The job.
    pub id: Uuid,
    /// The row's version it was read at: the requeue applies only if nothing changed since.
    pub version: i64,
    /// The new generation (the row's plus one), also in the message.
    pub generation: u32,
    /// The message to publish, written to the outbox.
    pub message: OutboxMessage,
}

/// What [`JobStore::requeue`] did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum RequeueOutcome {
    /// Back to pending, in the outbox: publish it.
    Requeued(Box<JobRecord>),
    /// Not retryable now (not failed, morgued, discarded or cancelled), or changed since it
    /// was read.
    Conflict(Box<JobRecord>),
    /// No such job.
    NotFound,
}

/// What [`JobStore::delete`] did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum DeleteOutcome {
    /// Deleted with its events.
    Deleted,
    /// Not finished: cancel it first (a pending job's message would still run).
    Conflict(Box<JobRecord>),
    /// No such job.
    NotFound,
}

/// Executions finished in one minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct MinuteCount {
    /// The minute's start.
    pub minute: DateTime<Utc>,
    /// Executions that succeeded.
    pub succeeded: u64,
    /// Executions that failed.
    pub failed: u64,
}

/// How long per-minute execution counts are kept ([`JobStore::throughput`]).
pub const THROUGHPUT_KEPT: Duration = Duration::from_secs(2 * 3600);

/// A process that uses the store: a worker, `worker api`, a relay. Each reports itself every
/// [`HEARTBEAT_INTERVAL`] through its [`Maintainer`](maintenance::Maintainer).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct ProcessInfo {
    /// Unique per process: host, pid and a random suffix.
    pub id: String,
    /// What it is: `worker`, `api`, `relay`.
    pub kind: String,
    /// Its queue, for a worker.
    pub queue: Option<String>,
    /// The host name.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it last reported (set by the store).
    pub seen_at: DateTime<Utc>,
}

impl ProcessInfo {
    /// This process, as `kind` (serving `queue`, for a worker).
    pub fn this(kind: &str, queue: Option<&str>) -> Self {
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
            })
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown".into());
        let pid = std::process::id();
        let now = Utc::now();
        Self {
            id: format!("{host}:{pid}:{}", &Uuid::new_v4().simple().to_string()[..8]),
            kind: kind.to_string(),
            queue: queue.map(str::to_string),
            host,
            pid,
            started_at: now,
            seen_at: now,
        }
    }
}

/// How often a process reports itself to the store.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);

/// How long finished jobs (and their events) are kept, per final status; `None` keeps them.
/// Defaults: succeeded 7 days; failed, morgued, discarded and cancelled 30 days.
///
/// Pruned jobs leave the per-status counts (`/v1/queues`, the `jobs` gauge: what the store
/// holds), but not the event counters and histograms of `/metrics`, which only ever grow (as
/// Prometheus counters must).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Succeeded jobs.
    pub succeeded: Option<Duration>,
    /// Jobs left `failed` (their outcome was never recorded).
    pub failed: Option<Duration>,
    /// Jobs in the morgue.
    pub morgued: Option<Duration>,
    /// Discarded jobs.
    pub discarded: Option<Duration>,
    /// Cancelled jobs.
    pub cancelled: Option<Duration>,
}

impl Default for Retention {
    fn default() -> Self {
        let days = |d: u64| Some(Duration::from_secs(d * 86_400));
        Self {
            succeeded: days(7),
            failed: days(30),
            morgued: days(30),
            discarded: days(30),
            cancelled: days(30),
        }
    }
}

impl Retention {
    /// The same period for every final status.
    pub fn all(keep: Duration) -> Self {
        Self {
            succeeded: Some(keep),
            failed: Some(keep),
            morgued: Some(keep),
            discarded: Some(keep),
            cancelled: Some(keep),
        }
    }

    /// Keep everything.
    pub fn keep_all() -> Self {
        Self {
            succeeded: None,
            failed: None,
            morgued: None,
            discarded: None,
            cancelled: None,
        }
    }

    /// (status, period) for each final status.
    pub fn rules(&self) -> [(JobStatus, Option<Duration>); 5] {
        [
            (JobStatus::Succeeded, self.succeeded),
            (JobStatus::Failed, self.failed),
            (JobStatus::Morgued, self.morgued),
            (JobStatus::Discarded, self.discarded),
            (JobStatus::Cancelled, self.cancelled),
        ]
    }
}

/// What a prune removed (or, dry, would remove).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Jobs.
    pub jobs: u64,
    /// Their events.
    pub events: u64,
    /// Expired dedup keys.
    pub dedup_keys: u64,
}

/// What one round of [`JobStore::maintain`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// Aggregate deltas folded.
    pub folded: u64,
    /// What was pruned (only by the holder of the prune lease).
    pub pruned: PruneReport,
}

/// One write of a worker's, for [`JobStore::record_batch`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum StoreOp {
    /// [`JobStore::start`].
    Start(Start),
    /// [`JobStore::finish`].
    Finish {
        /// The job.
        id: Uuid,
        /// The execution.
        attempt: u32,
        /// What happened.
        transition: Transition,
    },
}

/// A page of jobs, newest first.
#[derive(Clone, Debug)]
pub struct Page {
    /// The jobs.
    pub jobs: Vec<JobRecord>,
    /// Pass it back for the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// Counts of jobs by queue and status.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueCount {
    /// The queue.
    pub queue: String,
    /// The status.
    pub status: JobStatus,
    /// How many.
    pub count: u64,
}

/// A histogram: cumulative counts at each upper bound (seconds), the total count and sum.
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    /// (upper bound in seconds, cumulative count).
    pub buckets: Vec<(f64, u64)>,
    /// All observations.
    pub count: u64,
    /// Their sum in seconds.
    pub sum_seconds: f64,
}

/// The figures `/metrics` shows.
#[derive(Clone, Debug, Default)]
pub struct MetricsSnapshot {
    /// Events by kind (jobs by outcome).
    pub events: Vec<(EventKind, u64)>,
    /// Run time of finished executions.
    pub run_time: Histogram,
    /// Time from due to first start.
    pub queue_latency: Histogram,
}

/// Histogram bounds, seconds.
pub const HISTOGRAM_BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// The store's contract. Every write is one transaction that appends the event and updates the
/// state row; several API instances and workers may write at once.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Records a job about to be published (event enqueued or scheduled). With a dedup key, and
    /// the key held by another job within its window, records nothing and returns that job;
    /// atomic across processes.
    async fn submit(&self, job: NewJob) -> Result<Submitted, StoreError>;
    /// Records many jobs (no dedup) in one transaction.
    async fn submit_many(&self, jobs: Vec<NewJob>) -> Result<(), StoreError>;
    /// Forgets a job, its events and its dedup key, as if it never existed. (The client no
    /// longer calls it when a publish fails: the job stays in the outbox for the relay.)
    async fn abandon(&self, id: Uuid) -> Result<(), StoreError>;
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
    /// Executions finished per minute, for the minutes from `since` (at most
    /// [`THROUGHPUT_KEPT`] back), oldest first; minutes without any are left out.
    async fn throughput(&self, since: DateTime<Utc>) -> Result<Vec<MinuteCount>, StoreError>;
    /// Records that `process` is alive now (insert or update).
    async fn heartbeat(&self, process: &ProcessInfo) -> Result<(), StoreError>;
    /// Forgets a process that is shutting down.
    async fn forget_process(&self, id: &str) -> Result<(), StoreError>;
    /// Processes that reported since `since`, by kind then id.
    async fn processes(&self, since: DateTime<Utc>) -> Result<Vec<ProcessInfo>, StoreError>;
    /// Marks an execution started, unless the job was cancelled, or the store shows it finished
    /// (succeeded, morgued, discarded) at this attempt or a later one of the same or a later
    /// generation: a duplicate. Creates the row for a job enqueued without a store. Atomic with
    /// [`JobStore::cancel`]: one of them wins. A started job was evidently published: it leaves
    /// the outbox (marked published), so no relay publishes it again.
    async fn start(&self, start: Start) -> Result<StartOutcome, StoreError>;
    /// Records the end of an execution or of the job. A job without a row is ignored.
    async fn finish(&self, id: Uuid, attempt: u32, t: Transition) -> Result<(), StoreError>;
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
            });
        }
        Ok(out)
    }
    /// How many [`JobStore::record_batch`] calls may usefully run at once (1 for a database
    /// with a single writer).
    fn batch_writers(&self) -> usize {
        1
    }
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
    /// Jobs by queue and status.
    async fn queue_counts(&self) -> Result<Vec<QueueCount>, StoreError>;
    /// Figures for `/metrics`.
    async fn metrics(&self) -> Result<MetricsSnapshot, StoreError>;
    /// Checks the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
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

/// Opens the store at `url` (`sqlite://PATH` or `postgres://...`) and migrates its schema.
#[cfg(feature = "sql")]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub async fn connect(url: &str) -> Result<std::sync::Arc<dyn JobStore>, StoreError> {
    Ok(std::sync::Arc::new(SqlStore::connect(url).await?))
}
