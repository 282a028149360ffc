//! What an enqueue writes: the new job, its outbox message, its dedup key.

use super::*;

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
    /// What middleware attached ([`Envelope::metadata`](crate::envelope::Envelope::metadata)).
    pub metadata: crate::envelope::Metadata,
    /// When it was enqueued.
    pub enqueued_at: DateTime<Utc>,
    /// When it is due, if later.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// At most one job per key within the window.
    pub dedup: Option<Dedup>,
    /// The message to publish. With one, the job is written to the outbox, unpublished, until
    /// [`OutboxStore::mark_published`]; without, it is recorded as published.
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

/// A job left unpublished, claimed by a relay ([`OutboxStore::claim_unpublished`]).
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

/// What [`OutboxStore::submit`] did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Submitted {
    /// A new job was recorded: publish it.
    Created(Box<JobRecord>),
    /// The dedup key is taken within its window: this is the job that holds it.
    Existing(Box<JobRecord>),
}
