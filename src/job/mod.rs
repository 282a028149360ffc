//! The `Job` trait: what a user writes. A job is a serde struct with an async `perform`, a queue
//! (`queue_as`), a retry policy (`retry_on` / `discard_on`) and a timeout.
//!
//! ```
//! use pubsub_jobs::{register_job, Job, JobContext, JobError, RetryPolicy, Wait};
//! use serde::{Deserialize, Serialize};
//! use std::time::Duration;
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("the mail server is down")]
//! struct MailServerDown;
//!
//! #[derive(Serialize, Deserialize)]
//! struct SendWelcomeEmail { user_id: u64 }
//!
//! impl Job for SendWelcomeEmail {
//!     const NAME: &'static str = "SendWelcomeEmail";
//!     fn queue(&self) -> &str { "mailers" }
//!     fn retry_policy() -> RetryPolicy {
//!         RetryPolicy::default().retry_on::<MailServerDown>(Wait::polynomially_longer(), 10)
//!     }
//!     async fn perform(&self, ctx: &JobContext) -> Result<(), JobError> {
//!         println!("attempt {} for user {}", ctx.attempt, self.user_id);
//!         Ok(())
//!     }
//! }
//! register_job!(SendWelcomeEmail);
//! ```

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

mod enqueue;

use crate::client::Client;
use crate::error::JobError;
use crate::retry_policy::RetryPolicy;
pub use enqueue::ConfiguredJob;

/// The default time a job may run before it fails with [`JobTimeout`].
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A background job: a serializable struct with an async `perform`.
///
/// Register each job type with [`register_job!`](crate::register_job) so that workers can find it
/// by [`Job::NAME`].
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The class name on the wire. Unique within a binary: a duplicate stops the worker at start.
    const NAME: &'static str;

    /// The format this job type is published in: pubsub-jobs' envelope (the default), or
    /// [`Wire::ActiveJob`](crate::envelope::Wire::ActiveJob) for a job a Rails worker runs.
    const WIRE: crate::envelope::Wire = crate::envelope::Wire::PubsubJobs;

    /// The application state this job reads with [`JobContext::state`]: a worker without one
    /// of these types refuses to start, naming the class and the type (see
    /// [`State`](crate::State)). Defaults to none.
    const STATE: &'static [crate::StateType] = &[];

    /// The queue this job is published to (ActiveJob's `queue_as`). Defaults to `default`.
    fn queue(&self) -> &str {
        "default"
    }

    /// How failures are handled. Defaults to [`RetryPolicy::default`]: 3 executions in all,
    /// at least 5 minutes apart, then the morgue.
    fn retry_policy() -> RetryPolicy {
        RetryPolicy::default()
    }

    /// How long one execution may run before it fails with [`JobTimeout`](crate::JobTimeout). Defaults to 30 minutes.
    fn timeout() -> Duration {
        DEFAULT_TIMEOUT
    }

    /// Runs the job. An `Err` (or a panic, or a timeout) is a failure handled by the retry policy.
    fn perform(&self, ctx: &JobContext) -> impl Future<Output = Result<(), JobError>> + Send;

    /// Publishes the job to its queue; returns once Pub/Sub has accepted the message.
    fn perform_later(&self, client: &Client) -> impl Future<Output = crate::Result<Uuid>> + Send {
        async move { self.set().perform_later(client).await }
    }

    /// Writes the job inside the application's own transaction on the job store's database:
    /// it exists only if `tx` commits, and then the relay publishes it (see
    /// [`ConfiguredJob::perform_later_in`]). `client` checks it as every enqueue is checked.
    #[cfg(feature = "sql")]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
    fn perform_later_in<'a, T: crate::store::EnqueueTx>(
        &'a self,
        client: &'a Client,
        tx: &'a mut T,
    ) -> impl Future<Output = crate::Result<Uuid>> + Send + 'a {
        async move { self.set().perform_later_in(client, tx).await }
    }

    /// Options for one enqueue: a delay, an exact time, another queue (ActiveJob's `set`).
    fn set(&self) -> ConfiguredJob<'_, Self> {
        ConfiguredJob::new(self)
    }
}

/// What a running job knows about its execution.
#[derive(Clone, Debug)]
pub struct JobContext {
    /// The job id, stable across retries.
    pub job_id: Uuid,
    /// The class name.
    pub job_class: String,
    /// The queue the job was pulled from.
    pub queue: String,
    /// The 1-based execution number: 1 on the first run, 2 on the first retry.
    pub attempt: u32,
    /// When the job was first enqueued.
    pub enqueued_at: DateTime<Utc>,
    /// The error of the previous execution, on a retry.
    pub last_error: Option<String>,
    /// How many times this execution was interrupted before and resumed
    /// ([`JobError::interrupted`]): 0 on an execution's first run.
    pub resumptions: u32,
    pub(crate) client: Client,
    /// The checkpoint the previous execution saved, if any.
    pub(crate) checkpoint_in: Option<serde_json::Value>,
    pub(crate) outputs: Arc<Mutex<Outputs>>,
    pub(crate) state: crate::State,
    /// Cancelled when the worker running the job begins to stop.
    pub(crate) stopping: tokio_util::sync::CancellationToken,
    /// What middleware attached on enqueue.
    pub(crate) metadata: crate::envelope::Metadata,
    /// Where progress and log lines go, with a job store.
    pub(crate) live: Option<Arc<crate::worker::progress::LiveJobs>>,
}

/// The largest result [`JobContext::set_result`] takes, as JSON: 1 MiB.
pub const MAX_RESULT_BYTES: usize = 1024 * 1024;

/// `s` cut to [`MAX_LOG_LINE_BYTES`] on a character boundary.
fn cut(s: String) -> String {
    if s.len() <= MAX_LOG_LINE_BYTES {
        return s;
    }
    crate::morgue::truncate(&s, MAX_LOG_LINE_BYTES)
}

/// The bytes of `v` written as JSON, without writing them anywhere.
fn json_size(v: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing a Value to a counter cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// What an execution leaves behind besides its outcome.
#[derive(Debug, Default)]
pub(crate) struct Outputs {
    pub result: Option<serde_json::Value>,
    pub checkpoint: Option<serde_json::Value>,
    /// The job reported progress or logged a line (its last report is written at its end).
    pub reported: bool,
}

/// The longest line [`JobContext::log`] keeps, and the longest progress message: 2 KiB (cut
/// on a character boundary).
pub const MAX_LOG_LINE_BYTES: usize = 2048;

impl JobContext {
    /// A client to enqueue further jobs from inside `perform`.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Reports how far the job is: `done` of `total` steps (`total` 0 when unknown), with a
    /// message ("2 of 3: notify"). With a job store, the latest report is stored (at most one
    /// write per job a second, and the last one when the job ends) and shown by
    /// `GET /v1/jobs/{id}`, its event stream and the dashboard until the execution ends; the next
    /// execution starts without one. Without a store it goes to the worker's log only
    /// (`job.progress`, at info). A message over [`MAX_LOG_LINE_BYTES`] is cut.
    pub fn progress(&self, done: u64, total: u64, message: impl Into<String>) {
        let message = cut(message.into());
        match &self.live {
            Some(live) => {
                tracing::debug!(event = "job.progress", done, total, message = %message, "progress");
                live.progress(self.job_id, self.attempt, done, total, message);
                self.lock().reported = true;
            }
            None => {
                tracing::info!(event = "job.progress", done, total, message = %message, "progress")
            }
        }
    }

    /// Logs a line of the job's own: it goes to the worker's log (`job.log`, with the job's
    /// fields) and, with a job store, is stored with the job (the first
    /// [`MAX_STORED_LOG_LINES`](crate::store::MAX_STORED_LOG_LINES) lines of each job), shown by
    /// `GET /v1/jobs/{id}/logs`, the event stream and the dashboard. A line over
    /// [`MAX_LOG_LINE_BYTES`] is cut.
    pub fn log(&self, line: impl Into<String>) {
        let line = cut(line.into());
        tracing::info!(event = "job.log", line = %line, "job log");
        if let Some(live) = &self.live {
            live.log(self.job_id, self.attempt, line);
            self.lock().reported = true;
        }
    }

    /// What [`Middleware`](crate::Middleware) attached when the job was enqueued (a tenant, a
    /// request id, trace context): the same on every retry. Empty without middleware.
    pub fn metadata(&self) -> &crate::envelope::Metadata {
        &self.metadata
    }

    /// The application state of type `T` the worker was given ([`Worker::state`](crate::Worker::state)):
    /// a database pool, an HTTP client. Without one, a [`MissingState`](crate::MissingState)
    /// error naming the type and this job's class (handled by the retry policy like any error;
    /// list the type in [`Job::STATE`] and the worker refuses to start without it instead).
    pub fn state<T: Send + Sync + 'static>(&self) -> Result<&T, JobError> {
        self.state.get::<T>().ok_or_else(|| {
            JobError::new(crate::MissingState {
                job_class: self.job_class.clone(),
                type_name: std::any::type_name::<T>(),
            })
        })
    }

    /// Records the job's result (Asynq's `ResultWriter`): with a job store it is stored and the
    /// HTTP API returns it with the job's status. The last value set wins; a result set by a
    /// failed execution is kept as progress until a later one succeeds. A result over
    /// [`MAX_RESULT_BYTES`] as JSON is refused (store a reference to large outputs instead), so
    /// what the store holds and the API returns for a job stays bounded.
    pub fn set_result<T: Serialize + ?Sized>(&self, result: &T) -> Result<(), JobError> {
        let v = serde_json::to_value(result).map_err(JobError::new)?;
        let size = json_size(&v);
        if size > MAX_RESULT_BYTES {
            return Err(JobError::msg(format!(
                "the job's result is {size} bytes as JSON, over the limit of {MAX_RESULT_BYTES}: \
                 store large outputs elsewhere and return a reference"
            )));
        }
        self.lock().result = Some(v);
        Ok(())
    }

    /// The checkpoint saved by the previous execution with [`JobContext::save_checkpoint`], if
    /// any: where a retry resumes (a multi-step job's finished steps, an import's offset).
    pub fn checkpoint<T: DeserializeOwned>(&self) -> Option<T> {
        let v = self.checkpoint_in.clone()?;
        serde_json::from_value(v).ok()
    }

    /// Saves a checkpoint that the next execution, if this one fails and is retried, reads with
    /// [`JobContext::checkpoint`]. It travels in the retry's message, so it works without a store.
    pub fn save_checkpoint<T: Serialize + ?Sized>(&self, checkpoint: &T) -> Result<(), JobError> {
        let v = serde_json::to_value(checkpoint).map_err(JobError::new)?;
        self.lock().checkpoint = Some(v);
        Ok(())
    }

    /// Whether the worker running this job has begun to stop (its shutdown signal came). It
    /// waits for running jobs up to its shutdown timeout, then drops them; a long job that
    /// checks this can save a checkpoint and return [`JobError::interrupted`] to resume from it
    /// on another worker without counting an execution.
    pub fn is_stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }

    /// Completes when the worker running this job begins to stop (see
    /// [`JobContext::is_stopping`]), for a `select!` beside the job's work.
    pub async fn stopping(&self) {
        self.stopping.cancelled().await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Outputs> {
        self.outputs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_result_over_the_limit_is_refused_naming_it_and_the_last_good_one_stays() {
        let (client, _) = crate::testing::memory_client();
        let ctx = JobContext {
            job_id: Uuid::now_v7(),
            job_class: "J".into(),
            queue: "q".into(),
            attempt: 1,
            enqueued_at: Utc::now(),
            last_error: None,
            client,
            checkpoint_in: None,
            outputs: Default::default(),
            state: crate::State::new().with(7u32),
            resumptions: 0,
            stopping: Default::default(),
            metadata: Default::default(),
            live: None,
        };
        assert_eq!(ctx.state::<u32>().ok(), Some(&7));
        let missing = ctx.state::<String>().unwrap_err();
        assert!(missing.is::<crate::MissingState>());
        let text = missing.to_string();
        assert!(
            text.contains("job class J") && text.contains("alloc::string::String"),
            "{text}"
        );
        ctx.set_result(&serde_json::json!({"rows": 3})).unwrap();
        let huge = "x".repeat(MAX_RESULT_BYTES);
        let err = ctx.set_result(&huge).unwrap_err().to_string();
        assert!(err.contains(&MAX_RESULT_BYTES.to_string()), "{err}");
        assert_eq!(ctx.lock().result, Some(serde_json::json!({"rows": 3})));
        // Exactly at the limit (the quotes count) is taken.
        let fits = "x".repeat(MAX_RESULT_BYTES - 2);
        ctx.set_result(&fits).unwrap();
        assert_eq!(json_size(&serde_json::json!(fits)), MAX_RESULT_BYTES);
        assert_eq!(
            ctx.lock()
                .result
                .as_ref()
                .and_then(|v| v.as_str())
                .map(str::len),
            Some(MAX_RESULT_BYTES - 2)
        );
    }
}
