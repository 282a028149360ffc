//! Perform: the job's own code runs here, in a task of its own, so that a panic is caught and
//! counted as a failure ([`JobPanic`]) and a job over its timeout is stopped ([`JobTimeout`]).

use std::time::Duration;

use crate::error::{JobError, JobPanic, JobTimeout};
use crate::job::JobContext;
use crate::registry::ErasedJob;

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Runs `perform` with a timeout; a panic or the timeout becomes a [`JobError`].
pub(crate) async fn run(
    job: Box<dyn ErasedJob>,
    ctx: JobContext,
    timeout: Duration,
) -> Result<(), JobError> {
    let mut handle = tokio::spawn(async move { job.perform_erased(&ctx).await });
    // If this future is dropped (worker shutdown past its timeout), stop the job too.
    let _guard = AbortOnDrop(handle.abort_handle());
    match tokio::time::timeout(timeout, &mut handle).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) if e.is_panic() => Err(JobPanic {
            message: panic_message(e.into_panic()),
        }
        .into()),
        Ok(Err(_)) => Err(JobError::msg("the job's task was cancelled")),
        Err(_) => Err(JobTimeout { after: timeout }.into()),
    }
}
