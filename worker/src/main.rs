//! The `worker` binary: pubsub-jobs' command line with `MockJob` linked in.
//! Build your own around your jobs the same way: see `examples/custom_worker.rs`.

use std::process::ExitCode;

// Links MockJob (registered with inventory) into this binary.
use pubsub_jobs::mock_job as _;

#[tokio::main]
async fn main() -> ExitCode {
    pubsub_jobs::cli::main().await
}
