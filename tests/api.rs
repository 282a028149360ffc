//! The HTTP API with a real server on a free port, the real emulator, a worker, and the job
//! store on SQLite (a temp file) and PostgreSQL (127.0.0.1:5432, database test; set
//! PUBSUB_JOBS_TEST_POSTGRES to use another).

mod support;

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

fn runs(key: &str) -> u32 {
    RUNS.get_or_init(Default::default)
        .lock()
        .unwrap()
        .get(key)
        .copied()
        .unwrap_or(0)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Nested {
    count: u32,
}

/// Records its runs, sleeps, fails the first `fail_first` executions, and sets a result.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ApiProbe {
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
struct ApiProbeError;

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
struct Setup {
    base: String,
    http: reqwest::Client,
    client: Client,
    queue: String,
    stop: CancellationToken,
    worker: Option<RunningWorker>,
    _dir: Option<tempfile::TempDir>,
}

/// The test's jobs plus the opt-in HttpRequestJob, for the API and its worker alike.
fn registry() -> Registry {
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

fn status_is(s: &'static str) -> impl Fn(&Value) -> bool {
    move |j| j["status"] == s
}

#[tokio::test]
async fn a_job_polled_from_pending_to_succeeded_with_result_events_etag() {
    let s = Setup::sqlite(false, &[]).await;
    let key = unique("ok");
    let (code, job) = s
        .submit(json!({"job_class": "ApiProbe", "arguments": {"key": key, "sleep_ms": 300}, "queue": s.queue}))
        .await;
    assert_eq!(code, 202, "{job}");
    assert_eq!(job["status"], "pending");
    assert_eq!(job["queue"], s.queue.as_str());
    assert_eq!(job["attempts"], 0);
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(job["links"]["self"], format!("/v1/jobs/{id}"));
    let (_, pending) = s.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(
        pending["status"], "pending",
        "nothing runs without a worker"
    );

    let mut s = s;
    s.start_worker();
    let (done, seen) = s
        .poll(&id, status_is("succeeded"), Duration::from_secs(30))
        .await;
    assert_eq!(seen.first().map(String::as_str), Some("pending"));
    assert!(
        seen.contains(&"running".to_string()),
        "a 300 ms job is seen running when polled every 25 ms: {seen:?}"
    );
    assert_eq!(done["attempts"], 1);
    assert_eq!(
        done["result"],
        json!({"greeting": format!("hello {key}"), "attempt": 1})
    );
    assert!(done["finished_at"].is_string() && done["started_at"].is_string());
    assert_eq!(runs(&key), 1);

    let kinds = s.event_kinds(&id).await;
    assert_eq!(kinds, ["enqueued", "started", "succeeded"]);

    // ETag / If-None-Match, Cache-Control long for a finished job.
    let r = s
        .http
        .get(s.url(&format!("/v1/jobs/{id}")))
        .send()
        .await
        .unwrap();
    let tag = r.headers()["etag"].to_str().unwrap().to_string();
    assert!(r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age=3600"));
    let r = s
        .http
        .get(s.url(&format!("/v1/jobs/{id}")))
        .header("if-none-match", &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 304);
    let r = s
        .http
        .get(s.url(&format!("/v1/jobs/{id}")))
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    s.stop().await;
}

#[tokio::test]
async fn retries_show_as_retrying_then_succeeded_with_failed_events() {
    let s = Setup::sqlite(true, &[]).await;
    let key = unique("retry");
    let (code, job) = s
        .submit(json!({"job_class": "ApiProbe", "arguments": {"key": key, "fail_first": 1}, "queue": s.queue}))
        .await;
    assert_eq!(code, 202);
    let id = job["id"].as_str().unwrap().to_string();
    let (done, seen) = s
        .poll(&id, status_is("succeeded"), Duration::from_secs(30))
        .await;
    assert!(seen.contains(&"retrying".to_string()), "{seen:?}");
    assert_eq!(done["attempts"], 2);
    assert!(done["last_error"]
        .as_str()
        .unwrap()
        .contains("fails on purpose"));
    let kinds = s.event_kinds(&id).await;
    assert_eq!(
        kinds,
        [
            "enqueued",
            "started",
            "failed",
            "retry_scheduled",
            "started",
            "succeeded"
        ]
    );
    s.stop().await;
}

#[tokio::test]
async fn bad_submits_are_rejected_naming_what_is_wrong_and_publish_nothing() {
    let s = Setup::sqlite(false, &[]).await;
    let q = s.queue.clone();
    let cases = [
        (
            json!({"job_class": "NoSuchJob", "arguments": {}, "queue": q}),
            422,
            Some("job_class"),
            "NoSuchJob",
        ),
        (
            json!({"job_class": "ApiProbe", "arguments": {"key": "k", "nested": {"count": "x"}}, "queue": q}),
            422,
            Some("arguments.nested.count"),
            "nested.count",
        ),
        (
            json!({"job_class": "ApiProbe", "arguments": {"sleep_ms": 1}, "queue": q}),
            422,
            Some("arguments"),
            "key",
        ),
        (
            json!({"job_class": "ApiProbe", "arguments": {"key": "k"}, "queue": "bad queue!"}),
            422,
            Some("queue"),
            "bad queue!",
        ),
        (
            json!({"job_class": "ApiProbe", "arguments": {"key": "k"}, "queue": q, "wait_seconds": 5, "scheduled_at": "2030-01-01T00:00:00Z"}),
            422,
            Some("wait_seconds"),
            "not both",
        ),
        (
            json!({"job_class": "ApiProbe", "arguments": {"key": "k"}, "queue": q, "wait_seconds": -1}),
            422,
            Some("wait_seconds"),
            ">= 0",
        ),
        (json!({"job_class": 7}), 422, Some("job_class"), "job_class"),
        (
            json!({"job_class": "ApiProbe", "arguments": {"key": "k"}, "queue": q, "colour": "red"}),
            422,
            None,
            "colour",
        ),
        (
            json!({"job_class": "HttpRequestJob", "arguments": {"steps": [{"name": "a", "url": "ftp://example.com/x"}]}, "queue": q}),
            422,
            Some("arguments.steps[0].url"),
            "only http and https",
        ),
    ];
    for (body, code, field, needle) in cases {
        let (got, err) = s.submit(body.clone()).await;
        assert_eq!(got, code, "{body} -> {err}");
        if let Some(f) = field {
            assert_eq!(err["error"]["field"], f, "{body} -> {err}");
        }
        assert!(
            err["error"]["message"].as_str().unwrap().contains(needle),
            "{body} -> {err}"
        );
    }
    // Malformed JSON: 400.
    let r = s
        .http
        .post(s.url("/v1/jobs"))
        .header("content-type", "application/json")
        .body("{\"job_class\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let err: Value = r.json().await.unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("malformed JSON"),
        "{err}"
    );
    // Over 1 MiB: 413.
    let big =
        json!({"job_class": "ApiProbe", "arguments": {"key": "x".repeat(1_100_000)}, "queue": q});
    let (code, err) = s.submit(big).await;
    assert_eq!(code, 413, "{err}");
    assert_eq!(err["error"]["code"], "payload_too_large");

    // Nothing recorded, nothing published.
    let (_, page) = s.get(&format!("/v1/jobs?queue={q}")).await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 0, "{page}");
    let broker = raw_broker().await;
    let got = broker
        .pull(&s.client.resource_name(&q), 10, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        got.is_empty(),
        "a rejected submit published {} message(s)",
        got.len()
    );
    s.stop().await;
}

#[tokio::test]
async fn unknown_ids_list_pages_with_cursor_and_queue_counts() {
    let s = Setup::sqlite(false, &[]).await;
    let (code, err) = s.get(&format!("/v1/jobs/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(code, 404, "{err}");
    assert_eq!(s.get("/v1/jobs/not-a-uuid").await.0, 404);
    assert_eq!(
        s.get(&format!("/v1/jobs/{}/events", uuid::Uuid::new_v4()))
            .await
            .0,
        404
    );
    let mut ids = Vec::new();
    for i in 0..5 {
        let (code, job) = s
            .submit(json!({"job_class": "ApiProbe", "arguments": {"key": format!("l{i}")}, "queue": s.queue, "wait_seconds": 600}))
            .await;
        assert_eq!(code, 202);
        assert_eq!(job["status"], "scheduled");
        assert!(job["scheduled_at"].is_string());
        ids.push(job["id"].as_str().unwrap().to_string());
    }
    let (_, due) = s
        .submit(json!({"job_class": "ApiProbe", "arguments": {"key": "due"}, "queue": s.queue}))
        .await;
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/v1/jobs?queue={}&status=scheduled&limit=2", s.queue);
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (code, page) = s.get(&path).await;
        assert_eq!(code, 200, "{page}");
        pages += 1;
        for j in page["jobs"].as_array().unwrap() {
            assert_eq!(j["status"], "scheduled");
            listed.push(j["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    ids.reverse();
    assert_eq!(listed, ids, "newest first, each once");
    let (_, all) = s.get(&format!("/v1/jobs?queue={}", s.queue)).await;
    assert_eq!(all["jobs"].as_array().unwrap().len(), 6);
    assert_eq!(all["jobs"][0]["id"], due["id"]);
    let (code, err) = s.get("/v1/jobs?status=sleeping").await;
    assert_eq!(
        (code, err["error"]["field"].as_str()),
        (422, Some("status"))
    );
    assert_eq!(s.get("/v1/jobs?limit=0").await.0, 422);
    assert_eq!(s.get("/v1/jobs?cursor=zzz").await.0, 422);

    let (code, queues) = s.get("/v1/queues").await;
    assert_eq!(code, 200);
    let mine = queues["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == s.queue.as_str())
        .unwrap();
    assert_eq!(mine["counts"]["scheduled"], 5);
    assert_eq!(mine["counts"]["pending"], 1);
    assert_eq!(mine["total"], 6);
    s.stop().await;
}

#[tokio::test]
async fn cancel_before_start_never_runs_and_late_cancels_conflict() {
    let mut s = Setup::sqlite(false, &[]).await;
    let key = unique("cancel");
    let (_, job) = s
        .submit(json!({"job_class": "ApiProbe", "arguments": {"key": key}, "queue": s.queue}))
        .await;
    let id = job["id"].as_str().unwrap().to_string();
    let (code, body) = s.delete(&id).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "cancelled");
    // Again: DELETE is idempotent, a cancelled job stays cancelled.
    let (code, body) = s.delete(&id).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(s.delete(&uuid::Uuid::new_v4().to_string()).await.0, 404);

    // The worker receives it and acks it without running it.
    let long_key = unique("running");
    s.start_worker();
    let stats = s.worker.as_ref().unwrap().stats.clone();
    assert!(
        wait_until(Duration::from_secs(20), || stats.summary().processed >= 1).await,
        "the cancelled job was never received"
    );
    assert_eq!(runs(&key), 0, "a cancelled job ran");
    let kinds = s.event_kinds(&id).await;
    assert_eq!(kinds, ["enqueued", "cancelled"]);

    // A running job cannot be cancelled; nor a finished one.
    let (_, job) = s
        .submit(json!({"job_class": "ApiProbe", "arguments": {"key": long_key, "sleep_ms": 2000}, "queue": s.queue}))
        .await;
    let id = job["id"].as_str().unwrap().to_string();
    s.poll(&id, status_is("running"), Duration::from_secs(20))
        .await;
    let (code, body) = s.delete(&id).await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("running"),
        "{body}"
    );
    s.poll(&id, status_is("succeeded"), Duration::from_secs(20))
        .await;
    assert_eq!(s.delete(&id).await.0, 409);
    assert_eq!(runs(&long_key), 1);
    s.stop().await;
}

async fn dedup_under_concurrent_submits(s: &Setup) {
    let key = unique("dedup");
    let dedup_key = unique("order-42");
    let body = json!({"job_class": "ApiProbe", "arguments": {"key": key}, "queue": s.queue, "dedup_key": dedup_key});
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (http, url, body) = (s.http.clone(), s.url("/v1/jobs"), body.clone());
        tasks.push(tokio::spawn(async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            let code = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            (code, v["id"].as_str().unwrap_or_default().to_string())
        }));
    }
    let mut codes = HashMap::new();
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (code, id) = t.await.unwrap();
        *codes.entry(code).or_insert(0) += 1;
        ids.insert(id);
    }
    assert_eq!(codes.get(&202), Some(&1), "{codes:?}");
    assert_eq!(codes.get(&200), Some(&19), "{codes:?}");
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id = ids.into_iter().next().unwrap();
    s.poll(&id, status_is("succeeded"), Duration::from_secs(30))
        .await;
    let (_, page) = s.get(&format!("/v1/jobs?queue={}", s.queue)).await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(runs(&key), 1);

    // From code, the same key returns the same job.
    let job = ApiProbe {
        key: key.clone(),
        sleep_ms: 0,
        fail_first: 0,
        nested: None,
    };
    let again = job
        .set()
        .queue(&s.queue)
        .dedup_key(&dedup_key)
        .perform_later(&s.client)
        .await
        .unwrap();
    assert_eq!(again.to_string(), id);
    // Another key makes another job.
    let other = job
        .set()
        .queue(&s.queue)
        .dedup_key(unique("other"))
        .perform_later(&s.client)
        .await
        .unwrap();
    assert_ne!(other.to_string(), id);
}

#[tokio::test]
async fn dedup_20_concurrent_submits_yield_one_job_sqlite() {
    let s = Setup::sqlite(true, &[]).await;
    dedup_under_concurrent_submits(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn dedup_20_concurrent_submits_yield_one_job_postgres() {
    let s = Setup::with_store(&postgres_url(), true, &[]).await;
    dedup_under_concurrent_submits(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn postgres_store_polls_to_succeeded_and_cancels() {
    let s = Setup::with_store(&postgres_url(), true, &[]).await;
    let key = unique("pg");
    let (code, job) = s
        .submit(json!({"job_class": "ApiProbe", "arguments": {"key": key, "fail_first": 1}, "queue": s.queue}))
        .await;
    assert_eq!(code, 202);
    let id = job["id"].as_str().unwrap().to_string();
    let (done, _) = s
        .poll(&id, status_is("succeeded"), Duration::from_secs(30))
        .await;
    assert_eq!(done["attempts"], 2);
    assert_eq!(done["result"]["attempt"], 2);
    let (_, scheduled) = s
        .submit(json!({"job_class": "ApiProbe", "arguments": {"key": unique("pgc")}, "queue": s.queue, "wait_seconds": 300}))
        .await;
    let (code, body) = s.delete(scheduled["id"].as_str().unwrap()).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("cancelled")));
    s.stop().await;
}

#[tokio::test]
async fn bearer_tokens_guard_everything_but_healthz() {
    let s = Setup::sqlite(false, &["s3cret", "other"]).await;
    assert_eq!(s.get("/healthz").await.0, 200);
    let r = s.http.get(s.url("/v1/queues")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = s
        .http
        .get(s.url("/v1/queues"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = s
        .http
        .post(s.url("/v1/jobs"))
        .json(&json!({"job_class": "ApiProbe", "arguments": {"key": "x"}, "queue": s.queue}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        401,
        "unauthenticated submits are refused"
    );
    for t in ["s3cret", "other"] {
        let r = s
            .http
            .get(s.url("/v1/queues"))
            .bearer_auth(t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let r = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    s.stop().await;
}

#[tokio::test]
async fn metrics_openapi_and_health() {
    let s = Setup::sqlite(true, &[]).await;
    let (_, job) = s
        .submit(json!({"job_class": "ApiProbe", "arguments": {"key": unique("m"), "sleep_ms": 20}, "queue": s.queue}))
        .await;
    s.poll(
        job["id"].as_str().unwrap(),
        status_is("succeeded"),
        Duration::from_secs(30),
    )
    .await;
    let r = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    assert!(
        text.contains(&format!(
            "pubsub_jobs_jobs{{queue=\"{}\",status=\"succeeded\"}} 1",
            s.queue
        )),
        "{text}"
    );
    assert!(
        text.contains("pubsub_jobs_events_total{event=\"succeeded\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("pubsub_jobs_run_seconds_bucket{le=\"+Inf\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("pubsub_jobs_queue_latency_seconds_count 1"),
        "{text}"
    );
    let (code, spec) = s.get("/openapi.json").await;
    assert_eq!(code, 200);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for p in [
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/events",
        "/v1/queues",
        "/healthz",
        "/metrics",
    ] {
        assert!(
            spec["paths"][p].is_object(),
            "{p} missing from the OpenAPI document"
        );
    }
    assert!(spec["paths"]["/v1/jobs"]["post"]["responses"]["422"].is_object());
    assert!(spec["components"]["schemas"]["JobResource"].is_object());
    let (code, health) = s.get("/healthz").await;
    assert_eq!((code, health["status"].as_str()), (200, Some("ok")));
    s.stop().await;
}

/// A local server for HttpRequestJob: /a counts, /b fails (500) on its first call, /c counts.
async fn step_server() -> (String, Arc<[AtomicU32; 3]>) {
    use axum::routing::any;
    let hits: Arc<[AtomicU32; 3]> = Arc::new(Default::default());
    let (h1, h2, h3) = (hits.clone(), hits.clone(), hits.clone());
    let app = axum::Router::new()
        .route(
            "/a",
            any(move || async move {
                h1[0].fetch_add(1, Ordering::SeqCst);
                "a"
            }),
        )
        .route(
            "/b",
            any(move || async move {
                let n = h2[1].fetch_add(1, Ordering::SeqCst);
                if n == 0 {
                    (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "not yet")
                } else {
                    (axum::http::StatusCode::CREATED, "b")
                }
            }),
        )
        .route(
            "/c",
            any(move || async move {
                h3[2].fetch_add(1, Ordering::SeqCst);
                "c"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, hits)
}

#[tokio::test]
async fn http_request_job_refuses_loopback_then_resumes_at_the_failed_step() {
    let s = Setup::sqlite(true, &[]).await;
    let (base, hits) = step_server().await;
    let steps = json!([
        {"name": "a", "url": format!("{base}/a")},
        {"name": "b", "method": "POST", "url": format!("{base}/b"), "body": {"x": 1}, "headers": {"x-test": "1"}},
        {"name": "c", "url": format!("{base}/c")},
    ]);

    // By default loopback is refused: straight to the morgue with the reason, nothing sent.
    pubsub_jobs::http_job::set_policy(pubsub_jobs::http_job::HttpPolicy::default());
    let (code, job) = s
        .submit(
            json!({"job_class": "HttpRequestJob", "arguments": {"steps": steps}, "queue": s.queue}),
        )
        .await;
    assert_eq!(code, 202, "{job}");
    let (refused, _) = s
        .poll(
            job["id"].as_str().unwrap(),
            status_is("morgued"),
            Duration::from_secs(30),
        )
        .await;
    assert!(
        refused["last_error"]
            .as_str()
            .unwrap()
            .contains("internal address 127.0.0.1"),
        "{refused}"
    );
    assert_eq!(hits[0].load(Ordering::SeqCst), 0);

    pubsub_jobs::http_job::set_policy(pubsub_jobs::http_job::HttpPolicy {
        allowed_hosts: vec![],
        allow_private: true,
    });
    let (code, job) = s.submit(json!({"job_class": "HttpRequestJob", "arguments": {"steps": steps, "timeout_seconds": 5}, "queue": s.queue})).await;
    assert_eq!(code, 202);
    let (done, seen) = s
        .poll(
            job["id"].as_str().unwrap(),
            status_is("succeeded"),
            Duration::from_secs(40),
        )
        .await;
    assert!(seen.contains(&"retrying".to_string()), "{seen:?}");
    let counts: Vec<u32> = hits.iter().map(|h| h.load(Ordering::SeqCst)).collect();
    assert_eq!(counts, [1, 2, 1], "step a ran once: the retry resumed at b");
    let steps = done["result"]["steps"].as_array().unwrap();
    let summary: Vec<(String, u64, u64)> = steps
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["status"].as_u64().unwrap(),
                s["attempt"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("a".into(), 200, 1),
            ("b".into(), 201, 2),
            ("c".into(), 200, 2)
        ]
    );
    assert!(steps.iter().all(|s| s["duration_ms"].is_u64()));
    assert!(
        done["last_error"].as_str().unwrap().contains("HTTP 500"),
        "{done}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_entries_listed_paused_resumed_and_run_now() {
    use pubsub_jobs::periodic::{PeriodicEntry, Scheduler};
    let s = Setup::sqlite(true, &[]).await;
    let key = unique("periodic");
    let name = unique("yearly-report");
    let entry = PeriodicEntry::new(
        name.clone(),
        "0 0 0 1 1 *",
        &ApiProbe {
            key: key.clone(),
            sleep_ms: 0,
            fail_first: 0,
            nested: None,
        },
    )
    .unwrap()
    .timezone("Europe/Berlin")
    .unwrap()
    .queue(s.queue.clone());
    let scheduler = Scheduler::start(s.client.clone(), vec![entry]).unwrap();
    // The scheduler registers its entries in the store.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let (code, body) = s.get("/v1/periodic").await;
        assert_eq!(code, 200, "{body}");
        if let Some(e) = body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == json!(name))
        {
            break e.clone();
        }
        assert!(std::time::Instant::now() < deadline, "entry registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(listed["schedule"], "0 0 0 1 1 *");
    assert_eq!(listed["timezone"], "Europe/Berlin");
    assert_eq!(listed["job_class"], "ApiProbe");
    assert_eq!(listed["queue"], json!(s.queue));
    assert_eq!(listed["paused"], false);
    assert_eq!(listed["last_run_at"], Value::Null);
    // Midnight on 1 January in Berlin is 23:00 UTC on 31 December.
    let next = listed["next_run_at"].as_str().unwrap();
    assert!(next.contains("-12-31T23:00:00"), "{next}");

    let post = |path: String| {
        let http = s.http.clone();
        let url = s.url(&path);
        async move {
            let r = http.post(url).send().await.unwrap();
            let code = r.status().as_u16();
            (code, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (code, body) = post(format!("/v1/periodic/{name}/pause")).await;
    assert_eq!((code, &body["paused"]), (200, &json!(true)), "{body}");
    let (code, body) = post(format!("/v1/periodic/{name}/resume")).await;
    assert_eq!((code, &body["paused"]), (200, &json!(false)), "{body}");
    let (code, body) = post("/v1/periodic/no-such-entry/pause".into()).await;
    assert_eq!(code, 404, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no-such-entry"));

    // Run now: a job of the entry's class, arguments and queue, which the worker runs.
    let (code, job) = post(format!("/v1/periodic/{name}/run")).await;
    assert_eq!(code, 202, "{job}");
    assert_eq!(job["job_class"], "ApiProbe");
    assert_eq!(job["queue"], json!(s.queue));
    let id = job["id"].as_str().unwrap().to_string();
    s.poll(&id, status_is("succeeded"), Duration::from_secs(30))
        .await;
    assert_eq!(runs(&key), 1);
    scheduler.shutdown().await;
    s.stop().await;
}

async fn post(s: &Setup, path: &str, body: Value) -> (u16, Value) {
    let r = s.http.post(s.url(path)).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Waits until `key`'s job ran `n` times and the store shows it `status`.
async fn wait_runs(s: &Setup, id: &str, key: &str, n: u32, status: &'static str) {
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

#[tokio::test]
async fn retry_delete_cancel_count_bulk_and_stats_through_the_json_api() {
    let s = Setup::sqlite(true, &[]).await;
    let dead = |key: &str| json!({"job_class": "ApiProbe", "queue": s.queue, "arguments": {"key": key, "fail_first": 99}});
    // A morgued job retried runs again from its first execution, as generation 1.
    let key = unique("retry");
    let (_, job) = s.submit(dead(&key)).await;
    let id = job["id"].as_str().unwrap().to_string();
    wait_runs(&s, &id, &key, 3, "morgued").await;
    let (code, back) = post(&s, &format!("/v1/jobs/{id}/retry"), json!({})).await;
    assert_eq!(code, 200, "{back}");
    assert_eq!(
        (back["status"].as_str(), back["generation"].as_u64()),
        (Some("pending"), Some(1))
    );
    wait_runs(&s, &id, &key, 6, "morgued").await;
    let kinds = s.event_kinds(&id).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "enqueued").count(),
        2,
        "{kinds:?}"
    );

    // A job that succeeded is not retried; a scheduled one is not deleted until cancelled.
    let ok = unique("ok");
    let (_, job) = s
        .submit(json!({"job_class": "ApiProbe", "queue": s.queue, "arguments": {"key": ok}}))
        .await;
    let ok_id = job["id"].as_str().unwrap().to_string();
    s.poll(&ok_id, status_is("succeeded"), Duration::from_secs(30))
        .await;
    let (code, err) = post(&s, &format!("/v1/jobs/{ok_id}/retry"), json!({})).await;
    assert_eq!(
        (code, err["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{err}"
    );
    let (_, later) = s
        .submit(json!({"job_class": "ApiProbe", "queue": s.queue, "wait_seconds": 3600, "arguments": {"key": unique("later")}}))
        .await;
    let later = later["id"].as_str().unwrap().to_string();
    let (code, _) = post(&s, &format!("/v1/jobs/{later}/delete"), json!({})).await;
    assert_eq!(code, 409);
    let (code, c) = post(&s, &format!("/v1/jobs/{later}/cancel"), json!({})).await;
    assert_eq!((code, c["status"].as_str()), (200, Some("cancelled")));
    let (code, d) = post(&s, &format!("/v1/jobs/{later}/delete"), json!({})).await;
    assert_eq!((code, d["deleted"].as_bool()), (200, Some(true)));
    assert_eq!(s.get(&format!("/v1/jobs/{later}")).await.0, 404);
    assert_eq!(
        post(&s, &format!("/v1/jobs/{later}/delete"), json!({}))
            .await
            .0,
        404
    );

    // Bulk: three more morgued jobs; count them, retry them all (each runs once more per
    // attempt), then delete them all.
    let mut dead_jobs = vec![(id.clone(), key.clone(), 6)];
    for n in 0..3 {
        let key = unique(&format!("bulk{n}"));
        let (_, job) = s.submit(dead(&key)).await;
        dead_jobs.push((job["id"].as_str().unwrap().to_string(), key, 3));
    }
    for (id, key, n) in &dead_jobs {
        wait_runs(&s, id, key, *n, "morgued").await;
    }
    let q = &s.queue;
    let (_, count) = s
        .get(&format!("/v1/jobs/count?queue={q}&status=morgued"))
        .await;
    assert_eq!(
        (count["count"].as_u64(), count["exact"].as_bool()),
        (Some(4), Some(true))
    );
    let (_, count) = s
        .get(&format!(
            "/v1/jobs/count?queue={q}&class=ApiProbe&q=fail_first"
        ))
        .await;
    assert_eq!(count["count"], 4, "class and text: {count}");
    let (code, out) = post(
        &s,
        "/v1/jobs/bulk",
        json!({"action": "retry", "queue": q, "status": "morgued"}),
    )
    .await;
    assert_eq!(code, 200, "{out}");
    assert_eq!(
        (
            out["matched"].as_u64(),
            out["done"].as_u64(),
            out["skipped"].as_u64()
        ),
        (Some(4), Some(4), Some(0))
    );
    for (id, key, n) in &dead_jobs {
        wait_runs(&s, id, key, n + 3, "morgued").await;
    }
    let (code, out) = post(
        &s,
        "/v1/jobs/bulk",
        json!({"action": "delete", "queue": q, "status": "morgued"}),
    )
    .await;
    assert_eq!((code, out["done"].as_u64()), (200, Some(4)), "{out}");
    let (_, count) = s
        .get(&format!("/v1/jobs/count?queue={q}&status=morgued"))
        .await;
    assert_eq!(count["count"], 0);
    let (code, err) = post(
        &s,
        "/v1/jobs/bulk",
        json!({"action": "retry", "status": "dead"}),
    )
    .await;
    assert_eq!(
        (code, err["error"]["field"].as_str()),
        (422, Some("status")),
        "{err}"
    );

    // Stats: the queue's counts, this hour's executions, percentiles, processes.
    let (code, stats) = s.get("/v1/stats").await;
    assert_eq!(code, 200, "{stats}");
    let mine = stats["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["queue"] == s.queue.as_str())
        .cloned()
        .unwrap();
    assert_eq!(mine["counts"]["succeeded"], 1, "{mine}");
    let failed: u64 = stats["throughput"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["failed"].as_u64().unwrap())
        .sum();
    assert!(failed >= 21, "at least the 21 failures here: {stats}");
    assert!(stats["run_time"]["count"].as_u64().unwrap() >= 22);
    assert!(stats["queue_latency"]["p50_seconds"].as_f64().is_some());
    let (_, classes) = s.get("/v1/classes").await;
    assert!(
        classes
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["job_class"] == "ApiProbe"),
        "{classes}"
    );
    s.stop().await;
}

#[tokio::test]
async fn the_dashboard_sends_security_headers_and_refuses_other_origins() {
    let s = Setup::sqlite(false, &[]).await;
    let r = s.http.get(s.url("/ui/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'")
            && csp.contains("script-src 'self'")
            && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-store");
    let body = r.text().await.unwrap();
    assert!(body.contains("<h1>Overview</h1>"));

    // Another origin may not change state, on the JSON API or the dashboard.
    let job = json!({"job_class": "ApiProbe", "queue": s.queue, "arguments": {"key": unique("o")}});
    for (name, value) in [
        ("origin", "http://evil.example"),
        ("sec-fetch-site", "cross-site"),
        ("origin", "null"),
    ] {
        let r = s
            .http
            .post(s.url("/v1/jobs"))
            .header(name, value)
            .json(&job)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{name}: {value}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], "forbidden");
        let r = s
            .http
            .post(s.url("/ui/enqueue"))
            .header(name, value)
            .form(&[("job_class", "ApiProbe")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "dashboard, {name}: {value}");
    }
    let host = s.base.trim_start_matches("http://").to_string();
    let r = s
        .http
        .post(s.url("/v1/jobs"))
        .header("origin", format!("http://{host}"))
        .header("sec-fetch-site", "same-origin")
        .json(&job)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "same origin passes");
    let (count, _) = (
        s.get(&format!("/v1/jobs/count?queue={}", s.queue)).await.1,
        (),
    );
    assert_eq!(count["count"], 1, "only the same-origin submit landed");

    // Whatever a path holds is escaped on the error page.
    let r = s
        .http
        .get(s.url("/ui/jobs/%3Cscript%3Ealert(1)%3C%2Fscript%3E"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body = r.text().await.unwrap();
    assert!(!body.contains("<script>alert"), "{body}");
    assert!(
        body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{body}"
    );
    s.stop().await;
}

#[tokio::test]
async fn dashboard_sessions_need_a_token_and_cannot_be_forged() {
    let s = Setup::sqlite(false, &["tok-one", "tok-two"]).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .get(s.url("/ui/jobs?status=morgued"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "/ui/login?next=%2Fui%2Fjobs%3Fstatus%3Dmorgued"
    );
    assert_eq!(
        http.get(s.url("/ui/login")).send().await.unwrap().status(),
        200,
        "the sign-in page is open"
    );
    // A wrong token: 401, no cookie.
    let r = http
        .post(s.url("/ui/login"))
        .form(&[("token", "nope"), ("next", "/ui/jobs")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    // The right one: a session, and never a redirect off the site.
    let r = http
        .post(s.url("/ui/login"))
        .form(&[("token", "tok-two"), ("next", "//evil.example/x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/ui/");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let r = http
        .get(s.url("/ui/jobs"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A forged or tampered session is refused.
    let (value, mac) = pair.split_once('.').unwrap();
    let forged = format!("{}9.{mac}", value);
    for c in [forged.as_str(), "pj_session=1999999999.00"] {
        let r = http
            .get(s.url("/ui/jobs"))
            .header("cookie", c)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{c}");
    }
    let r = http
        .post(s.url(&format!("/ui/jobs/{}/retry", uuid::Uuid::new_v4())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "an action without a session");
    // A bearer token works on the dashboard too (scripts, curl).
    let r = http
        .get(s.url("/ui/"))
        .bearer_auth("tok-one")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn the_periodic_page_pauses_resumes_and_runs_an_entry() {
    let s = Setup::sqlite(false, &[]).await;
    let store = s.client.store().unwrap().clone();
    let name = unique("nightly <b>report</b>");
    store
        .register_periodic(&[pubsub_jobs::store::PeriodicDefinition {
            name: name.clone(),
            schedule: "0 3 * * *".into(),
            timezone: "Europe/Paris".into(),
            job_class: "ApiProbe".into(),
            queue: s.queue.clone(),
            arguments: json!({"key": unique("nightly")}),
        }])
        .await
        .unwrap();
    let page = s
        .http
        .get(s.url("/ui/periodic"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("0 3 * * *") && page.contains("Europe/Paris"),
        "{page}"
    );
    assert!(!page.contains("<b>report</b>") && page.contains("&lt;b&gt;report&lt;/b&gt;"));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let path = |action: &str| {
        let enc: String = name
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'-' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        s.url(&format!("/ui/periodic/{enc}/{action}"))
    };
    let paused = |st: &Vec<pubsub_jobs::store::PeriodicState>| {
        st.iter()
            .find(|e| e.definition.name == name)
            .unwrap()
            .paused
    };
    let r = http.post(path("pause")).send().await.unwrap();
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["location"].to_str().unwrap()
        ),
        (303, "/ui/periodic?done=paused")
    );
    assert!(paused(&store.periodic_entries().await.unwrap()));
    http.post(path("resume")).send().await.unwrap();
    assert!(!paused(&store.periodic_entries().await.unwrap()));
    let r = http.post(path("run")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let job_page = r.headers()["location"].to_str().unwrap().to_string();
    let id = job_page
        .trim_start_matches("/ui/jobs/")
        .trim_end_matches("?done=ran");
    let (code, job) = s.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(
        (code, job["job_class"].as_str(), job["queue"].as_str()),
        (200, Some("ApiProbe"), Some(s.queue.as_str()))
    );
    assert_eq!(
        http.post(s.url("/ui/periodic/no-such-entry/pause"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    s.stop().await;
}
