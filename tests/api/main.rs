//! The HTTP API with a real server on a free port, the real emulator, a worker, and the job
//! store on SQLite (a temp file) and PostgreSQL (127.0.0.1:5432, database test; set
//! PUBSUB_JOBS_TEST_POSTGRES to use another). One file per part of `src/api/`; this one holds the
//! setup they share.

#[path = "../support/mod.rs"]
mod support;

mod actions;
mod auth;
mod http_job;
mod jobs;
mod live;
mod openapi;
mod periodic;
mod server;
mod ui;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use pubsub_jobs::api::{ApiConfig, ApiState};
use pubsub_jobs::{
    register_job, store, Client, Job, JobContext, JobError, Registry, RetryPolicy, Wait,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use support::*;
use tokio_util::sync::CancellationToken;

static RUNS: OnceLock<Mutex<HashMap<String, u32>>> = OnceLock::new();

pub(crate) fn runs(key: &str) -> u32 {
    RUNS.get_or_init(Default::default)
        .lock()
        .unwrap()
        .get(key)
        .copied()
        .unwrap_or(0)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Nested {
    count: u32,
}

/// Records its runs, sleeps, fails the first `fail_first` executions, and sets a result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ApiProbe {
    key: String,
    #[serde(default)]
    sleep_ms: u64,
    #[serde(default)]
    fail_first: u32,
    #[serde(default)]
    nested: Option<Nested>,
}

#[derive(Debug, thiserror::Error)]
#[error("api probe fails on purpose")]
pub(crate) struct ApiProbeError;

impl Job for ApiProbe {
    const NAME: &'static str = "ApiProbe";

    fn retry_policy() -> RetryPolicy {
        RetryPolicy::default().otherwise(Wait::fixed(Duration::from_secs(1)), 3)
    }

    async fn perform(&self, ctx: &JobContext) -> Result<(), JobError> {
        *RUNS
            .get_or_init(Default::default)
            .lock()
            .unwrap()
            .entry(self.key.clone())
            .or_default() += 1;
        tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
        if ctx.attempt <= self.fail_first {
            return Err(ApiProbeError.into());
        }
        ctx.set_result(
            &json!({ "greeting": format!("hello {}", self.key), "attempt": ctx.attempt }),
        )
    }
}
register_job!(ApiProbe);

/// An API server, a worker on `queue`, and a store, for one test.
pub(crate) struct Setup {
    base: String,
    http: reqwest::Client,
    client: Client,
    queue: String,
    stop: CancellationToken,
    worker: Option<RunningWorker>,
    _dir: Option<tempfile::TempDir>,
}

/// The test's jobs plus the opt-in HttpRequestJob, for the API and its worker alike.
pub(crate) fn registry() -> Registry {
    Registry::from_inventory()
        .expect("registry")
        .register::<pubsub_jobs::http_job::HttpRequestJob>()
}

impl Setup {
    async fn sqlite(worker: bool, tokens: &[&str]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
        let mut s = Self::with_store(&url, worker, tokens).await;
        s._dir = Some(dir);
        s
    }

    async fn with_store(url: &str, worker: bool, tokens: &[&str]) -> Setup {
        init_logging();
        let store = store::connect(url).await.expect("open the store");
        let client = support::client().await.with_store(store);
        let queue = unique("api");
        client.ensure_queue(&queue).await.unwrap();
        let state = ApiState::new(
            client.clone(),
            ApiConfig {
                tokens: tokens.iter().map(|t| t.to_string()).collect(),
                ..ApiConfig::default()
            },
        )
        .unwrap()
        .with_registry(registry())
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        tokio::spawn(pubsub_jobs::api::serve(listener, state, stop.clone()));
        let mut s = Setup {
            base,
            http: reqwest::Client::new(),
            client,
            queue,
            stop,
            worker: None,
            _dir: None,
        };
        if worker {
            s.start_worker();
        }
        s
    }

    fn start_worker(&mut self) {
        let mut cfg = worker_config(&self.queue);
        cfg.concurrency = 5;
        self.worker = Some(start_worker_with(&self.client, cfg, Some(registry())));
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn submit(&self, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url("/v1/jobs"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn delete(&self, id: &str) -> (u16, Value) {
        let r = self
            .http
            .delete(self.url(&format!("/v1/jobs/{id}")))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The kinds of the job's events, oldest first.
    async fn event_kinds(&self, id: &str) -> Vec<String> {
        let (code, ev) = self.get(&format!("/v1/jobs/{id}/events")).await;
        assert_eq!(code, 200, "{ev}");
        ev["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect()
    }

    /// Polls the job until `pred` holds on its resource; returns it and every status seen.
    async fn poll(
        &self,
        id: &str,
        pred: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> (Value, Vec<String>) {
        let deadline = std::time::Instant::now() + timeout;
        let mut seen: Vec<String> = Vec::new();
        loop {
            let (code, job) = self.get(&format!("/v1/jobs/{id}")).await;
            assert_eq!(code, 200, "{job}");
            let st = job["status"].as_str().unwrap_or_default().to_string();
            if seen.last() != Some(&st) {
                seen.push(st);
            }
            if pred(&job) {
                return (job, seen);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "job {id} did not reach the state in {timeout:?}; statuses seen {seen:?}; last {job}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn stop(self) {
        if let Some(w) = self.worker {
            w.stop().await;
        }
        self.stop.cancel();
    }
}

pub(crate) fn status_is(s: &'static str) -> impl Fn(&Value) -> bool {
    move |j| j["status"] == s
}

pub(crate) async fn post(s: &Setup, path: &str, body: Value) -> (u16, Value) {
    let r = s.http.post(s.url(path)).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Waits until `key`'s job ran `n` times and the store shows it `status`.
pub(crate) async fn wait_runs(s: &Setup, id: &str, key: &str, n: u32, status: &'static str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while runs(key) < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{key} ran {} times, not {n}",
            runs(key)
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    s.poll(id, status_is(status), Duration::from_secs(30)).await;
    assert_eq!(runs(key), n, "{key} ran exactly {n} times");
}
