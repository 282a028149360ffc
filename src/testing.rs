//! Testing helpers for applications: a client on the in-memory broker, what was enqueued, and
//! running enqueued jobs inline. For unit tests of application code; the real behaviour of
//! Pub/Sub is only proven against Pub/Sub or its emulator.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> pubsub_jobs::Result<()> {
//! use pubsub_jobs::{register_job, testing, Job, JobContext, JobError};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Hello { name: String }
//! impl Job for Hello {
//!     const NAME: &'static str = "Hello";
//!     async fn perform(&self, _ctx: &JobContext) -> Result<(), JobError> { Ok(()) }
//! }
//! register_job!(Hello);
//!
//! let (client, _broker) = testing::memory_client();
//! Hello { name: "ada".into() }.perform_later(&client).await?;
//! let jobs = testing::enqueued_jobs(&client, "default");
//! assert_eq!(jobs.len(), 1);
//! assert_eq!(jobs[0].job_class, "Hello");
//! let summary = testing::perform_enqueued_jobs(&client, "default").await?;
//! assert_eq!(summary.succeeded, 1);
//! # Ok(()) }
//! ```

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::broker::MemoryBroker;
use crate::client::{Client, ClientConfig};
use crate::envelope::Envelope;
use crate::error::{Error, Result};
use crate::worker::{Worker, WorkerConfig, WorkerSummary};

/// A queue name no other test uses (`t-NAME-` and 10 random hex digits): on a shared emulator or
/// Pub/Sub project, each test in queues of its own never sees another's messages.
pub fn unique_queue(name: &str) -> String {
    crate::queue::unique_name(name)
}

/// A client on a fresh in-memory broker, and the broker.
pub fn memory_client() -> (Client, MemoryBroker) {
    let broker = MemoryBroker::new();
    let client = Client::with_memory_broker(broker.clone(), ClientConfig::default());
    (client, broker)
}

fn memory(client: &Client) -> Result<MemoryBroker> {
    client.memory_broker().ok_or_else(|| {
        Error::Config(
            "this helper needs a client on the in-memory broker (testing::memory_client)".into(),
        )
    })
}

/// The jobs waiting in a queue (due now), oldest first. Empty for a client not on the in-memory broker.
pub fn enqueued_jobs(client: &Client, queue: &str) -> Vec<Envelope> {
    let Ok(broker) = memory(client) else {
        return Vec::new();
    };
    broker
        .pending(&client.resource_name(queue))
        .into_iter()
        .filter_map(|(data, attrs)| Envelope::decode(&data, &attrs).ok())
        .collect()
}

/// The jobs waiting in a queue's scheduled subscription (not due yet), parked by a worker or not.
pub fn scheduled_jobs(client: &Client, queue: &str) -> Vec<Envelope> {
    let Ok(broker) = memory(client) else {
        return Vec::new();
    };
    broker
        .unacked(&client.scheduled_resource_name(queue))
        .into_iter()
        .filter_map(|(data, attrs)| Envelope::decode(&data, &attrs).ok())
        .collect()
}

/// Runs the jobs due in a queue with a real worker on the in-memory broker until the queue is
/// empty, and returns the worker's counts. Jobs they enqueue on the same queue run too.
pub async fn perform_enqueued_jobs(client: &Client, queue: &str) -> Result<WorkerSummary> {
    perform_enqueued_jobs_with(client, queue, crate::State::new()).await
}

/// [`perform_enqueued_jobs`] with application state for the jobs to read
/// ([`JobContext::state`](crate::JobContext::state)), as a worker given it with
/// [`Worker::with_state`] would run them.
pub async fn perform_enqueued_jobs_with(
    client: &Client,
    queue: &str,
    state: crate::State,
) -> Result<WorkerSummary> {
    drain(client, queue, |worker| worker.with_state(state)).await
}

/// Runs a worker (made by `build` from the default one) on `queue` until the queue is empty.
pub(crate) async fn drain(
    client: &Client,
    queue: &str,
    build: impl FnOnce(Worker) -> Worker,
) -> Result<WorkerSummary> {
    let broker = memory(client)?;
    let sub = client.resource_name(queue);
    let stop = CancellationToken::new();
    let mut config = WorkerConfig::new(queue);
    config.ack_deadline = Duration::from_secs(10);
    let worker = tokio::spawn(build(Worker::new(client.clone(), config)).run(stop.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while broker.outstanding(&sub) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.cancel();
    worker.await.map_err(|e| Error::WorkerTask(e.to_string()))?
}

/// The records in the morgue of `client` on `broker` (for the crate's own tests).
#[cfg(test)]
pub(crate) fn morgue_records(
    client: &Client,
    broker: &MemoryBroker,
) -> Vec<crate::morgue::MorgueRecord> {
    broker
        .pending(&client.resource_name(client.morgue_queue()))
        .into_iter()
        .map(|(data, attributes)| {
            crate::morgue::MorgueRecord::from_delivery(&crate::broker::Delivery {
                ack_id: String::new(),
                message_id: String::new(),
                data,
                attributes,
            })
        })
        .collect()
}
