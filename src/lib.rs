#![cfg_attr(docsrs, feature(doc_cfg))]
//! # pubsub-jobs
//!
//! Background jobs for Rust on Google Cloud Pub/Sub: ActiveJob's ease, Sidekiq's operability,
//! Pub/Sub's scale, and no Redis to run.
//!
//! Start here: a [`Job`] is a serde struct with an async `perform`; a [`Client`] enqueues it
//! (one or many, inside your own transaction or not, plus [`Job::set`]); a [`Worker`] runs a
//! queue. Beside the queue: an optional [`store`] records every job's events and status (SQLite
//! or PostgreSQL), which the JSON HTTP `api` and its dashboard serve; [`admin`] is what an
//! operator does (clear a queue, the morgue, retry / cancel / delete stored jobs); `periodic`
//! runs cron entries; `http_job` is a built-in job class of HTTP steps for any language. The
//! [`guide`] modules are the long documentation. The command line (`worker`: run a queue,
//! `clear`, `morgue`, `enqueue`, `spawn`, `demo`, `api`) is the separate `pubsub-jobs-cli` crate.
//!
//! A job's life, one file each (`docs/ARCHITECTURE.md` follows it): `client/enqueue.rs` ->
//! `client/prepare.rs` -> `client/publish.rs` -> `worker/pull.rs` -> `worker/lease.rs` ->
//! `worker/dispatch.rs` -> `worker/perform.rs` -> `worker/outcome.rs` (ack, retry, or the
//! [`morgue`]). Jobs that are not due yet wait in `worker/schedule.rs`. Pub/Sub sits behind the
//! small [`broker::Broker`] trait, the store behind [`store::JobStore`].
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
//! | `opentelemetry` | `telemetry`: one trace from an enqueue to the job's run, across languages; messaging metrics | opentelemetry, tracing-opentelemetry |
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

pub mod guide {
    //! The guides (`docs/guide/*.md` in the repository), rendered here so that their Rust
    //! snippets are compiled and run as doctests. The README is the short way in.

    #[doc = include_str!("../docs/guide/jobs.md")]
    pub mod jobs {}
    #[doc = include_str!("../docs/guide/configuration.md")]
    pub mod configuration {}
    #[doc = include_str!("../docs/guide/pubsub.md")]
    pub mod pubsub {}
    #[doc = include_str!("../docs/guide/api.md")]
    pub mod api {}
    #[doc = include_str!("../docs/guide/operating.md")]
    pub mod operating {}
    #[doc = include_str!("../docs/guide/security.md")]
    pub mod security {}
}

// Where a user starts: the job API, the client, the worker, the registry and the errors, all
// at the crate root (each public type has one path). The modules below are what a user reaches
// for next; everything else is internal.
pub use client::{
    Client, ClientConfig, Submission, DEFAULT_MAX_DELIVERY_ATTEMPTS, MAX_MESSAGE_BYTES,
};
pub use error::{
    BrokerCode, Error, JobError, JobInterrupted, JobPanic, JobTimeout, MessageError, Result,
};
pub use job::{ConfiguredJob, Job, JobContext, MAX_LOG_LINE_BYTES, MAX_RESULT_BYTES};
pub use middleware::Middleware;
pub use registry::{ArgumentsError, JobRegistration, Registry};
pub use retry_policy::{Decision, RetryPolicy, Wait};
pub use state::{MissingState, State, StateType};
pub use worker::{HealthReport, Worker, WorkerConfig, WorkerStats, WorkerSummary, HEALTH_EVERY};

pub mod admin;
#[cfg(feature = "api")]
#[cfg_attr(docsrs, doc(cfg(feature = "api")))]
pub mod api;
pub mod broker;
#[cfg(feature = "emulator")]
#[cfg_attr(docsrs, doc(cfg(feature = "emulator")))]
pub mod emulator;
pub mod envelope;
#[cfg(feature = "http-job")]
#[cfg_attr(docsrs, doc(cfg(feature = "http-job")))]
pub mod http_job;
pub mod logging;
pub mod middleware;
pub mod morgue;
#[cfg(feature = "periodic")]
#[cfg_attr(docsrs, doc(cfg(feature = "periodic")))]
pub mod periodic;
pub mod relay;
pub mod store;
#[cfg(feature = "opentelemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
pub mod telemetry;
pub mod testing;

mod client;
mod error;
mod job;
mod queue;
mod registry;
mod retry_policy;
mod state;
mod worker;

#[doc(hidden)]
pub use inventory;
