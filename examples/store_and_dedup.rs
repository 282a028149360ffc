//! A client with a job store: enqueues are recorded, a dedup key makes a second enqueue return
//! the first job, and the job's status, result and history can be read back (as the HTTP API
//! does). Run it beside a worker with the same store:
//!
//! ```text
//! PUBSUB_EMULATOR_HOST=127.0.0.1:8085 cargo run --example store_and_dedup
//! PUBSUB_EMULATOR_HOST=127.0.0.1:8085 PUBSUB_JOBS_STORE=sqlite://jobs.db cargo run --example custom_worker -- --queue billing
//! ```

use std::time::Duration;

use pubsub_jobs::{register_job, store, Client, Job, JobContext, JobError};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct ChargeOrder {
    order_id: u64,
}

impl Job for ChargeOrder {
    const NAME: &'static str = "ChargeOrder";

    fn queue(&self) -> &str {
        "billing"
    }

    async fn perform(&self, ctx: &JobContext) -> Result<(), JobError> {
        ctx.set_result(&serde_json::json!({ "charged": self.order_id }))
    }
}
register_job!(ChargeOrder);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let store = store::connect(
        &std::env::var("PUBSUB_JOBS_STORE").unwrap_or_else(|_| "sqlite://jobs.db".into()),
    )
    .await?;
    let client = Client::from_env().await?.with_store(store.clone());

    let job = ChargeOrder { order_id: 42 };
    // Twice with one key within 5 minutes: one job.
    let first = job
        .set()
        .dedup_key("charge-42")
        .perform_later(&client)
        .await?;
    let second = job
        .set()
        .dedup_key("charge-42")
        .perform_later(&client)
        .await?;
    assert_eq!(first, second);
    println!("job {first}");

    // Poll its status for a while (a worker with the same store runs it).
    for _ in 0..50 {
        if let Some(rec) = store.get(first).await? {
            println!("status {} result {:?}", rec.status, rec.result);
            if rec.status.is_finished() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for event in store.events(first).await? {
        println!(
            "{} attempt {} at {}",
            event.kind.as_str(),
            event.attempt,
            event.at
        );
    }
    Ok(())
}
