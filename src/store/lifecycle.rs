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
}

/// One write of a worker's, for [`LifecycleStore::record_batch`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum StoreOp {
    /// [`LifecycleStore::start`].
    Start(Start),
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
