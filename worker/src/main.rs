//! The `worker` binary: pubsub-jobs' command line with `MockJob` linked in.
//! Build your own around your jobs the same way: see `examples/custom_worker.rs`.

use std::process::ExitCode;

// MockJob is linked in through the library's `mock-job` feature (see Cargo.toml).

#[tokio::main]
async fn main() -> ExitCode {
    pubsub_jobs::cli::main().await
}
