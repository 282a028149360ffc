//! The outbox and the relay against the real emulator, on SQLite and PostgreSQL: a job recorded
//! by an enqueuer that died before publishing runs once, within the grace period; a dedup hit on
//! such a job returns it and it runs once; two relays on one PostgreSQL store publish 1,000
//! unpublished rows, each exactly once.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use pubsub_jobs::envelope::Envelope;
use pubsub_jobs::relay::{Relay, RelayConfig};
use pubsub_jobs::store::{self, Dedup, JobStatus, JobStore, NewJob, OutboxMessage, Submitted};
use pubsub_jobs::{Client, Job};
use support::*;

/// Records the job as an enqueuer does, then "dies": nothing is published.
async fn record_without_publishing(
    client: &Client,
    store: &Arc<dyn JobStore>,
    queue: &str,
    probe: &Probe,
    dedup: Option<Dedup>,
) -> Envelope {
    client.ensure_queue(queue).await.unwrap();
    let env = Envelope::new(Probe::NAME, queue, serde_json::to_value(probe).unwrap());
    let job = NewJob {
        id: env.job_id,
        job_class: env.job_class.clone(),
        queue: queue.into(),
        arguments: env.arguments.clone(),
        metadata: Default::default(),
        enqueued_at: env.enqueued_at,
        scheduled_at: None,
        dedup,
        message: Some(OutboxMessage {
            topic: client.resource_name(queue),
            data: env.to_body(),
            attributes: env.attributes(),
        }),
    };
    assert!(matches!(
        store.submit(job).await.unwrap(),
        Submitted::Created(_)
    ));
    env
}

/// The kinds of a job's events, oldest first.
async fn event_kinds(store: &Arc<dyn JobStore>, id: uuid::Uuid) -> Vec<&'static str> {
    store
        .events(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind.as_str())
        .collect()
}

async fn wait_for_status(store: &Arc<dyn JobStore>, id: uuid::Uuid, want: JobStatus) -> bool {
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline {
        if store.get(id).await.unwrap().map(|r| r.status) == Some(want) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The job ids of what `topic` got, pulled `per_pull` at a time (acked) until `want` arrived or
/// 90 s passed, then for 2 s more: anything published twice arrives within a moment of the rest.
async fn pull_job_ids(topic: &str, want: usize, per_pull: usize) -> Vec<uuid::Uuid> {
    let broker = raw_broker().await;
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut late = false;
    loop {
        let wait = if late { 2000 } else { 500 };
        let batch = broker
            .pull(topic, per_pull, Duration::from_millis(wait))
            .await
            .unwrap();
        let acks: Vec<String> = batch.iter().map(|d| d.ack_id.clone()).collect();
        for d in &batch {
            seen.push(Envelope::decode(&d.data, &d.attributes).unwrap().job_id);
        }
        if !acks.is_empty() {
            broker.ack(topic, acks).await.unwrap();
        }
        if late && batch.is_empty() {
            return seen;
        }
        late = late || seen.len() >= want || Instant::now() >= deadline;
    }
}

/// Every one of `ids` was seen exactly once and is marked published in `store`.
async fn assert_published_once(
    store: &Arc<dyn JobStore>,
    seen: &[uuid::Uuid],
    ids: &HashSet<uuid::Uuid>,
) {
    let distinct: HashSet<uuid::Uuid> = seen.iter().copied().collect();
    assert_eq!(&distinct, ids, "every row published");
    assert_eq!(seen.len(), ids.len(), "none published twice");
    for id in ids {
        let rec = store.get(*id).await.unwrap().unwrap();
        assert!(rec.published_at.is_some(), "{id} marked published");
    }
}

async fn an_enqueuer_that_died_before_publishing_loses_nothing(url: &str) {
    let store = store::connect(url).await.expect("store");
    let client = support::client().await.with_store(store.clone());
    let queue = unique("outbox");
    let key = unique("orphan");
    let env =
        record_without_publishing(&client, &store, &queue, &Probe::new(&key, Mode::Ok), None).await;
    assert_eq!(
        store.get(env.job_id).await.unwrap().unwrap().published_at,
        None
    );
    // A worker with the store runs a relay (grace 1 s): the orphan is published and runs once.
    let mut config = worker_config(&queue);
    config.relay = RelayConfig {
        grace: Duration::from_secs(1),
        interval: Duration::from_millis(200),
        ..RelayConfig::default()
    };
    let worker = start_worker(&client, config);
    assert!(
        wait_for_status(&store, env.job_id, JobStatus::Succeeded).await,
        "the orphaned job ran: {:?}",
        store.get(env.job_id).await.unwrap()
    );
    assert!(store
        .get(env.job_id)
        .await
        .unwrap()
        .unwrap()
        .published_at
        .is_some());
    worker.stop().await;
    assert_eq!(run_count(&key), 1, "ran once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueuer_that_died_before_publishing_loses_nothing_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    an_enqueuer_that_died_before_publishing_loses_nothing(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueuer_that_died_before_publishing_loses_nothing_postgres() {
    an_enqueuer_that_died_before_publishing_loses_nothing(&postgres_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dedup_hit_on_an_unpublished_job_is_never_a_ghost() {
    let store = store::connect(&postgres_url()).await.expect("store");
    let client = support::client().await.with_store(store.clone());
    let queue = unique("ghost");
    let key = unique("ghost");
    let dedup_key = unique("order");
    let dedup = || {
        Some(Dedup {
            key: dedup_key.clone(),
            window: Duration::from_secs(300),
        })
    };
    let first = record_without_publishing(
        &client,
        &store,
        &queue,
        &Probe::new(&key, Mode::Ok),
        dedup(),
    )
    .await;
    // The client retries with the same key: it gets the first job, which then runs, once.
    let again = Envelope::new(
        Probe::NAME,
        &queue,
        serde_json::to_value(Probe::new(&key, Mode::Ok)).unwrap(),
    );
    let submission = client.submit(again, dedup()).await.unwrap();
    assert!(submission.existing);
    assert_eq!(submission.job_id, first.job_id);
    let worker = start_worker(&client, worker_config(&queue));
    assert!(wait_for_status(&store, first.job_id, JobStatus::Succeeded).await);
    worker.stop().await;
    assert_eq!(run_count(&key), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_publish_a_thousand_rows_each_once() {
    let store = store::connect(&postgres_url()).await.expect("store");
    let client = support::client().await.with_store(store.clone());
    let queue = unique("relays");
    client.ensure_queue(&queue).await.unwrap();
    let topic = client.resource_name(&queue);
    let jobs: Vec<NewJob> = (0..1000)
        .map(|n| {
            let env = Envelope::new("Probe", &queue, serde_json::json!({ "n": n }));
            NewJob {
                id: env.job_id,
                job_class: env.job_class.clone(),
                queue: queue.clone(),
                arguments: env.arguments.clone(),
                metadata: Default::default(),
                enqueued_at: Utc::now() - chrono::Duration::seconds(60),
                scheduled_at: None,
                dedup: None,
                message: Some(OutboxMessage {
                    topic: topic.clone(),
                    data: env.to_body(),
                    attributes: env.attributes(),
                }),
            }
        })
        .collect();
    let ids: HashSet<uuid::Uuid> = jobs.iter().map(|j| j.id).collect();
    store.submit_many(jobs).await.unwrap();
    let config = RelayConfig {
        grace: Duration::ZERO,
        interval: Duration::from_millis(50),
        batch: 100,
        ..RelayConfig::default()
    };
    // Two relays, each on its own client and connection pool, as on two machines.
    let other = support::client()
        .await
        .with_store(store::connect(&postgres_url()).await.expect("store"));
    let relays = [
        Relay::start(client.clone(), config.clone()).unwrap(),
        Relay::start(other, config).unwrap(),
    ];
    // Pull everything the topic got: 1,000 messages, each job once.
    let seen = pull_job_ids(&topic, 1000, 1000).await;
    for r in relays {
        r.shutdown().await;
    }
    assert_published_once(&store, &seen, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_published_twice_runs_once_the_duplicate_is_skipped() {
    // A publish that timed out after Pub/Sub took the message leaves the row unpublished; the
    // relay publishes it again. The second delivery finds the job finished and is skipped.
    let store = store::connect(&postgres_url()).await.expect("store");
    let client = support::client().await.with_store(store.clone());
    let queue = unique("dup");
    let key = unique("dup");
    let env = Envelope::new(
        Probe::NAME,
        &queue,
        serde_json::to_value(Probe::new(&key, Mode::Ok)).unwrap(),
    );
    client.submit(env.clone(), None).await.unwrap();
    let worker = start_worker(&client, worker_config(&queue));
    assert!(wait_for_status(&store, env.job_id, JobStatus::Succeeded).await);
    // The same message again, as the relay would publish it.
    raw_broker()
        .await
        .publish(
            &client.resource_name(&queue),
            &[pubsub_jobs::broker::OutboundMessage {
                data: env.to_body(),
                attributes: env.attributes(),
            }],
        )
        .await
        .unwrap();
    let stats = worker.stats.clone();
    assert!(
        wait_until(Duration::from_secs(30), || stats.summary().processed >= 2).await,
        "the duplicate was delivered: {:?}",
        stats.summary()
    );
    let summary = worker.stop().await;
    assert_eq!(run_count(&key), 1, "ran once");
    assert_eq!((summary.processed, summary.succeeded), (2, 1));
    let kinds = event_kinds(&store, env.job_id).await;
    assert_eq!(
        kinds,
        ["enqueued", "started", "succeeded"],
        "one run recorded"
    );
}

/// A rolled-back transaction's job never exists; a committed one's runs, promptly, once, with
/// what the middleware attached inside the transaction.
async fn transactional_enqueue<DB: sqlx::Database>(store: Arc<dyn JobStore>, pool: sqlx::Pool<DB>)
where
    for<'t> sqlx::Transaction<'t, DB>: pubsub_jobs::store::EnqueueTx,
{
    let client = support::client()
        .await
        .with_store(store.clone())
        .with_middleware(Tag("source", None));
    let queue = unique("tx");
    client.ensure_queue(&queue).await.unwrap();
    let mut config = worker_config(&queue);
    config.relay.interval = Duration::from_secs(1);
    let worker = start_worker(&client, config);

    let (rolled_back, committed) = (unique("rollback"), unique("commit"));
    let mut tx = pool.begin().await.unwrap();
    let lost = Probe::new(&rolled_back, Mode::Ok)
        .set()
        .queue(&queue)
        .perform_later_in(&client, &mut tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    let kept = Probe::new(&committed, Mode::Ok)
        .set()
        .queue(&queue)
        .perform_later_in(&client, &mut tx)
        .await
        .unwrap();
    assert!(
        store.get(kept).await.unwrap().is_none(),
        "invisible before the commit"
    );
    tx.commit().await.unwrap();
    assert!(wait_for_status(&store, kept, JobStatus::Succeeded).await);
    worker.stop().await;
    let rec = store.get(kept).await.unwrap().unwrap();
    assert_eq!(
        rec.metadata.get("source").map(String::as_str),
        Some("Transaction")
    );
    assert_eq!(run_count(&committed), 1);
    assert!(
        store.get(lost).await.unwrap().is_none(),
        "rolled back: never existed"
    );
    assert_eq!(run_count(&rolled_back), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_enqueue_postgres() {
    let store = store::connect(&postgres_url()).await.expect("store");
    let pool = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
    transactional_enqueue(store, pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_enqueue_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let store = store::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("store");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    transactional_enqueue(store, pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_down_while_submitting_is_a_clear_error_and_nothing_half_recorded() {
    // PostgreSQL "stops": a proxy in front of it closes every connection and refuses new ones.
    let proxy = fault_proxy::FaultProxy::start(&postgres_host());
    let store = store::connect(&postgres_url_via(&proxy.host()))
        .await
        .expect("store");
    let client = support::client().await.with_store(store.clone());
    let queue = unique("storedown");
    client.ensure_queue(&queue).await.unwrap();
    let prefix = unique("sd");
    let probe_env = |i: usize| {
        Envelope::new(
            Probe::NAME,
            &queue,
            serde_json::to_value(Probe::new(&format!("{prefix}-{i}"), Mode::Ok)).unwrap(),
        )
    };
    let mut accepted = Vec::new();
    for i in 0..10 {
        let env = probe_env(i);
        client.submit(env.clone(), None).await.expect("store up");
        accepted.push(env);
    }

    proxy.set(fault_proxy::Fault::Down);
    let mut refused = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 10..20 {
        let (client, env) = (client.clone(), probe_env(i));
        refused.push(env.clone());
        tasks.spawn(async move { client.submit(env, None).await });
    }
    while let Some(r) = tasks.join_next().await {
        let err = r.unwrap().expect_err("a submit with the store down fails");
        let msg = err.to_string();
        assert!(
            msg.contains("job store"),
            "the error names the store: {msg}"
        );
    }

    proxy.set(fault_proxy::Fault::Forward);
    for i in 20..30 {
        let env = probe_env(i);
        client.submit(env.clone(), None).await.expect("store back");
        accepted.push(env);
    }

    let worker = start_worker(&client, worker_config(&queue));
    for env in &accepted {
        assert!(
            wait_for_status(&store, env.job_id, JobStatus::Succeeded).await,
            "accepted job {} ran: {:?}",
            env.job_id,
            store.get(env.job_id).await.unwrap()
        );
    }
    worker.stop().await;
    for env in &accepted {
        let kinds = event_kinds(&store, env.job_id).await;
        assert_eq!(
            kinds,
            ["enqueued", "started", "succeeded"],
            "{}",
            env.job_id
        );
    }
    // The refused jobs exist nowhere: not in the store, never run, nothing left in the queue.
    for (i, env) in refused.iter().enumerate() {
        assert!(
            store.get(env.job_id).await.unwrap().is_none(),
            "{i} recorded"
        );
        assert_eq!(run_count(&format!("{prefix}-{}", i + 10)), 0, "{i} ran");
    }
    assert_eq!(keys_run(&format!("{prefix}-")), 20, "each accepted job ran");
    assert!(keys_run_twice(&format!("{prefix}-")).is_empty());
    assert_eq!(
        pending_messages(&client, &queue, Duration::from_secs(3)).await,
        0,
        "nothing of the refused jobs was published"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submits_share_batches_each_recorded_published_and_run_once() {
    // 100 submits at once on one client: they go to the store and Pub/Sub in shared batches,
    // and each caller's answer is its own job as the store has it, durable when answered;
    // after `flush` every one is published and marked.
    let store = store::connect(&postgres_url()).await.expect("store");
    let client = support::client().await.with_store(store.clone());
    let queue = unique("batched");
    client.ensure_queue(&queue).await.unwrap();
    let prefix = unique("bs");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let client = client.clone();
        let env = Envelope::new(
            Probe::NAME,
            &queue,
            serde_json::to_value(Probe::new(&format!("{prefix}-{i}"), Mode::Ok)).unwrap(),
        );
        tasks.spawn(async move { (env.job_id, client.submit(env, None).await) });
    }
    let mut ids = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (id, sub) = r.unwrap();
        let sub = sub.expect("submit");
        assert_eq!(sub.job_id, id);
        let answered = sub.record.expect("a record");
        let stored = store.get(id).await.unwrap().expect("recorded");
        assert_eq!(answered.id, stored.id);
        assert_eq!(answered.status, JobStatus::Pending);
        assert_eq!(answered.enqueued_at, stored.enqueued_at);
        assert_eq!(answered.arguments, stored.arguments);
        ids.push(id);
    }
    client.flush().await;
    for id in &ids {
        let stored = store.get(*id).await.unwrap().expect("recorded");
        assert!(stored.published_at.is_some(), "{id} published and marked");
    }
    let worker = start_worker(&client, worker_config(&queue));
    for id in &ids {
        assert!(
            wait_for_status(&store, *id, JobStatus::Succeeded).await,
            "{id} ran"
        );
    }
    worker.stop().await;
    assert_eq!(keys_run(&format!("{prefix}-")), 100);
    assert!(
        keys_run_twice(&format!("{prefix}-")).is_empty(),
        "each once"
    );
}

/// The relay's publishes are split like every enqueue's: 500 unpublished rows of 100 KB each
/// (50 MB, five times what one publish request may carry) all arrive, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_publishes_500_rows_of_100_kb_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("app.db").display());
    let store = store::connect(&url).await.expect("store");
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let client = support::client().await.with_store(store.clone());
    let queue = unique("big-rows");
    client.ensure_queue(&queue).await.unwrap();
    let prefix = unique("big");
    let pad = "x".repeat(100_000);
    let jobs: Vec<Probe> = (0..500)
        .map(|n| Probe::new(&format!("{prefix}-{n}-{pad}"), Mode::Ok))
        .collect();
    let mut tx = pool.begin().await.unwrap();
    let ids: HashSet<uuid::Uuid> = client
        .perform_all_later_in_on(&queue, &mut tx, jobs)
        .await
        .unwrap()
        .into_iter()
        .collect();
    tx.commit().await.unwrap();
    assert_eq!(ids.len(), 500);
    let relay = Relay::start(
        client.clone(),
        RelayConfig {
            interval: Duration::from_millis(100),
            ..RelayConfig::default()
        },
    )
    .unwrap();
    // Pull in small batches (a pull answer is bounded too), until everything arrived.
    let topic = client.resource_name(&queue);
    let seen = pull_job_ids(&topic, 500, 40).await;
    relay.shutdown().await;
    assert_published_once(&store, &seen, &ids).await;
}

/// Inside a transaction a job is checked as every enqueue is: an 11 MB job and a job delayed
/// 8 days are refused, naming the limit, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perform_later_in_refuses_what_pub_sub_would_refuse_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("app.db").display());
    let store = store::connect(&url).await.expect("store");
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let client = support::client().await.with_store(store.clone());
    let queue = unique("refused");
    let mut tx = pool.begin().await.unwrap();
    let big = Probe::new(&"x".repeat(11_000_000), Mode::Ok);
    let err = big
        .set()
        .queue(&queue)
        .perform_later_in(&client, &mut tx)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            pubsub_jobs::Error::PayloadTooLarge {
                limit: 10_000_000,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("limit of 10000000 bytes"), "{err}");
    let err = Probe::new(&unique("late"), Mode::Ok)
        .set()
        .queue(&queue)
        .wait(Duration::from_secs(8 * 24 * 3600))
        .perform_later_in(&client, &mut tx)
        .await
        .unwrap_err();
    assert!(
        matches!(err, pubsub_jobs::Error::DelayTooLong { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("7-day"), "{err}");
    let err = client
        .perform_all_later_in_on(&queue, &mut tx, vec![Probe::new("ok", Mode::Ok), big])
        .await
        .unwrap_err();
    assert!(
        matches!(err, pubsub_jobs::Error::PayloadTooLarge { .. }),
        "{err}"
    );
    tx.commit().await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pj_jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 0, "nothing written");
    let counts = store.queue_counts().await.unwrap();
    assert!(counts.iter().all(|c| c.queue != queue), "{counts:?}");
}
