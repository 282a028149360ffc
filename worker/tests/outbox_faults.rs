//! The outbox against process faults, with real `worker api` and `worker` processes, the
//! emulator behind a fault-injecting proxy, on SQLite and PostgreSQL: an API killed while its
//! publishes hang loses no job and runs none twice; a publish that times out after Pub/Sub took
//! the message runs its job once.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fault_proxy::{Fault, FaultProxy};
use common::*;
use pubsub_jobs::store::{JobRecord, JobStatus, JobStore, ListQuery};
use serde_json::{json, Value};

async fn submit(http: &reqwest::Client, base: &str, queue: &str, key: &str) -> (u16, Value) {
    let r = http
        .post(format!("{base}/v1/jobs"))
        .json(&json!({
            "job_class": "MockJob",
            "arguments": { "sleep_duration": 0, "raise_error": false },
            "queue": queue,
            "dedup_key": key,
        }))
        .send()
        .await
        .expect("POST /v1/jobs");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn jobs_of(store: &Arc<dyn JobStore>, queue: &str) -> Vec<JobRecord> {
    store
        .list(ListQuery {
            status: None,
            queue: Some(queue.to_string()),
            limit: 500,
            ..Default::default()
        })
        .await
        .expect("list")
        .jobs
}

/// Waits until the store shows `n` jobs on `queue`, all succeeded.
async fn wait_all_succeeded(store: &Arc<dyn JobStore>, queue: &str, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let jobs = jobs_of(store, queue).await;
        if jobs.len() == n && jobs.iter().all(|j| j.status == JobStatus::Succeeded) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not every job succeeded within {timeout:?}: {:?}",
            jobs.iter()
                .map(|j| (j.id, j.status, j.published_at))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Each job of the queue started exactly once.
async fn assert_each_started_once(store: &Arc<dyn JobStore>, queue: &str) {
    for job in jobs_of(store, queue).await {
        let starts = starts(store, job.id).await;
        assert_eq!(
            starts, 1,
            "job {} ({:?}) started once",
            job.id, job.dedup_key
        );
    }
}

async fn api_killed_while_its_publishes_hang_loses_nothing(store_url: &str) {
    let proxy = FaultProxy::start(emulator_host());
    let queue = unique("apikill");
    let store = pubsub_jobs::store::connect(store_url).await.expect("store");
    let mut api = Api::start(&proxy.host(), store_url, &[]).await;
    let http = reqwest::Client::new();
    for i in 0..5 {
        let (code, body) = submit(&http, &api.base, &queue, &format!("k{i}")).await;
        assert_eq!(code, 202, "{body}");
    }
    // Pub/Sub unreachable: the next five are recorded, then hang in their publish.
    proxy.set(Fault::BlackHole);
    let mut hanging = tokio::task::JoinSet::new();
    for i in 5..10 {
        let (http, base, queue) = (http.clone(), api.base.clone(), queue.clone());
        hanging.spawn(async move { submit(&http, &base, &queue, &format!("k{i}")).await });
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while jobs_of(&store, &queue).await.len() < 10 {
        assert!(
            Instant::now() < deadline,
            "the hanging submits were recorded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The API dies (a crash, a deploy) with its clients waiting.
    api.kill();
    while let Some(r) = hanging.join_next().await {
        let _ = r; // the clients see their connection drop
    }
    let unpublished: HashMap<String, uuid::Uuid> = jobs_of(&store, &queue)
        .await
        .into_iter()
        .filter(|j| j.published_at.is_none())
        .map(|j| (j.dedup_key.clone().unwrap(), j.id))
        .collect();
    assert_eq!(unpublished.len(), 5, "the hung five are in the outbox");

    // A worker (its relay publishes what the dead API left) and a fresh API, both on a healthy
    // path to Pub/Sub. A client retries one of the hung submits with its dedup key.
    let grace = "2";
    let _worker = Running::start(
        &queue,
        &[
            ("PUBSUB_JOBS_STORE", store_url),
            ("PUBSUB_JOBS_RELAY_GRACE", grace),
        ],
        &[],
    );
    let api2 = Api::start(
        emulator_host(),
        store_url,
        &[("PUBSUB_JOBS_RELAY_GRACE", grace)],
    )
    .await;
    let (code, body) = submit(&http, &api2.base, &queue, "k7").await;
    assert_eq!(code, 200, "the retry finds the job: {body}");
    assert_eq!(body["id"], json!(unpublished["k7"].to_string()));

    wait_all_succeeded(&store, &queue, 10, Duration::from_secs(30)).await;
    assert_each_started_once(&store, &queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_killed_while_its_publishes_hang_loses_nothing_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    api_killed_while_its_publishes_hang_loses_nothing(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_killed_while_its_publishes_hang_loses_nothing_postgres() {
    api_killed_while_its_publishes_hang_loses_nothing(&postgres_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_that_timed_out_after_pubsub_took_it_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    let proxy = FaultProxy::start(emulator_host());
    let queue = unique("pubtimeout");
    let store = pubsub_jobs::store::connect(&store_url)
        .await
        .expect("store");
    // Short publish timeout, relay soon after it.
    let env = [
        ("PUBSUB_TIMEOUT_SECONDS", "3"),
        ("PUBSUB_JOBS_RELAY_GRACE", "1"),
    ];
    let api = Api::start(&proxy.host(), &store_url, &env).await;
    let http = reqwest::Client::new();
    let (code, _) = submit(&http, &api.base, &queue, "warm").await;
    assert_eq!(code, 202);
    // Requests reach Pub/Sub, answers never come back: the publish times out at the API,
    // which answers 202 (the job is durable) and leaves it to the relay.
    proxy.set(Fault::DropResponses);
    let (code, body) = submit(&http, &api.base, &queue, "lost-answer").await;
    assert_eq!(code, 202, "{body}");
    let id: uuid::Uuid = body["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(store.get(id).await.unwrap().unwrap().published_at, None);
    proxy.set(Fault::Forward);
    // The message Pub/Sub took runs; the relays' second publish (if any) is skipped.
    let mut worker = Running::start(
        &queue,
        &[
            ("PUBSUB_JOBS_STORE", &store_url),
            ("PUBSUB_JOBS_RELAY_GRACE", "1"),
        ],
        &[],
    );
    wait_all_succeeded(&store, &queue, 2, Duration::from_secs(30)).await;
    // Past the relays' grace and a relay interval: whatever they publish again has arrived.
    worker.read_for(Duration::from_secs(4));
    assert_each_started_once(&store, &queue).await;
    let started: Vec<_> = worker
        .seen
        .iter()
        .filter(|v| v["event"] == "job.started" && v["job_id"] == json!(id.to_string()))
        .collect();
    assert_eq!(started.len(), 1, "ran once: {:#?}", worker.seen);
}
