//! The `pubsub-jobs-cli` crate (binary `worker`): pubsub-jobs' command line, and [`MockJob`](mock_job::MockJob), the job it
//! links for demos, load and tests.
//!
//! The `worker` binary runs a queue and operates it (`clear`, `morgue`, `enqueue`, `spawn`,
//! `demo`, `api`). An application builds its own worker binary around its own jobs with
//! [`cli::main`] (the classes registered with `register_job!`) or [`cli::main_with`] (an explicit
//! [`Registry`](pubsub_jobs::Registry)):
//!
//! ```no_run
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     pubsub_jobs_cli::cli::main().await
//! }
//! ```

pub mod cli;
pub mod mock_job;
