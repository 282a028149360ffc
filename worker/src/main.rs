//! The `worker` binary: pubsub-jobs' command line with `MockJob` and the built-in
//! `HttpRequestJob` registered beside any job registered with `register_job!`.
//! Build your own around your jobs the same way: see `examples/custom_worker.rs`.

use std::process::ExitCode;

use pubsub_jobs::http_job::HttpRequestJob;
use pubsub_jobs::Registry;
use pubsub_jobs_cli::mock_job::MockJob;

/// mimalloc: a job's life is many small short-lived allocations made and freed on different
/// threads, where glibc's allocator spent about a sixth of the worker's CPU (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    match Registry::from_inventory() {
        Ok(registry) => {
            let registry = registry.register::<MockJob>().register::<HttpRequestJob>();
            pubsub_jobs_cli::cli::main_with(registry).await
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
