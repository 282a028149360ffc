//! A job's record: its status, its state row and its events.

use super::*;

/// A job's status, the state row's summary of its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum JobStatus {
    /// Enqueued, due, not started.
    Pending,
    /// Enqueued for later.
    Scheduled,
    /// An execution is running.
    Running,
    /// An execution failed; a retry is scheduled.
    Retrying,
    /// The last execution succeeded.
    Succeeded,
    /// An execution failed and its outcome (retry or morgue) is being published.
    Failed,
    /// Retries spent (or unrunnable): the job is in the morgue.
    Morgued,
    /// Cancelled before it started; it will not run.
    Cancelled,
    /// Failed with an error its policy discards.
    Discarded,
}

impl JobStatus {
    /// Every status.
    pub const ALL: [JobStatus; 9] = [
        Self::Pending,
        Self::Scheduled,
        Self::Running,
        Self::Retrying,
        Self::Succeeded,
        Self::Failed,
        Self::Morgued,
        Self::Cancelled,
        Self::Discarded,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Morgued => "morgued",
            Self::Cancelled => "cancelled",
            Self::Discarded => "discarded",
        }
    }

    /// True once nothing more will happen to the job (short of a morgue retry).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Morgued | Self::Cancelled | Self::Discarded
        )
    }

    /// True while a cancel can still stop the job.
    pub fn is_cancellable(self) -> bool {
        matches!(self, Self::Pending | Self::Scheduled | Self::Retrying)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown status {s:?}; one of {}",
                    Self::ALL.map(|s| s.as_str()).join(", ")
                )
            })
    }
}

/// What happened to a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// Published, due now.
    Enqueued,
    /// Published, due later.
    Scheduled,
    /// An execution started.
    Started,
    /// An execution succeeded.
    Succeeded,
    /// An execution failed.
    Failed,
    /// A retry was published.
    RetryScheduled,
    /// Sent to the morgue.
    Morgued,
    /// Discarded by its retry policy.
    Discarded,
    /// Cancelled before it started.
    Cancelled,
    /// An execution stopped early (its worker was stopping) and was published again to resume
    /// from its checkpoint, without counting an execution.
    Interrupted,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 10] = [
        Self::Enqueued,
        Self::Scheduled,
        Self::Started,
        Self::Succeeded,
        Self::Failed,
        Self::RetryScheduled,
        Self::Morgued,
        Self::Discarded,
        Self::Cancelled,
        Self::Interrupted,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enqueued => "enqueued",
            Self::Scheduled => "scheduled",
            Self::Started => "started",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::RetryScheduled => "retry_scheduled",
            Self::Morgued => "morgued",
            Self::Discarded => "discarded",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
        }
    }

    /// The kind named `s` (snake_case), if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A job's current state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job id.
    pub id: Uuid,
    /// The class name.
    pub job_class: String,
    /// The queue.
    pub queue: String,
    /// The status.
    pub status: JobStatus,
    /// Executions started so far.
    pub attempts: u32,
    /// The job's arguments.
    pub arguments: serde_json::Value,
    /// What middleware attached on enqueue ([`Envelope::metadata`](crate::envelope::Envelope::metadata)).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub metadata: crate::envelope::Metadata,
    /// The running execution's latest progress; `None` before it reports any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// When it was first enqueued.
    pub enqueued_at: DateTime<Utc>,
    /// When it is (or was) due, if later than enqueued.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// When the last execution started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished (succeeded, morgued, discarded, cancelled).
    pub finished_at: Option<DateTime<Utc>>,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
    /// The last execution's error.
    pub last_error: Option<String>,
    /// What the job recorded with [`JobContext::set_result`](crate::JobContext::set_result).
    pub result: Option<serde_json::Value>,
    /// The dedup key it was submitted with.
    pub dedup_key: Option<String>,
    /// Grows by one on every change (the API's ETag).
    pub version: i64,
    /// Bumped by every retry of the finished job (from the dashboard, the API or the morgue).
    #[serde(default)]
    pub generation: u32,
    /// When its message was published (`None`: still in the outbox, the relay publishes it).
    #[serde(default)]
    pub published_at: Option<DateTime<Utc>>,
    /// The fields a list read cut short ([`ListQuery::cut_values_at`]): `arguments`, `result`,
    /// `last_error`. Empty for a full read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub truncated: Vec<String>,
}

impl JobRecord {
    /// The record of a job just recorded by a bulk submit, as a read would return it
    /// (times at the store's millisecond precision).
    pub(crate) fn recorded(job: &NewJob, now: DateTime<Utc>, published: bool) -> Self {
        let ms =
            |t: DateTime<Utc>| DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t);
        let due_later = job.scheduled_at.filter(|at| *at > job.enqueued_at);
        Self {
            id: job.id,
            job_class: job.job_class.clone(),
            queue: job.queue.clone(),
            status: if due_later.is_some() {
                JobStatus::Scheduled
            } else {
                JobStatus::Pending
            },
            attempts: 0,
            arguments: job.arguments.clone(),
            metadata: job.metadata.clone(),
            progress: None,
            enqueued_at: ms(job.enqueued_at),
            scheduled_at: due_later.map(ms),
            started_at: None,
            finished_at: None,
            updated_at: ms(now),
            last_error: None,
            result: None,
            dedup_key: job.dedup.as_ref().map(|d| d.key.clone()),
            version: 1,
            generation: 0,
            published_at: (published || job.message.is_none()).then(|| ms(now)),
            truncated: Vec::new(),
        }
    }
}

/// One entry of a job's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct JobEvent {
    /// What happened.
    pub kind: EventKind,
    /// The execution it belongs to (0 before the first).
    pub attempt: u32,
    /// When.
    pub at: DateTime<Utc>,
    /// The error, for failures.
    pub error: Option<String>,
    /// More: the due time of a retry, a run's duration.
    pub detail: Option<serde_json::Value>,
}
