//! Perform: the job's own code runs here, in the job's task, so that a panic is caught and
//! counted as a failure ([`JobPanic`]) and a job over its timeout is stopped ([`JobTimeout`]).
//! (One task per job: the panic is caught where the job's future is polled, not by a second
//! task.)

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;

use crate::error::{JobError, JobPanic, JobTimeout};
use crate::job::JobContext;
use crate::middleware::{Chain, Next};
use crate::registry::ErasedJob;

pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Runs `perform` with a timeout, inside the middleware's `perform` hooks (the timeout and the
/// panic guard cover them too); a panic or the timeout becomes a [`JobError`].
pub(crate) async fn run(
    job: Box<dyn ErasedJob>,
    ctx: JobContext,
    timeout: Duration,
    middleware: &Chain,
    arguments: &str,
) -> Result<(), JobError> {
    // The job's future is owned here: if this future is dropped (worker shutdown past its
    // timeout), the job stops with it. A panic while it is polled unwinds to catch_unwind; the
    // job and its context are dropped then, as a panicked task's would be.
    let perform = AssertUnwindSafe(async move {
        if middleware.is_empty() {
            job.perform_erased(&ctx).await
        } else {
            Next::new(middleware.as_slice(), &*job, arguments)
                .run(&ctx)
                .await
        }
    })
    .catch_unwind();
    match tokio::time::timeout(timeout, perform).await {
        Ok(Ok(result)) => result,
        Ok(Err(payload)) => Err(JobPanic {
            message: panic_message(payload),
        }
        .into()),
        Err(_) => Err(JobTimeout { after: timeout }.into()),
    }
}
