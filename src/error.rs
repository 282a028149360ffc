//! Library errors: what can go wrong between `perform_later` and the broker.
//!
//! Every variant names the thing that is wrong (the queue, the job class, the field) so that an
//! operator reading one log line knows what to fix.

use std::time::Duration;

/// Errors returned by the client, the worker and the broker layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A queue name that Pub/Sub would refuse, caught before any network call.
    #[error("invalid queue name {name:?}: {reason}")]
    InvalidQueueName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A job whose encoded message is larger than Pub/Sub accepts.
    #[error("job {job_class} for queue {queue:?} is {size} bytes, over the Pub/Sub limit of {limit} bytes")]
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
    #[error("pub/sub {operation} on {resource:?} failed: {message}")]
    Broker {
        /// What was being done: publish, create topic, ack, ...
        operation: &'static str,
        /// The topic or subscription.
        resource: String,
        /// The broker's message.
        message: String,
        /// Whether the resource did not exist.
        not_found: bool,
    },
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
    /// The job store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl Error {
    /// True when the broker said the topic or subscription does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::Broker {
                not_found: true,
                ..
            }
        )
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
