//! What a worker records: an execution's start and its transitions.

use super::*;

/// What [`LifecycleStore::start`] decided.
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
    /// What middleware attached (kept for a job enqueued without a store).
    pub metadata: crate::envelope::Metadata,
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
    /// The execution stopped early and its resumption is about to be published: the job is
    /// pending again, with the same attempt count, until the resumption starts. Recorded only
    /// over a running job, and before the resumption is published (so never after it starts).
    Interrupted {
        /// Resumptions of this execution so far, this one included.
        resumptions: u32,
    },
}

/// A running execution's progress, as it last reported it
/// ([`JobContext::progress`](crate::JobContext::progress)): latest wins, and a new execution
/// starts without any.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct Progress {
    /// Steps done.
    pub done: u64,
    /// Steps in all (0 when unknown).
    pub total: u64,
    /// What it is doing.
    pub message: String,
    /// The execution that reported it.
    pub attempt: u32,
    /// When.
    pub at: DateTime<Utc>,
}

/// A line a running job logged ([`JobContext::log`](crate::JobContext::log)), to be stored.
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    /// The execution that logged it.
    pub attempt: u32,
    /// When.
    pub at: DateTime<Utc>,
    /// The line (at most [`MAX_LOG_LINE_BYTES`](crate::MAX_LOG_LINE_BYTES)).
    pub line: String,
}

/// A stored log line of a job, numbered from 0 in the order they were stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct JobLog {
    /// Its number within the job.
    pub n: u64,
    /// The execution that logged it.
    pub attempt: u32,
    /// When.
    pub at: DateTime<Utc>,
    /// The line.
    pub line: String,
}

/// One write of a worker's, for [`LifecycleStore::record_batch`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum StoreOp {
    /// [`LifecycleStore::start`].
    Start(Start),
    /// A running execution's latest progress and the lines it logged since the last write:
    /// applied only while that execution is the job's running one; lines beyond
    /// [`MAX_STORED_LOG_LINES`](crate::store::MAX_STORED_LOG_LINES) per job are dropped.
    Progress {
        /// The job.
        id: Uuid,
        /// The execution.
        attempt: u32,
        /// Its progress, if it reported any since the last write.
        progress: Option<Progress>,
        /// Its new lines.
        logs: Vec<LogLine>,
    },
    /// [`LifecycleStore::finish`].
    Finish {
        /// The job.
        id: Uuid,
        /// The execution.
        attempt: u32,
        /// What happened.
        transition: Transition,
    },
}
