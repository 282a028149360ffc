//! What an operator action answers: cancel, requeue, delete.

use super::*;

/// What [`ActionStore::cancel`] did.
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

/// A retry of a finished job from the store ([`ActionStore::requeue`]): the job runs again under
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

/// What [`ActionStore::requeue`] did.
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

/// What [`ActionStore::delete`] did.
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
