//! Retention and housekeeping.

use super::*;

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

/// What one round of [`HousekeepingStore::maintain`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// Aggregate deltas folded.
    pub folded: u64,
    /// What was pruned (only by the holder of the prune lease).
    pub pruned: PruneReport,
}
