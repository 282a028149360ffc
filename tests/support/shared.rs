//! What every test binary shares, in `tests/` and `worker/tests/` alike (the latter through
//! `#[path]`): the emulator, the PostgreSQL URL, unique names and waits with deadlines.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// The emulator's host:port: PUBSUB_EMULATOR_HOST, or one started for this test binary.
pub(crate) fn emulator_host() -> &'static str {
    pubsub_jobs::emulator::shared_host().expect("a Pub/Sub emulator")
}

/// The PostgreSQL the store tests use: `PUBSUB_JOBS_TEST_POSTGRES`, default the local `test`.
pub(crate) fn postgres_url() -> String {
    std::env::var("PUBSUB_JOBS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A name unique to this test run.
pub(crate) use pubsub_jobs::testing::unique_queue as unique;

/// Waits until `cond` holds or `timeout` passes; whether it held.
pub(crate) async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}
