//! What a job's `perform` can fail with: [`JobError`] (any error, its type kept for the retry
//! policy's matching), and the two failures the worker makes itself, [`JobTimeout`] and
//! [`JobPanic`]. A leaf module: the job, the retry policy and the registry all depend on it.

use std::any::type_name;
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// The error a job returns. Any `std::error::Error` converts into it with `?`, keeping its type so
/// that [`RetryPolicy::retry_on`](crate::RetryPolicy::retry_on) and [`RetryPolicy::discard_on`](crate::RetryPolicy::discard_on) can match it by downcast.
pub struct JobError {
    inner: Box<dyn StdError + Send + Sync + 'static>,
    type_name: &'static str,
}

impl JobError {
    /// The outcome of a job that stopped early and resumes from its checkpoint without counting
    /// an execution ([`JobInterrupted`]): save the checkpoint first, with
    /// [`JobContext::save_checkpoint`](crate::JobContext::save_checkpoint).
    pub fn interrupted() -> Self {
        Self::new(JobInterrupted)
    }

    /// An error with a message and no particular type (matched only by the default rule).
    pub fn msg(message: impl fmt::Display) -> Self {
        Self::new(MessageError(message.to_string()))
    }

    /// Wraps an error, remembering its type.
    pub fn new<E: StdError + Send + Sync + 'static>(error: E) -> Self {
        Self {
            inner: Box::new(error),
            type_name: type_name::<E>(),
        }
    }

    /// True when the wrapped error is an `E`.
    pub fn is<E: StdError + 'static>(&self) -> bool {
        self.inner.is::<E>()
    }

    /// The wrapped error as an `E`, if it is one.
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        self.inner.downcast_ref::<E>()
    }

    /// The Rust type name of the wrapped error.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for JobError {
    fn from(error: E) -> Self {
        Self::new(error)
    }
}

impl fmt::Debug for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {:?}", self.type_name, self.inner)
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)?;
        let mut source = self.inner.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// A plain message error, from [`JobError::msg`].
#[derive(Debug)]
pub struct MessageError(pub String);

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for MessageError {}

/// The failure of a job that ran longer than its [`Job::timeout`](crate::Job::timeout).
#[derive(Debug, thiserror::Error)]
#[error("job timed out after {after:?}")]
pub struct JobTimeout {
    /// The limit that was exceeded.
    pub after: Duration,
}

/// Not a failure: a job that returns this (see [`JobError::interrupted`]) stopped early, usually
/// because its worker is stopping ([`JobContext::is_stopping`](crate::JobContext::is_stopping)).
/// It is published again at once with the checkpoint it saved, and runs again without counting
/// an execution: the same attempt, its retry policy untouched (River's snooze, Rails 8.1's
/// continuable jobs). Its envelope's `resumptions` counts these.
#[derive(Debug, thiserror::Error)]
#[error("job interrupted: it resumes from its checkpoint without counting an execution")]
pub struct JobInterrupted;

/// The failure of a job whose `perform` panicked.
#[derive(Debug, thiserror::Error)]
#[error("job panicked: {message}")]
pub struct JobPanic {
    /// The panic payload, when it was a string.
    pub message: String,
}
