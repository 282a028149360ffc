//! Your own worker binary around your own jobs, in a few lines. Its job reaches the
//! application's database pool through the worker's state (`ctx.state::<AppState>()`), not a
//! global: the pool is given once, at start (`DATABASE_URL`, PostgreSQL; it connects when a job
//! first uses it). A middleware reports every failed execution with what happens next, as an
//! error reporter (Sentry, Honeybadger) would, without touching the job.
//!
//! ```text
//! PUBSUB_EMULATOR_HOST=127.0.0.1:8085 cargo run --example custom_worker -- jobs
//! PUBSUB_EMULATOR_HOST=127.0.0.1:8085 cargo run --example custom_worker -- enqueue SendInvoice '{"invoice_id":42}' --queue billing
//! PUBSUB_EMULATOR_HOST=127.0.0.1:8085 cargo run --example custom_worker -- --queue billing
//! ```

use std::process::ExitCode;
use std::time::Duration;

use pubsub_jobs::middleware::{Failure, FailureDecision};
use pubsub_jobs::{
    register_job, Job, JobContext, JobError, Middleware, RetryPolicy, StateType, Wait,
};
use pubsub_jobs_cli::cli::App;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgPool, PgPoolOptions};
use tokio::sync::OnceCell;

/// What the jobs need from the application, given to the worker once.
struct AppState {
    pool: PgPool,
    /// The table, created by the first job that needs it.
    schema: OnceCell<()>,
}

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
    // The worker refuses to start without an AppState, naming this class and the type.
    const STATE: &'static [StateType] = &[StateType::of::<AppState>()];

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
        let app = ctx.state::<AppState>()?;
        app.schema
            .get_or_try_init(|| async {
                sqlx::query(
                    "CREATE TABLE IF NOT EXISTS sent_invoices \
                     (invoice_id BIGINT PRIMARY KEY, sent_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                )
                .execute(&app.pool)
                .await
                .map(|_| ())
            })
            .await?;
        // Sent once, whatever the deliveries: the row is the proof.
        sqlx::query("INSERT INTO sent_invoices (invoice_id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(self.invoice_id as i64)
            .execute(&app.pool)
            .await?;
        // Stored with the job's status when the worker has a job store (`--store`); the HTTP
        // API returns it.
        ctx.set_result(&serde_json::json!({ "sent": true, "invoice_id": self.invoice_id }))
    }
}
register_job!(SendInvoice);

/// Reports every failed execution once, with the decision taken: the place to call an error
/// reporter's client. (Its `enqueue` and `perform` hooks pass through.)
struct ReportFailures;

impl Middleware for ReportFailures {
    fn failed(&self, f: &Failure<'_>) {
        let next = match f.decision {
            FailureDecision::Retry { at } => format!("retry at {at}"),
            FailureDecision::Discard => "discarded".into(),
            _ => "sent to the morgue".into(),
        };
        eprintln!(
            "report: {} {} attempt {} failed ({}): {next}",
            f.job_class, f.job_id, f.attempt, f.error
        );
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1/test".to_string());
    let pool = match PgPoolOptions::new().max_connections(10).connect_lazy(&url) {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("error: DATABASE_URL: {e}");
            return ExitCode::FAILURE;
        }
    };
    let state = AppState {
        pool,
        schema: OnceCell::new(),
    };
    match App::from_inventory() {
        Ok(app) => app.state(state).middleware(ReportFailures).main().await,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
