//! What the store keeps for periodic jobs (`crate::periodic`): each entry's definition and
//! state (paused, last tick), and one row per claimed tick, unique on (entry, tick time), which
//! is how many schedulers agree without a leader that each tick is enqueued once.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::NewJob;

/// A periodic entry's definition as the store keeps it: for listings, and to run it now from a
/// process that does not have the schedule file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeriodicDefinition {
    /// The entry's unique name.
    pub name: String,
    /// The cron expression.
    pub schedule: String,
    /// The IANA timezone the expression is read in.
    pub timezone: String,
    /// The job class it enqueues.
    pub job_class: String,
    /// The queue it enqueues to.
    pub queue: String,
    /// The job's arguments.
    pub arguments: serde_json::Value,
}

/// A periodic entry with its state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeriodicState {
    /// The definition last registered by a scheduler.
    pub definition: PeriodicDefinition,
    /// Paused entries' ticks are claimed but enqueue nothing.
    pub paused: bool,
    /// The last tick that enqueued a job.
    pub last_tick_at: Option<DateTime<Utc>>,
    /// That job's id.
    pub last_job_id: Option<Uuid>,
    /// When a scheduler last registered the definition (it is running with it).
    pub updated_at: DateTime<Utc>,
}

/// What claiming a tick should do.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum TickAction {
    /// Record the job in the outbox, in the claim's transaction (unless the entry is paused).
    Enqueue(Box<NewJob>),
    /// Record that `missed` ticks up to this one were skipped (too late to run).
    Skip {
        /// How many ticks were skipped.
        missed: u64,
    },
}

/// The outcome of claiming a tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TickClaim {
    /// This caller claimed the tick and its action was recorded.
    Claimed,
    /// This caller claimed the tick, but the entry is paused: nothing was enqueued.
    Paused,
    /// Another scheduler claimed it first.
    AlreadyClaimed,
}

/// A claimed tick.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TickRecord {
    /// The entry's name.
    pub name: String,
    /// The tick's time.
    pub tick_at: DateTime<Utc>,
    /// `enqueued`, `skipped` or `paused`.
    pub outcome: String,
    /// The job enqueued, for `enqueued`.
    pub job_id: Option<Uuid>,
    /// When it was claimed.
    pub claimed_at: DateTime<Utc>,
}
