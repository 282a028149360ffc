//! `MockJob`: the job the `worker` binary registers for demos, load and tests (not registered
//! through `register_job!`, so an application's own worker built on [`crate::cli`] lacks it). It sleeps, and fails
//! on request: always (`raise_error`) or on its first `fail_attempts` executions. With `crash`
//! it aborts the whole worker process after its sleep, every time it runs (a job that kills its
//! worker, for chaos tests of a deployment's dead-letter backstop), but only in a worker whose
//! environment has `MOCK_JOB_ALLOW_CRASH=1`; elsewhere it fails saying so.
//!
//! It retries on [`MockJobError`] for 3 executions in all, waiting 5 minutes between them, or
//! `MOCK_JOB_RETRY_WAIT` seconds when that variable is set.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use pubsub_jobs::{Job, JobContext, JobError, RetryPolicy, Wait};

/// A job that sleeps `sleep_duration` seconds and fails as asked.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MockJob {
    /// Seconds to sleep (fractions allowed).
    pub sleep_duration: f64,
    /// Fail every execution.
    pub raise_error: bool,
    /// Fail the first N executions, then succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_attempts: Option<u32>,
    /// Abort the worker process after the sleep (only where `MOCK_JOB_ALLOW_CRASH=1`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub crash: bool,
}

/// The error MockJob raises.
#[derive(Debug, thiserror::Error)]
#[error("MockJob failed on purpose (attempt {attempt})")]
pub struct MockJobError {
    /// The execution that failed.
    pub attempt: u32,
}

/// The wait between MockJob's retries: `MOCK_JOB_RETRY_WAIT` seconds, or 5 minutes.
pub fn retry_wait() -> Duration {
    std::env::var("MOCK_JOB_RETRY_WAIT")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(300))
}

impl Job for MockJob {
    const NAME: &'static str = "MockJob";

    fn retry_policy() -> RetryPolicy {
        RetryPolicy::default().retry_on::<MockJobError>(Wait::fixed(retry_wait()), 3)
    }

    async fn perform(&self, ctx: &JobContext) -> Result<(), JobError> {
        if !self.sleep_duration.is_finite() || self.sleep_duration < 0.0 {
            return Err(JobError::msg(format!(
                "sleep_duration must be a non-negative number of seconds, got {}",
                self.sleep_duration
            )));
        }
        if self.sleep_duration > 0.0 {
            // A zero sleep would still arm a timer and wake the runtime: a no-op job does not.
            tokio::time::sleep(Duration::from_secs_f64(self.sleep_duration)).await;
        }
        if self.crash {
            if std::env::var("MOCK_JOB_ALLOW_CRASH").as_deref() == Ok("1") {
                // An error line is written at once, before the abort.
                tracing::error!("MockJob crash requested: aborting the worker");
                std::process::abort();
            }
            return Err(JobError::msg(
                "MockJob crash: true aborts the worker only where MOCK_JOB_ALLOW_CRASH=1 is set",
            ));
        }
        let fail_now = self.raise_error || self.fail_attempts.is_some_and(|n| ctx.attempt <= n);
        if fail_now {
            return Err(MockJobError {
                attempt: ctx.attempt,
            }
            .into());
        }
        Ok(())
    }
}

impl MockJob {
    /// A random MockJob for load: sleeps uniformly in `[0, max_sleep]` seconds and fails every
    /// execution with probability `fail_ratio`.
    pub fn random(rng: &mut impl rand::Rng, max_sleep: f64, fail_ratio: f64) -> Self {
        let sleep = if max_sleep > 0.0 {
            rng.gen_range(0.0..=max_sleep)
        } else {
            0.0
        };
        Self {
            sleep_duration: (sleep * 1000.0).round() / 1000.0,
            raise_error: rng.gen_bool(fail_ratio.clamp(0.0, 1.0)),
            fail_attempts: None,
            crash: false,
        }
    }
}
