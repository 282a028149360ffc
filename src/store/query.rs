//! Reads: list queries and pages, counts, throughput per minute.

use super::*;

/// A page request of [`ReadStore::list`].
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
    /// Cut the arguments, result and last error longer than this many characters (a list
    /// view: [`LIST_VALUE_CHARS`] in the API and the dashboard), so that a page of jobs with
    /// large arguments stays small; a cut value is a string ending in `…` and its field is named
    /// in [`JobRecord::truncated`]. `None`: full values (what a bulk action reads).
    pub cut_values_at: Option<u32>,
}

/// How many characters of a job's arguments, result and last error the list views (`GET
/// /v1/jobs`, the dashboard's tables) show: 4,096. The job's own page and `GET /v1/jobs/{id}`
/// show the full values.
pub const LIST_VALUE_CHARS: u32 = 4096;

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

/// How long per-minute execution counts are kept ([`ReadStore::throughput`]).
pub const THROUGHPUT_KEPT: Duration = Duration::from_secs(2 * 3600);

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
