//! # pubsub-jobs
//!
//! Background jobs for Rust on Google Cloud Pub/Sub: ActiveJob's ease, Sidekiq's operability,
//! Pub/Sub's scale, and no Redis to run.
//!
//! A job's life, one module each: [`client`] (enqueue, publish) -> [`worker::pull`] ->
//! [`worker::lease`] -> [`worker::dispatch`] -> [`worker::perform`] -> [`worker::outcome`]
//! (ack, retry, or the [`morgue`]). Jobs that are not due yet wait in [`worker::schedule`].
//! Pub/Sub sits behind the small [`broker::Broker`] trait.
//!
//! Beside the queue: an optional [`store`] records every job's events and status (SQLite or
//! PostgreSQL), which the JSON HTTP [`api`] serves (submit, poll, cancel, dedup); [`http_job`] is a
//! built-in job class of HTTP steps for any language.
//!
//! ```no_run
//! use pubsub_jobs::{register_job, Client, Job, JobContext, JobError};
//! use serde::{Deserialize, Serialize};
//! use std::time::Duration;
//!
//! #[derive(Serialize, Deserialize)]
//! struct Resize { image: String }
//!
//! impl Job for Resize {
//!     const NAME: &'static str = "Resize";
//!     async fn perform(&self, _ctx: &JobContext) -> Result<(), JobError> {
//!         println!("resizing {}", self.image);
//!         Ok(())
//!     }
//! }
//! register_job!(Resize);
//!
//! # async fn demo() -> pubsub_jobs::Result<()> {
//! let client = Client::from_env().await?;
//! let id = Resize { image: "cat.png".into() }.perform_later(&client).await?;
//! Resize { image: "dog.png".into() }
//!     .set()
//!     .wait(Duration::from_secs(60))
//!     .queue("low")
//!     .perform_later(&client)
//!     .await?;
//! # Ok(()) }
//! ```

pub mod api;
pub mod broker;
pub mod cli;
pub mod client;
#[cfg(feature = "mock-job")]
pub mod demo;
pub mod emulator;
pub mod envelope;
pub mod error;
pub mod http_job;
pub mod job;
#[cfg(feature = "mock-job")]
pub mod mock_job;
pub mod morgue;
pub mod queue;
pub mod registry;
pub mod retry_policy;
#[cfg(feature = "mock-job")]
pub mod spawn;
pub mod store;
pub mod testing;
pub mod worker;

pub use client::{Client, ClientConfig, ConfiguredJob, Submission};
pub use envelope::Envelope;
pub use error::{Error, Result};
pub use job::{Job, JobContext, JobError, JobPanic, JobTimeout};
pub use registry::{JobRegistration, Registry};
pub use retry_policy::{Decision, RetryPolicy, Wait};
pub use worker::{Worker, WorkerConfig, WorkerStats, WorkerSummary};

#[doc(hidden)]
pub use inventory;
