//! Errors, a leaf of the crate: the library's [`Error`] (what can go wrong between
//! `perform_later` and the broker), the store's [`StoreError`], and what a job's `perform` fails
//! with ([`JobError`], and the worker's own [`JobTimeout`] and [`JobPanic`]). Nothing here
//! depends on the rest of the crate.
//!
//! Every variant names the thing that is wrong (the queue, the job class, the field) so that an
//! operator reading one log line knows what to fix.

use std::time::Duration;

mod job;
mod store;

pub use job::{JobError, JobInterrupted, JobPanic, JobTimeout, MessageError};
pub use store::StoreError;

/// Errors returned by the client, the worker and the broker layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A queue name that Pub/Sub would refuse, caught before any network call.
    #[error("invalid queue name {name:?}: {reason}")]
    InvalidQueueName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A job whose encoded message is larger than Pub/Sub accepts, or than the client's
    /// `max_job_bytes`.
    #[error("job {job_class} for queue {queue:?} is {size} bytes, over the limit of {limit} bytes (Pub/Sub's is 10000000; PUBSUB_JOBS_MAX_JOB_BYTES sets a lower one)")]
    PayloadTooLarge {
        /// The job's class name.
        job_class: String,
        /// The queue it was meant for.
        queue: String,
        /// Encoded size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// A message attribute over Pub/Sub's limits (a value over 1,024 bytes, a key over 256):
    /// for instance a job class name that long.
    #[error("job {job_class} for queue {queue:?}: its {attribute:?} attribute is {size} bytes, over Pub/Sub's limit of {limit} bytes")]
    AttributeTooLong {
        /// The job's class name (cut).
        job_class: String,
        /// The queue it was meant for.
        queue: String,
        /// The attribute.
        attribute: String,
        /// Its size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// A delay longer than Pub/Sub keeps a message.
    #[error("job {job_class} for queue {queue:?} is scheduled {delay:?} ahead, beyond the 7-day message retention")]
    DelayTooLong {
        /// The job's class name.
        job_class: String,
        /// The queue it was meant for.
        queue: String,
        /// The requested delay.
        delay: Duration,
    },
    /// A job class that is not registered in this binary.
    #[error("unknown job class {0:?}: it is not registered in this binary (see `worker jobs`)")]
    UnknownJobClass(String),
    /// Arguments that do not deserialize into the job's struct.
    #[error("arguments for job class {job_class} do not deserialize: {message}")]
    InvalidArguments {
        /// The job's class name.
        job_class: String,
        /// serde's message, with the path of the field at fault.
        message: String,
        /// The path of the field at fault (`nested.count`, `steps[0].url`), when serde names one.
        path: Option<String>,
    },
    /// Two job types registered under one class name.
    #[error("job class name {name:?} is registered twice: by {first} and by {second}")]
    DuplicateJobClass {
        /// The class name.
        name: &'static str,
        /// The first Rust type.
        first: &'static str,
        /// The second Rust type.
        second: &'static str,
    },
    /// The job could not be serialized.
    #[error("job {job_class} could not be serialized: {source}")]
    Serialize {
        /// The job's class name.
        job_class: String,
        /// serde's error.
        #[source]
        source: serde_json::Error,
    },
    /// A call to Pub/Sub (or the in-memory broker) failed.
    #[error("pub/sub {operation} on {resource:?} failed: {code:?}: {message}")]
    Broker {
        /// What was being done: publish, create topic, ack, ...
        operation: &'static str,
        /// The topic or subscription.
        resource: String,
        /// The gRPC status code (or the in-memory broker's equivalent).
        code: BrokerCode,
        /// The broker's message.
        message: String,
    },
    /// A queue (or the morgue) that does not exist where it must: nothing was created.
    #[error("{what} {queue:?} does not exist (no subscription {subscription:?} in project {project:?}); nothing was created")]
    QueueNotFound {
        /// `queue` or `the morgue`.
        what: &'static str,
        /// The queue's name.
        queue: String,
        /// The subscription looked for.
        subscription: String,
        /// The Google Cloud project.
        project: String,
    },
    /// A queue's topic or subscription does not exist, and this client does not create queues
    /// ([`ClientConfig::create_queues`](crate::ClientConfig::create_queues) is off).
    #[error("queue {queue:?}: the {kind} {resource:?} does not exist, and this client does not create queues (PUBSUB_CREATE_QUEUES=false); create it with `worker queues setup {queue}` (or the gcloud commands `worker queues setup --print-gcloud {queue}` prints)")]
    QueueMissing {
        /// The queue (or the morgue).
        queue: String,
        /// `topic` or `subscription`.
        kind: &'static str,
        /// Its name (prefix included).
        resource: String,
    },
    /// Google Cloud credentials could not be loaded (real Pub/Sub, no emulator).
    #[error("Google Cloud credentials (Application Default Credentials): {0}")]
    Credentials(String),
    /// A local I/O operation failed (a file, a port, a child process).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The Pub/Sub emulator could not be found or started (tests, the demo, benchmarks).
    #[error("{0}")]
    Emulator(String),
    /// A periodic entry that cannot run: a bad schedule, timezone, job class or arguments, or
    /// a duplicate name. Names the entry and the field.
    #[error("periodic entry {entry:?}: {field}: {message}")]
    Periodic {
        /// The entry's name.
        entry: String,
        /// The field at fault (`schedule`, `timezone`, `job_class`, `arguments`, `name`, ...).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A worker task panicked or was aborted.
    #[error("worker task failed: {0}")]
    WorkerTask(String),
    /// A broker call did not finish in time.
    #[error("pub/sub {operation} on {resource:?} timed out after {after:?} (is the emulator or the network up?)")]
    Timeout {
        /// What was being done.
        operation: &'static str,
        /// The topic or subscription.
        resource: String,
        /// The configured limit.
        after: Duration,
    },
    /// The first connection to Pub/Sub failed.
    #[error("cannot reach Pub/Sub at {target}: {message} (is it running? check PUBSUB_EMULATOR_HOST / the network)")]
    Connect {
        /// The emulator's host:port, or the service.
        target: String,
        /// The transport's message.
        message: String,
    },
    /// Configuration that cannot work.
    #[error("configuration: {0}")]
    Config(String),
    /// A registered job class lists application state ([`Job::STATE`](crate::Job::STATE)) that
    /// the worker was not given.
    #[error(
        "job class {job_class} needs application state of type {type_name}, which this worker was \
         not given: give it with Worker::state (or pubsub_jobs_cli::cli::main_with_state)"
    )]
    StateMissing {
        /// The job class.
        job_class: &'static str,
        /// The Rust type it needs.
        type_name: &'static str,
    },
    /// Something that needs a job store was asked of a client without one.
    #[error("{what} needs a job store (Client::with_store, or --store / PUBSUB_JOBS_STORE)")]
    StoreRequired {
        /// What needed it: `the HTTP API`, `the relay`, `periodic jobs`, `job class X: a dedup key`.
        what: String,
    },
    /// The job store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A [`Middleware`](crate::Middleware) refused to enqueue a job: nothing was written.
    #[error("job {job_class} was not enqueued: {reason}")]
    EnqueueRefused {
        /// The job's class name.
        job_class: String,
        /// Why, as the middleware put it.
        reason: String,
    },
    /// A [`Middleware`](crate::Middleware) left the job out of the enqueue: nothing was
    /// recorded or published.
    #[error("job {job_class} for queue {queue:?} was left out of the enqueue by a middleware; nothing was published")]
    EnqueueSkipped {
        /// The job's class name.
        job_class: String,
        /// The queue it was meant for.
        queue: String,
    },
}

impl Error {
    /// A middleware's refusal to enqueue a job of class `job_class`, for `reason`
    /// ([`Error::EnqueueRefused`]).
    pub fn refused(job_class: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::EnqueueRefused {
            job_class: job_class.into(),
            reason: reason.to_string(),
        }
    }

    /// True when the broker said the topic or subscription does not exist.
    pub fn is_not_found(&self) -> bool {
        self.broker_code() == Some(BrokerCode::NotFound)
    }

    /// The broker's status code, for a [`Error::Broker`].
    pub fn broker_code(&self) -> Option<BrokerCode> {
        match self {
            Error::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A broker call's status: the gRPC status codes Pub/Sub answers with, kept as a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BrokerCode {
    /// The topic or subscription does not exist.
    NotFound,
    /// The topic or subscription exists already.
    AlreadyExists,
    /// The request was refused as malformed.
    InvalidArgument,
    /// The caller may not do this.
    PermissionDenied,
    /// A precondition failed (for example a detached subscription).
    FailedPrecondition,
    /// The service is unavailable for now.
    Unavailable,
    /// The call ran out of time on the server.
    DeadlineExceeded,
    /// A quota or limit is exhausted.
    ResourceExhausted,
    /// Any other code, by its gRPC number.
    Other(i32),
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
