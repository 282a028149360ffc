//! Shared test harness: one real Pub/Sub emulator per test binary (or PUBSUB_EMULATOR_HOST),
//! unique queue names per test, probe jobs that record their executions, and waits with deadlines.
#![allow(dead_code)]

pub(crate) mod fault_proxy;
mod shared;
pub(crate) mod tools;

pub(crate) use shared::*;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use pubsub_jobs::broker::StreamOptions;
use pubsub_jobs::morgue::MorgueRecord;
use pubsub_jobs::{
    register_job, Client, ClientConfig, Job, JobContext, JobError, RetryPolicy, Wait, Worker,
    WorkerConfig, WorkerSummary,
};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// [`postgres_url`] with its host:port replaced by `host` (a proxy in front of PostgreSQL).
pub(crate) fn postgres_url_via(host: &str) -> String {
    let url = postgres_url();
    let (head, rest) = url.split_once('@').expect("a postgres URL with user@host");
    let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("");
    format!("{head}@{host}{path}")
}

/// The host:port of [`postgres_url`].
pub(crate) fn postgres_host() -> String {
    let url = postgres_url();
    let rest = url.split_once('@').map(|(_, r)| r).unwrap_or(&url);
    rest.split('/').next().unwrap_or(rest).to_string()
}

/// Logs to the test's captured output (RUST_LOG, default warn).
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A client on the emulator with its own morgue queue.
pub(crate) async fn client_with_morgue(morgue: &str) -> Client {
    let config = ClientConfig {
        project_id: "test-project".into(),
        morgue_queue: morgue.to_string(),
        emulator_host: Some(emulator_host().to_string()),
        ..ClientConfig::default()
    };
    Client::connect(config)
        .await
        .expect("connect to the emulator")
}

/// Attaches `key`: `value` to every job enqueued; with `value` `None`, where the enqueue came
/// from (`Client`, `Transaction`, `Periodic`).
pub(crate) struct Tag(pub &'static str, pub Option<&'static str>);

impl pubsub_jobs::Middleware for Tag {
    fn enqueue<'a>(
        &'a self,
        mut jobs: Vec<pubsub_jobs::envelope::Envelope>,
        next: pubsub_jobs::middleware::EnqueueNext<'a>,
    ) -> pubsub_jobs::middleware::BoxFuture<'a, pubsub_jobs::Result<Vec<uuid::Uuid>>> {
        let value = self
            .1
            .map_or_else(|| format!("{:?}", next.source()), str::to_string);
        for j in &mut jobs {
            j.metadata.insert(self.0.into(), value.clone());
        }
        next.run(jobs)
    }
}

/// A client with a unique morgue.
pub(crate) async fn client() -> Client {
    client_with_morgue(&unique("morgue")).await
}

/// A running in-process worker.
pub(crate) struct RunningWorker {
    pub stop: CancellationToken,
    pub stats: pubsub_jobs::WorkerStats,
    pub handle: JoinHandle<pubsub_jobs::Result<WorkerSummary>>,
}

impl RunningWorker {
    pub(crate) async fn stop(self) -> WorkerSummary {
        self.stop.cancel();
        self.handle
            .await
            .expect("worker task")
            .expect("worker result")
    }
}

pub(crate) fn start_worker(client: &Client, config: WorkerConfig) -> RunningWorker {
    start_worker_with(client, config, None)
}

/// [`start_worker`] with an explicit registry (`None`: the inventory's).
pub(crate) fn start_worker_with(
    client: &Client,
    config: WorkerConfig,
    registry: Option<pubsub_jobs::Registry>,
) -> RunningWorker {
    let stop = CancellationToken::new();
    let mut worker = Worker::new(client.clone(), config);
    if let Some(r) = registry {
        worker = worker.with_registry(r);
    }
    let stats = worker.stats();
    let handle = tokio::spawn(worker.run(stop.clone()));
    RunningWorker {
        stop,
        stats,
        handle,
    }
}

pub(crate) fn worker_config(queue: &str) -> WorkerConfig {
    let mut c = WorkerConfig::new(queue);
    c.shutdown_timeout = Duration::from_secs(5);
    c
}

/// Pulls `n` records from the client's morgue (or what arrives before `timeout`), acking them.
pub(crate) async fn morgue_records(
    client: &Client,
    n: usize,
    timeout: Duration,
) -> Vec<MorgueRecord> {
    // The worker creates the morgue at start; do not race it.
    client.ensure_morgue().await.expect("create the morgue");
    pull(client, client.morgue_queue(), n, timeout)
        .await
        .iter()
        .map(MorgueRecord::from_delivery)
        .collect()
}

/// Pulls up to `n` deliveries from `queue`'s subscription within `timeout`, acking them.
async fn pull(
    client: &Client,
    queue: &str,
    n: usize,
    timeout: Duration,
) -> Vec<pubsub_jobs::broker::Delivery> {
    let sub = client.resource_name(queue);
    let broker = raw_broker().await;
    let mut stream = broker
        .subscribe(
            &sub,
            StreamOptions {
                ack_deadline: Duration::from_secs(30),
                max_outstanding: 1000,
            },
        )
        .await
        .expect("subscribe");
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while out.len() < n {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(d)) => {
                broker.ack(&sub, vec![d.ack_id.clone()]).await.expect("ack");
                out.push(d);
            }
            _ => break,
        }
    }
    stream.close().await;
    out
}

/// A raw broker on the emulator, for test inspection. One per test: gRPC connections belong to
/// the runtime of the test that opened them.
pub(crate) async fn raw_broker() -> std::sync::Arc<dyn pubsub_jobs::broker::Broker> {
    init_logging();
    let b = pubsub_jobs::broker::PubSubBroker::connect(
        "test-project",
        Some(emulator_host()),
        Duration::from_secs(30),
    )
    .await
    .expect("broker");
    std::sync::Arc::new(b)
}

// ---- Probe jobs: record every execution under a key -------------------------------------------

type RunLog = HashMap<String, Vec<(u32, Instant)>>;

static RUNS: OnceLock<Mutex<RunLog>> = OnceLock::new();

fn runs() -> std::sync::MutexGuard<'static, RunLog> {
    RUNS.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Records that the job with `key` started an execution.
fn record_start(key: &str, attempt: u32) {
    runs()
        .entry(key.to_string())
        .or_default()
        .push((attempt, Instant::now()));
}

/// How many times the job with `key` started.
pub(crate) fn run_count(key: &str) -> usize {
    runs().get(key).map(|v| v.len()).unwrap_or(0)
}

/// The (attempt, start time) of every execution of `key`.
pub(crate) fn run_log(key: &str) -> Vec<(u32, Instant)> {
    runs().get(key).cloned().unwrap_or_default()
}

/// Number of keys with `prefix` that ran at least once.
pub(crate) fn keys_run(prefix: &str) -> usize {
    runs().keys().filter(|k| k.starts_with(prefix)).count()
}

/// Keys with `prefix` that ran more than once.
pub(crate) fn keys_run_twice(prefix: &str) -> Vec<String> {
    runs()
        .iter()
        .filter(|(k, v)| k.starts_with(prefix) && v.len() > 1)
        .map(|(k, _)| k.clone())
        .collect()
}

#[derive(Debug, thiserror::Error)]
#[error("probe failed on purpose")]
pub(crate) struct ProbeError;

#[derive(Debug, thiserror::Error)]
#[error("probe asks to be discarded")]
pub(crate) struct ProbeDiscard;

/// What a probe does.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) enum Mode {
    Ok,
    /// Fail (ProbeError) on the first N executions.
    FailFirst(u32),
    Discard,
    Panic,
    /// Fail with an error no rule matches.
    Unmatched,
}

/// A job that records its executions: retry_on ProbeError (1 s, 3 executions), discard_on
/// ProbeDiscard, anything else 2 executions 1 s apart; timeout 3 s.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Probe {
    pub key: String,
    pub sleep_ms: u64,
    pub mode: Mode,
}

impl Probe {
    pub(crate) fn new(key: &str, mode: Mode) -> Self {
        Self {
            key: key.to_string(),
            sleep_ms: 0,
            mode,
        }
    }
}

impl Job for Probe {
    const NAME: &'static str = "Probe";

    fn queue(&self) -> &str {
        "probes"
    }

    fn retry_policy() -> RetryPolicy {
        RetryPolicy::default()
            .retry_on::<ProbeError>(Wait::fixed(Duration::from_secs(1)), 3)
            .discard_on::<ProbeDiscard>()
            .otherwise(Wait::fixed(Duration::from_secs(1)), 2)
    }

    fn timeout() -> Duration {
        Duration::from_secs(3)
    }

    async fn perform(&self, ctx: &JobContext) -> Result<(), JobError> {
        record_start(&self.key, ctx.attempt);
        tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
        match self.mode {
            Mode::Ok => Ok(()),
            Mode::FailFirst(n) if ctx.attempt <= n => Err(ProbeError.into()),
            Mode::FailFirst(_) => Ok(()),
            Mode::Discard => Err(ProbeDiscard.into()),
            Mode::Panic => panic!("probe panics on purpose"),
            Mode::Unmatched => Err(JobError::msg("an error no rule matches")),
        }
    }
}
register_job!(Probe);

/// A job with the default 30-minute timeout, for long runs under short ack deadlines.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LongProbe {
    pub key: String,
    pub sleep_ms: u64,
}

impl Job for LongProbe {
    const NAME: &'static str = "LongProbe";

    async fn perform(&self, ctx: &JobContext) -> Result<(), JobError> {
        record_start(&self.key, ctx.attempt);
        tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
        FINISHED
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(self.key.clone());
        Ok(())
    }
}
register_job!(LongProbe);

static FINISHED: OnceLock<Mutex<Vec<String>>> = OnceLock::new();

/// Whether a LongProbe with `key` finished a run.
pub(crate) fn finished(key: &str) -> bool {
    FINISHED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .any(|k| k == key)
}

/// How many messages the queue's subscription delivers within `timeout` (acking them): what a
/// stopped worker left behind.
pub(crate) async fn pending_messages(client: &Client, queue: &str, timeout: Duration) -> usize {
    pull(client, queue, usize::MAX, timeout).await.len()
}
