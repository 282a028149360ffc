//! Your own worker binary around your own jobs, in a few lines.
//!
//! ```text
//! PUBSUB_EMULATOR_HOST=127.0.0.1:8085 cargo run --example custom_worker -- jobs
//! PUBSUB_EMULATOR_HOST=127.0.0.1:8085 cargo run --example custom_worker -- enqueue SendInvoice '{"invoice_id":42}' --queue billing
//! PUBSUB_EMULATOR_HOST=127.0.0.1:8085 cargo run --example custom_worker -- --queue billing
//! ```

use std::process::ExitCode;
use std::time::Duration;

use pubsub_jobs::{register_job, Job, JobContext, JobError, RetryPolicy, Wait};
use serde::{Deserialize, Serialize};

/// The payment provider said "try again later".
#[derive(Debug, thiserror::Error)]
#[error("payment provider unavailable")]
struct ProviderUnavailable;

/// The invoice no longer exists: nothing to do.
#[derive(Debug, thiserror::Error)]
#[error("invoice {0} not found")]
struct InvoiceGone(u64);

#[derive(Serialize, Deserialize)]
struct SendInvoice {
    invoice_id: u64,
}

impl Job for SendInvoice {
    const NAME: &'static str = "SendInvoice";

    fn queue(&self) -> &str {
        "billing"
    }

    fn retry_policy() -> RetryPolicy {
        RetryPolicy::default()
            .retry_on::<ProviderUnavailable>(Wait::polynomially_longer().jitter(0.15), 10)
            .discard_on::<InvoiceGone>()
    }

    fn timeout() -> Duration {
        Duration::from_secs(120)
    }

    async fn perform(&self, ctx: &JobContext) -> Result<(), JobError> {
        if self.invoice_id == 0 {
            return Err(InvoiceGone(self.invoice_id).into());
        }
        println!(
            "sending invoice {} (attempt {})",
            self.invoice_id, ctx.attempt
        );
        // Stored with the job's status when the worker has a job store (`--store`); the HTTP
        // API returns it.
        ctx.set_result(&serde_json::json!({ "sent": true, "invoice_id": self.invoice_id }))
    }
}
register_job!(SendInvoice);

#[tokio::main]
async fn main() -> ExitCode {
    pubsub_jobs_cli::cli::main().await
}
