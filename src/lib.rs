#![cfg_attr(docsrs, feature(doc_cfg))]
//! # pubsub-jobs
//!
//! Background jobs for Rust on Google Cloud Pub/Sub: ActiveJob's ease, Sidekiq's operability,
//! Pub/Sub's scale, and no Redis to run.
//!
//! A job's life, one file each (`docs/ARCHITECTURE.md` follows it): [`client`] (enqueue,
//! publish) -> `worker/pull.rs` -> `worker/lease.rs` -> `worker/dispatch.rs` ->
//! `worker/perform.rs` -> `worker/outcome.rs` (ack, retry, or the [`morgue`]). Jobs that are not
//! due yet wait in `worker/schedule.rs`. Pub/Sub sits behind the small [`broker::Broker`] trait.
//!
//! Beside the queue: an optional [`store`] records every job's events and status (SQLite or
//! PostgreSQL), which the JSON HTTP `api` serves (submit, poll, cancel, dedup); `http_job` is a
//! built-in job class of HTTP steps for any language. The command line (`worker`: run a queue,
//! `clear`, `morgue`, `enqueue`, `spawn`, `demo`, `api`) is the separate `pubsub-jobs-cli` crate (binary `worker`).
//!
//! # Cargo features
//!
//! The core needs no feature: jobs, the client, the worker, the Pub/Sub broker and the in-memory
//! one, the morgue, the [`testing`] helpers and the [`store::JobStore`] trait. The rest is opt-in:
//!
//! | feature | what it adds | pulls in |
//! |---|---|---|
//! | `sqlite` | [`store::connect`] / `SqlStore` for `sqlite://PATH` | sqlx, SQLite (C, bundled) |
//! | `postgres` | [`store::connect`] / `SqlStore` for `postgres://...` | sqlx |
//! | `api` | `api`: the JSON HTTP API (serve it with a store; includes `periodic`) | axum, utoipa |
//! | `http-job` | `http_job::HttpRequestJob`, registered only when you ask | reqwest |
//! | `periodic` | `periodic`: cron entries in IANA timezones, each tick enqueued once (needs a store) | chrono-tz |
//! | `emulator` | `emulator`: the Pub/Sub emulator as a child process, for tests and demos | - |
//! | `full` | all of the above | |
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

pub mod activejob;
#[cfg(feature = "api")]
#[cfg_attr(docsrs, doc(cfg(feature = "api")))]
pub mod api;
pub mod broker;
pub mod client;
#[cfg(feature = "emulator")]
#[cfg_attr(docsrs, doc(cfg(feature = "emulator")))]
pub mod emulator;
pub mod envelope;
pub mod error;
#[cfg(feature = "http-job")]
#[cfg_attr(docsrs, doc(cfg(feature = "http-job")))]
pub mod http_job;
pub mod job;
pub mod job_error;
pub mod morgue;
#[cfg(feature = "periodic")]
#[cfg_attr(docsrs, doc(cfg(feature = "periodic")))]
pub mod periodic;
pub mod queue;
pub mod registry;
pub mod relay;
pub mod retry_policy;
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
