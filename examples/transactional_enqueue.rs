//! Enqueue inside your own database transaction: the order row and its job commit together, or
//! neither exists. The job store and the application share one PostgreSQL database; a worker
//! with that store (its relay, woken by NOTIFY) publishes the job as soon as the commit lands.
//!
//! ```text
//! PUBSUB_EMULATOR_HOST=127.0.0.1:8085 cargo run --example transactional_enqueue -- postgres://postgres@127.0.0.1/test
//! ```

use pubsub_jobs::{register_job, store, Client, Job, JobContext, JobError};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct ShipOrder {
    order_id: i64,
}

impl Job for ShipOrder {
    const NAME: &'static str = "ShipOrder";
    async fn perform(&self, _ctx: &JobContext) -> Result<(), JobError> {
        println!("shipping order {}", self.order_id);
        Ok(())
    }
}
register_job!(ShipOrder);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1/test".into());
    // The job store migrates its tables into the application's database.
    let store = store::connect(&url).await?;
    let client = Client::from_env().await?.with_store(store);
    let app = sqlx::PgPool::connect(&url).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS example_orders (id BIGSERIAL PRIMARY KEY, item TEXT NOT NULL)",
    )
    .execute(&app)
    .await?;

    let mut tx = app.begin().await?;
    let (order_id,): (i64,) =
        sqlx::query_as("INSERT INTO example_orders (item) VALUES ('book') RETURNING id")
            .fetch_one(&mut *tx)
            .await?;
    let job_id = ShipOrder { order_id }
        .perform_later_in(&client, &mut tx)
        .await?;
    tx.commit().await?; // now, and only now, the job exists; the relay publishes it
    println!("order {order_id} committed with job {job_id}");

    // A worker (any process with the same store) runs it; here, one pass in this process.
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(
        pubsub_jobs::Worker::new(client.clone(), pubsub_jobs::WorkerConfig::new("default"))
            .run(stop.clone()),
    );
    let store = client.store().expect("a store").clone();
    for _ in 0..100 {
        if let Some(rec) = store.get(job_id).await? {
            if rec.status.is_finished() {
                println!("job {job_id}: {}", rec.status);
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    stop.cancel();
    worker.await??;
    Ok(())
}
