//! The worker against the real Pub/Sub emulator: enqueue -> pull -> lease -> dispatch -> perform
//! -> ack / retry / morgue.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use pubsub_jobs::broker::OutboundMessage;
use pubsub_jobs::envelope::Envelope;
use pubsub_jobs::{Error, Job};
use support::*;

const LONG: Duration = Duration::from_secs(60);

async fn setup() -> (pubsub_jobs::Client, String) {
    init_logging();
    (client().await, unique("q"))
}

/// The one morgue record of job `id` (class `class`, from `queue`), dead after its 3 executions.
async fn the_dead_job(
    client: &pubsub_jobs::Client,
    id: uuid::Uuid,
    class: &str,
    queue: &str,
) -> pubsub_jobs::morgue::MorgueRecord {
    let mut dead = morgue_records(client, 1, LONG).await;
    assert_eq!(dead.len(), 1, "nothing reached the morgue");
    let r = dead.remove(0);
    assert_eq!(r.job_id.as_deref(), Some(id.to_string().as_str()));
    assert_eq!(r.job_class.as_deref(), Some(class));
    assert_eq!(r.source_queue, queue);
    assert_eq!(r.executions, Some(3));
    r
}

/// Nothing is left on the queue: a pull finds no message within `within`.
async fn assert_queue_empty(client: &pubsub_jobs::Client, queue: &str, within: Duration) {
    let sub = client.resource_name(queue);
    let broker = raw_broker().await;
    let mut stream = broker
        .subscribe(
            &sub,
            pubsub_jobs::broker::StreamOptions {
                ack_deadline: Duration::from_secs(10),
                max_outstanding: 10,
            },
        )
        .await
        .unwrap();
    let got = tokio::time::timeout(within, stream.next()).await;
    stream.close().await;
    if let Ok(Some(d)) = got {
        panic!(
            "queue {queue} still holds a message: {}",
            String::from_utf8_lossy(&d.data)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enqueue_run_ack_exactly_once() {
    let (client, q) = setup().await;
    let prefix = unique("once");
    let jobs: Vec<Probe> = (0..20)
        .map(|i| Probe::new(&format!("{prefix}-{i}"), Mode::Ok))
        .collect();
    let ids = client.perform_all_later_on(&q, jobs).await.unwrap();
    assert_eq!(ids.len(), 20);
    let w = start_worker(&client, worker_config(&q));
    assert!(
        wait_until(LONG, || keys_run(&prefix) == 20).await,
        "ran {} of 20",
        keys_run(&prefix)
    );
    let summary = w.stop().await;
    assert_eq!(summary.succeeded, 20);
    assert_queue_empty(&client, &q, Duration::from_secs(3)).await;
    assert!(keys_run_twice(&prefix).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_after_the_wait_then_success() {
    let (client, q) = setup().await;
    let key = unique("retry");
    Probe::new(&key, Mode::FailFirst(1))
        .set()
        .queue(&q)
        .perform_later(&client)
        .await
        .unwrap();
    let w = start_worker(&client, worker_config(&q));
    assert!(wait_until(LONG, || run_count(&key) == 2).await);
    let log = run_log(&key);
    assert_eq!(log.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2]);
    let gap = log[1].1 - log[0].1;
    assert!(
        gap >= Duration::from_secs(1),
        "retried after {gap:?}, before the 1 s wait"
    );
    let summary = w.stop().await;
    assert_eq!(
        (summary.retried, summary.succeeded, summary.morgued),
        (1, 1, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_failures_go_to_the_morgue_with_the_error() {
    let (client, q) = setup().await;
    let key = unique("dead");
    let id = Probe::new(&key, Mode::FailFirst(99))
        .set()
        .queue(&q)
        .perform_later(&client)
        .await
        .unwrap();
    let w = start_worker(&client, worker_config(&q));
    let r = &the_dead_job(&client, id, "Probe", &q).await;
    assert!(r.error.contains("probe failed on purpose"), "{}", r.error);
    let env = Envelope::decode(&r.body, &HashMap::new()).unwrap();
    assert_eq!(env.executions, 3);
    assert!(env.last_error.unwrap().contains("probe failed on purpose"));
    assert_eq!(run_count(&key), 3);
    let summary = w.stop().await;
    assert_eq!(
        (summary.failed, summary.retried, summary.morgued),
        (3, 2, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn discard_on_acks_without_retry_or_morgue() {
    let (client, q) = setup().await;
    let key = unique("discard");
    Probe::new(&key, Mode::Discard)
        .set()
        .queue(&q)
        .perform_later(&client)
        .await
        .unwrap();
    let w = start_worker(&client, worker_config(&q));
    assert!(wait_until(LONG, || run_count(&key) == 1).await);
    assert!(morgue_records(&client, 1, Duration::from_secs(3))
        .await
        .is_empty());
    let summary = w.stop().await;
    assert_eq!(
        (summary.discarded, summary.retried, summary.morgued),
        (1, 0, 0)
    );
    assert_eq!(run_count(&key), 1);
    assert_queue_empty(&client, &q, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_that_cannot_run_go_to_the_morgue_and_the_worker_keeps_running() {
    let (client, q) = setup().await;
    client.ensure_queue(&q).await.unwrap();
    let broker = raw_broker().await;
    let unknown = Envelope::new("NoSuchJob", &q, serde_json::json!({}));
    let bad_args = Envelope::new(
        "Probe",
        &q,
        serde_json::json!({"key": 5, "sleep_ms": 0, "mode": "Ok"}),
    );
    let mut newer =
        serde_json::to_value(Envelope::new("Probe", &q, serde_json::json!({}))).unwrap();
    newer["format_version"] = 7.into();
    let bodies: Vec<Vec<u8>> = vec![
        b"{not json".to_vec(),
        vec![0xff, 0x00, 0x13],
        unknown.to_body(),
        bad_args.to_body(),
        serde_json::to_vec(&newer).unwrap(),
    ];
    let msgs: Vec<OutboundMessage> = bodies
        .iter()
        .map(|b| OutboundMessage {
            data: b.clone(),
            attributes: HashMap::new(),
        })
        .collect();
    broker
        .publish(&client.resource_name(&q), &msgs)
        .await
        .unwrap();
    let w = start_worker(&client, worker_config(&q));
    let dead = morgue_records(&client, 5, LONG).await;
    let mut reasons: Vec<String> = dead.iter().map(|r| r.error.clone()).collect();
    reasons.sort();
    assert_eq!(dead.len(), 5, "{reasons:?}");
    let has = |s: &str| reasons.iter().any(|r| r.contains(s));
    assert!(has("body is not JSON"), "{reasons:?}");
    assert!(has("unknown job class \"NoSuchJob\""), "{reasons:?}");
    assert!(
        has("arguments for job class Probe do not deserialize: field `key`"),
        "{reasons:?}"
    );
    assert!(has("format version 7 is newer"), "{reasons:?}");
    for r in &dead {
        assert!(
            bodies.contains(&r.body),
            "the morgue keeps the original body"
        );
        assert_eq!(r.source_queue, q);
    }
    // Still running: a good job after the bad ones runs.
    let key = unique("after-bad");
    Probe::new(&key, Mode::Ok)
        .set()
        .queue(&q)
        .perform_later(&client)
        .await
        .unwrap();
    assert!(wait_until(LONG, || run_count(&key) == 1).await);
    let summary = w.stop().await;
    assert_eq!((summary.morgued, summary.succeeded), (5, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scheduled_job_does_not_run_before_its_time() {
    let (client, q) = setup().await;
    let key = unique("later");
    let w = start_worker(&client, worker_config(&q));
    let enqueued = Instant::now();
    Probe::new(&key, Mode::Ok)
        .set()
        .wait(Duration::from_secs(4))
        .queue(&q)
        .perform_later(&client)
        .await
        .unwrap();
    assert!(wait_until(LONG, || run_count(&key) == 1).await);
    let ran_after = run_log(&key)[0].1 - enqueued;
    assert!(
        ran_after >= Duration::from_secs(4),
        "ran after {ran_after:?}, before its time"
    );
    let summary = w.stop().await;
    assert_eq!(summary.succeeded, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scheduled_jobs_do_not_delay_due_ones() {
    let (client, q) = setup().await;
    let later_prefix = unique("parked");
    let due_prefix = unique("due");
    let at = Utc::now() + chrono::Duration::minutes(10);
    let parked: Vec<Envelope> = (0..500)
        .map(|i| {
            let mut e = Envelope::new(
                "Probe",
                &q,
                serde_json::to_value(Probe::new(&format!("{later_prefix}-{i}"), Mode::Ok)).unwrap(),
            );
            e.scheduled_at = Some(at);
            e
        })
        .collect();
    client.submit_all(parked).await.unwrap();
    let due: Vec<Probe> = (0..100)
        .map(|i| Probe::new(&format!("{due_prefix}-{i}"), Mode::Ok))
        .collect();
    let mut config = worker_config(&q);
    config.concurrency = 20;
    let w = start_worker(&client, config);
    client.perform_all_later_on(&q, due).await.unwrap();
    assert!(
        wait_until(LONG, || keys_run(&due_prefix) == 100).await,
        "only {} of 100 due jobs ran",
        keys_run(&due_prefix)
    );
    assert_eq!(
        keys_run(&later_prefix),
        0,
        "a job scheduled 10 minutes ahead ran early"
    );
    let summary = w.stop().await;
    assert_eq!(summary.succeeded, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_longer_than_the_ack_deadline_runs_once() {
    init_logging();
    // Subscriptions of this client get a 10 s ack deadline.
    let cfg = pubsub_jobs::ClientConfig {
        ack_deadline: Duration::from_secs(10),
        ..client().await.config().clone()
    };
    let client = pubsub_jobs::Client::connect(cfg).await.unwrap();
    let q = unique("long");
    let key = unique("long");
    LongProbe {
        key: key.clone(),
        sleep_ms: 25_000,
    }
    .set()
    .queue(&q)
    .perform_later(&client)
    .await
    .unwrap();
    let mut config = worker_config(&q);
    config.ack_deadline = Duration::from_secs(10);
    config.shutdown_timeout = Duration::from_secs(30);
    // Two workers: if the lease lapsed, the other one would get the message and run it again.
    let a = start_worker(&client, config.clone());
    let b = start_worker(&client, config);
    // Both workers keep pulling for the whole run.
    assert!(
        wait_until(LONG, || finished(&key)).await,
        "the 25 s job did not finish"
    );
    let done = a.stop().await.succeeded + b.stop().await.succeeded;
    assert_eq!(done, 1, "the 25 s job did not complete exactly once");
    assert_eq!(run_count(&key), 1, "the 25 s job ran more than once");
    assert_queue_empty(&client, &q, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panic_is_a_failure_and_the_worker_survives() {
    let (client, q) = setup().await;
    let key = unique("panic");
    Probe::new(&key, Mode::Panic)
        .set()
        .queue(&q)
        .perform_later(&client)
        .await
        .unwrap();
    let w = start_worker(&client, worker_config(&q));
    let dead = morgue_records(&client, 1, LONG).await;
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].error.contains("probe panics on purpose"),
        "{}",
        dead[0].error
    );
    assert_eq!(dead[0].executions, Some(2));
    assert_eq!(run_count(&key), 2);
    let after = unique("after-panic");
    Probe::new(&after, Mode::Ok)
        .set()
        .queue(&q)
        .perform_later(&client)
        .await
        .unwrap();
    assert!(wait_until(LONG, || run_count(&after) == 1).await);
    w.stop().await;
}

/// A job type whose `Deserialize` panics: the worker decodes arguments outside `perform`.
#[derive(Debug, serde::Serialize)]
struct PanicsOnDecode {}

impl<'de> serde::Deserialize<'de> for PanicsOnDecode {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        panic!("PanicsOnDecode's Deserialize panics on purpose")
    }
}

impl Job for PanicsOnDecode {
    const NAME: &'static str = "PanicsOnDecode";
    async fn perform(&self, _: &pubsub_jobs::JobContext) -> Result<(), pubsub_jobs::JobError> {
        Ok(())
    }
}
pubsub_jobs::register_job!(PanicsOnDecode);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_message_wedges_the_worker_hostile_counters_and_panics_in_dispatch_end_in_the_morgue() {
    let (client, q) = setup().await;
    client.ensure_queue(&q).await.unwrap();
    let probe = |key: &str, mode: Mode| serde_json::to_value(Probe::new(key, mode)).unwrap();
    // Counters at u32::MAX: the next attempt, the failure count and Rails' sum overflowed.
    let mut spent = Envelope::new("Probe", &q, probe(&unique("max-fallback"), Mode::Unmatched));
    spent.executions = u32::MAX;
    spent
        .exception_executions
        .insert("default".into(), u32::MAX);
    let mut spent_rule = Envelope::new(
        "Probe",
        &q,
        probe(&unique("max-rule"), Mode::FailFirst(u32::MAX)),
    );
    spent_rule.executions = u32::MAX;
    spent_rule
        .exception_executions
        .insert(std::any::type_name::<ProbeError>().into(), u32::MAX);
    let rails = serde_json::json!({
        "job_class": "Probe", "job_id": uuid::Uuid::new_v4().to_string(), "queue_name": q,
        "arguments": [{"key": unique("max-rails"), "sleep_ms": 0, "mode": "Unmatched",
                       "_aj_symbol_keys": ["key", "sleep_ms", "mode"]}],
        "executions": 4294967295u64,
        "exception_executions": {"[A]": 4294967295u64, "[B]": 4294967295u64},
    });
    let panics = Envelope::new("PanicsOnDecode", &q, serde_json::json!({}));
    let bodies = [
        spent.to_body(),
        spent_rule.to_body(),
        serde_json::to_vec(&rails).unwrap(),
        panics.to_body(),
    ];
    let msgs: Vec<OutboundMessage> = bodies
        .iter()
        .map(|b| OutboundMessage {
            data: b.clone(),
            attributes: HashMap::new(),
        })
        .collect();
    raw_broker()
        .await
        .publish(&client.resource_name(&q), &msgs)
        .await
        .unwrap();
    let w = start_worker(&client, worker_config(&q));
    let dead = morgue_records(&client, 4, LONG).await;
    let reasons: Vec<&str> = dead.iter().map(|r| r.error.as_str()).collect();
    assert_eq!(dead.len(), 4, "{reasons:?}");
    let spent_ids = [spent.job_id, spent_rule.job_id].map(|id| id.to_string());
    for r in &dead {
        match r.job_class.as_deref() {
            Some("Probe") => {
                assert!(r.error.contains("retries spent"), "{}", r.error);
                assert_eq!(r.executions, Some(u32::MAX), "counters saturate");
            }
            Some("PanicsOnDecode") => {
                assert!(
                    r.error
                        .contains("the worker panicked while handling this message")
                        && r.error.contains("Deserialize panics on purpose"),
                    "{}",
                    r.error
                );
                assert_eq!(r.job_id, Some(panics.job_id.to_string()));
                assert_eq!(r.body, panics.to_body(), "the original body is kept");
            }
            other => panic!("unexpected morgue record for {other:?}: {}", r.error),
        }
    }
    for id in &spent_ids {
        assert!(
            dead.iter().any(|r| r.job_id.as_ref() == Some(id)),
            "{id} morgued"
        );
    }
    // Nothing is held: every lease was given up with its outcome.
    assert!(
        wait_until(LONG, || w.stats.leased() == 0).await,
        "still leased: {}",
        w.stats.leased()
    );
    // And the worker still runs jobs.
    let after = unique("after-wedge");
    Probe::new(&after, Mode::Ok)
        .set()
        .queue(&q)
        .perform_later(&client)
        .await
        .unwrap();
    assert!(wait_until(LONG, || run_count(&after) == 1).await);
    assert!(wait_until(LONG, || w.stats.leased() == 0).await);
    let summary = w.stop().await;
    assert_eq!((summary.morgued, summary.succeeded), (4, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_timeout_is_a_failure() {
    let (client, q) = setup().await;
    let key = unique("timeout");
    let mut probe = Probe::new(&key, Mode::Ok);
    probe.sleep_ms = 60_000;
    probe.set().queue(&q).perform_later(&client).await.unwrap();
    let w = start_worker(&client, worker_config(&q));
    let dead = morgue_records(&client, 1, LONG).await;
    assert_eq!(dead.len(), 1);
    assert!(dead[0].error.contains("JobTimeout"), "{}", dead[0].error);
    assert!(
        dead[0].error.contains("timed out after 3s"),
        "{}",
        dead[0].error
    );
    assert_eq!(run_count(&key), 2);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_share_the_work_and_run_no_job_twice() {
    let (client, q) = setup().await;
    let prefix = unique("shared");
    let jobs: Vec<Probe> = (0..200)
        .map(|i| {
            let mut p = Probe::new(&format!("{prefix}-{i}"), Mode::Ok);
            p.sleep_ms = 20;
            p
        })
        .collect();
    let mut config = worker_config(&q);
    config.concurrency = 5;
    let a = start_worker(&client, config.clone());
    let b = start_worker(&client, config);
    // Both pulling before the jobs arrive (the emulator hands out batches to whoever is there).
    assert!(
        wait_until(LONG, || a.stats.open_streams() == 2
            && b.stats.open_streams() == 2)
        .await
    );
    client.perform_all_later_on(&q, jobs).await.unwrap();
    assert!(
        wait_until(LONG, || keys_run(&prefix) == 200).await,
        "ran {} of 200",
        keys_run(&prefix)
    );
    let (sa, sb) = (a.stop().await, b.stop().await);
    assert_eq!(
        keys_run_twice(&prefix),
        Vec::<String>::new(),
        "jobs ran twice"
    );
    assert_eq!(sa.succeeded + sb.succeeded, 200);
    assert!(
        sa.succeeded > 0 && sb.succeeded > 0,
        "one worker did all the work: {sa:?} {sb:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_enqueues_fail_early_with_clear_errors() {
    let (client, q) = setup().await;
    let probe = Probe::new("never", Mode::Ok);
    let err = probe
        .set()
        .queue("bad queue!")
        .perform_later(&client)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidQueueName { .. }), "{err}");
    assert!(err.to_string().contains("\"bad queue!\""), "{err}");
    let err = probe
        .set()
        .queue("1starts-with-digit")
        .perform_later(&client)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("must start with a letter"),
        "{err}"
    );
    let err = probe
        .set()
        .queue(&q)
        .wait(Duration::from_secs(8 * 24 * 3600))
        .perform_later(&client)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DelayTooLong { .. }), "{err}");
    let mut huge = Probe::new(&"x".repeat(11_000_000), Mode::Ok);
    huge.sleep_ms = 0;
    let err = huge
        .set()
        .queue(&q)
        .perform_later(&client)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PayloadTooLarge { .. }), "{err}");
    assert!(err.to_string().contains("Probe"), "{err}");
    let err = pubsub_jobs::Worker::new(client.clone(), worker_config("no spaces allowed"))
        .run(Default::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("\"no spaces allowed\""), "{err}");
    // Nothing was created for the refused queues.
    assert!(!raw_broker()
        .await
        .subscription_exists(&client.resource_name(&q))
        .await
        .unwrap());
}

/// A job that carries `pad` and records its runs; it fails every time when `fail` is set
/// (Probe's policy: 3 executions, 1 s apart).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Blob {
    key: String,
    pad: String,
    fail: bool,
}

impl Job for Blob {
    const NAME: &'static str = "Blob";

    fn retry_policy() -> pubsub_jobs::RetryPolicy {
        Probe::retry_policy()
    }

    async fn perform(&self, ctx: &pubsub_jobs::JobContext) -> Result<(), pubsub_jobs::JobError> {
        Probe::new(&self.key, Mode::Ok).perform(ctx).await?;
        if self.fail {
            return Err(ProbeError.into());
        }
        Ok(())
    }
}
pubsub_jobs::register_job!(Blob);

fn blob(key: String, bytes: usize, fail: bool) -> Blob {
    Blob {
        key,
        pad: "x".repeat(bytes),
        fail,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_jobs_run_when_one_pull_holds_many_of_them() {
    let (client, q) = setup().await;
    let prefix = unique("big");
    let n = 500;
    for chunk in (0..n).collect::<Vec<_>>().chunks(10) {
        let jobs: Vec<Blob> = chunk
            .iter()
            .map(|i| blob(format!("{prefix}-{i}"), 900_000, false))
            .collect();
        client.perform_all_later_on(&q, jobs).await.unwrap();
    }
    // One response holds more than the 10 MiB gcloud-pubsub decodes (it failed there).
    let broker = raw_broker().await;
    let sub = client.resource_name(&q);
    let got = broker.pull(&sub, 40, LONG).await.unwrap();
    let bytes: usize = got.iter().map(|d| d.data.len()).sum();
    assert!(
        got.len() > 1 && bytes > 10 * 1024 * 1024,
        "one pull gave {} messages, {bytes} bytes",
        got.len()
    );
    broker
        .modify_ack_deadline(&sub, got.into_iter().map(|d| d.ack_id).collect(), 0)
        .await
        .unwrap();
    let w = start_worker(&client, worker_config(&q));
    assert!(
        wait_until(Duration::from_secs(120), || keys_run(&prefix) == n).await,
        "ran {} of {n}",
        keys_run(&prefix)
    );
    let summary = w.stop().await;
    assert!(summary.succeeded >= n as u64, "{summary:?}");
    assert_eq!(summary.morgued, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_near_the_size_limit_that_always_fails_reaches_the_morgue() {
    let (client, q) = setup().await;
    let key = unique("huge");
    let id = blob(key.clone(), 9_900_000, true)
        .set()
        .queue(&q)
        .perform_later(&client)
        .await
        .unwrap();
    let w = start_worker(&client, worker_config(&q));
    let r = &the_dead_job(&client, id, "Blob", &q).await;
    assert!(r.error.contains("probe failed on purpose"), "{}", r.error);
    assert_eq!(run_count(&key), 3);
    let summary = w.stop().await;
    assert_eq!((summary.retried, summary.morgued), (2, 1), "{summary:?}");
    assert!(morgue_records(&client, 1, Duration::from_secs(3))
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_morgue_lists_large_dead_jobs() {
    let (client, _q) = setup().await;
    client.ensure_morgue().await.unwrap();
    let broker = raw_broker().await;
    let big = |i: usize| OutboundMessage {
        data: vec![b'a' + i as u8; 6_000_000],
        attributes: HashMap::from([("source_queue".to_string(), "elsewhere".to_string())]),
    };
    let morgue = client.resource_name(client.morgue_queue());
    for i in 0..2 {
        broker.publish(&morgue, &[big(i)]).await.unwrap();
    }
    let listed = pubsub_jobs::admin::morgue::list(&client, 500)
        .await
        .unwrap();
    assert_eq!(listed.entries.len(), 2);
    assert_eq!(listed.bodies_dropped, 0);
    assert!(listed
        .entries
        .iter()
        .all(|e| e.record.body.len() == 6_000_000));
    // A listing holds at most a page of bodies, and lists everything.
    for i in 2..14 {
        broker.publish(&morgue, &[big(i)]).await.unwrap();
    }
    let listed = pubsub_jobs::admin::morgue::list(&client, 500)
        .await
        .unwrap();
    assert_eq!(listed.entries.len(), 14);
    assert!(listed
        .entries
        .iter()
        .all(|e| e.record.source_queue == "elsewhere"));
    let held: usize = listed.entries.iter().map(|e| e.record.body.len()).sum();
    let kept = listed
        .entries
        .iter()
        .filter(|e| !e.record.body.is_empty())
        .count();
    assert_eq!(kept + listed.bodies_dropped, 14);
    assert!(
        listed.bodies_dropped > 0 && held < pubsub_jobs::admin::morgue::PAGE_BYTES + 6_000_000,
        "held {held} bytes, {} bodies dropped",
        listed.bodies_dropped
    );
    // Listing leaves them all there.
    assert_eq!(morgue_records(&client, 14, LONG).await.len(), 14);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_never_settled_is_dead_lettered_into_the_morgue_as_a_record() {
    init_logging();
    let morgue = unique("morgue");
    let config = pubsub_jobs::ClientConfig {
        project_id: "test-project".into(),
        morgue_queue: morgue.clone(),
        emulator_host: Some(emulator_host().to_string()),
        max_delivery_attempts: Some(5),
        ..pubsub_jobs::ClientConfig::default()
    };
    let client = pubsub_jobs::Client::connect(config).await.unwrap();
    let q = unique("q");
    let key = unique("never-settled");
    let id = Probe::new(&key, Mode::Ok)
        .set()
        .queue(&q)
        .perform_later(&client)
        .await
        .unwrap();
    // Five deliveries that end without an outcome (a worker that dies mid-job, five times).
    let broker = raw_broker().await;
    let sub = client.resource_name(&q);
    let mut deliveries = 0;
    let deadline = Instant::now() + LONG;
    while deliveries < 5 && Instant::now() < deadline {
        let got = broker.pull(&sub, 10, Duration::from_secs(2)).await.unwrap();
        deliveries += got.len();
        let ids = got.into_iter().map(|d| d.ack_id).collect::<Vec<_>>();
        if !ids.is_empty() {
            broker.modify_ack_deadline(&sub, ids, 0).await.unwrap();
        }
    }
    assert_eq!(deliveries, 5);
    let settings = broker.subscription_settings(&sub).await.unwrap().unwrap();
    assert_eq!(
        settings.dead_letter,
        Some((client.resource_name(&morgue), 5))
    );
    // The sixth delivery does not happen: the message moves to the morgue instead.
    assert!(broker
        .pull(&sub, 10, Duration::from_secs(3))
        .await
        .unwrap()
        .is_empty());
    let dead = morgue_records(&client, 1, LONG).await;
    assert_eq!(dead.len(), 1, "nothing was dead-lettered");
    let r = &dead[0];
    assert!(
        r.error.starts_with("delivered 5 times without an outcome"),
        "{}",
        r.error
    );
    assert_eq!(r.job_id.as_deref(), Some(id.to_string().as_str()));
    assert_eq!(r.job_class.as_deref(), Some("Probe"));
    assert_eq!(r.source_queue, q);
    assert_eq!(r.executions, Some(0));
}

/// The application's database pool, given to the worker as state.
struct AppDb {
    pool: sqlx::PgPool,
    table: String,
}

/// Writes its id into the application's database through the worker's state.
#[derive(serde::Serialize, serde::Deserialize)]
struct RecordInApp {
    id: i64,
}

impl Job for RecordInApp {
    const NAME: &'static str = "RecordInApp";
    const STATE: &'static [pubsub_jobs::StateType] = &[pubsub_jobs::StateType::of::<AppDb>()];
    async fn perform(&self, ctx: &pubsub_jobs::JobContext) -> Result<(), pubsub_jobs::JobError> {
        let db = ctx.state::<AppDb>()?;
        sqlx::query(&format!(
            "INSERT INTO {} (id) VALUES ($1) ON CONFLICT DO NOTHING",
            db.table
        ))
        .bind(self.id)
        .execute(&db.pool)
        .await?;
        Ok(())
    }
}

#[tokio::test]
async fn jobs_reach_the_applications_database_pool_through_the_workers_state() {
    let (client, q) = setup().await;
    let pool = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
    let table = unique("app_rows").replace('-', "_");
    sqlx::query(&format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY)"))
        .execute(&pool)
        .await
        .unwrap();
    // Not in the inventory (every worker of this binary would need the state): its own registry.
    let registry = pubsub_jobs::Registry::new().register::<RecordInApp>();
    // Without the pool the worker refuses to start, naming the class and the type (a worker
    // that started anyway would return at once: its token is already cancelled).
    let stopped = tokio_util::sync::CancellationToken::new();
    stopped.cancel();
    let err = pubsub_jobs::Worker::new(client.clone(), worker_config(&q))
        .with_registry(registry.clone())
        .run(stopped)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::StateMissing { job_class: "RecordInApp", type_name } if type_name.ends_with("AppDb")),
        "{err}"
    );
    client
        .perform_all_later_on(&q, (1..=20).map(|id| RecordInApp { id }))
        .await
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = pubsub_jobs::Worker::new(client.clone(), worker_config(&q))
        .with_registry(registry)
        .state(AppDb {
            pool: pool.clone(),
            table: table.clone(),
        });
    let handle = tokio::spawn(worker.run(stop.clone()));
    let count = || async {
        sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let deadline = Instant::now() + LONG;
    while count().await < 20 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    let summary = handle.await.unwrap().unwrap();
    assert_eq!(count().await, 20, "every job wrote its row");
    assert_eq!(summary.failed, 0, "{summary:?}");
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&pool)
        .await
        .unwrap();
}

/// Tags every job with a tenant on enqueue and logs, around each execution and on each failure,
/// what it saw.
#[derive(Default)]
struct Audit {
    log: std::sync::Mutex<Vec<(uuid::Uuid, String)>>,
}

impl Audit {
    fn of(&self, id: uuid::Uuid) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|(i, _)| *i == id)
            .map(|(_, l)| l.clone())
            .collect()
    }
}

impl pubsub_jobs::Middleware for Audit {
    fn enqueue<'a>(
        &'a self,
        mut jobs: Vec<Envelope>,
        next: pubsub_jobs::middleware::EnqueueNext<'a>,
    ) -> pubsub_jobs::middleware::BoxFuture<'a, pubsub_jobs::Result<Vec<uuid::Uuid>>> {
        for j in &mut jobs {
            j.metadata.insert("tenant".into(), "acme".into());
        }
        next.run(jobs)
    }

    fn perform<'a>(
        &'a self,
        ctx: &'a pubsub_jobs::JobContext,
        next: pubsub_jobs::middleware::Next<'a>,
    ) -> pubsub_jobs::middleware::BoxFuture<'a, Result<(), pubsub_jobs::JobError>> {
        Box::pin(async move {
            let tenant = ctx.metadata().get("tenant").cloned().unwrap_or_default();
            let r = next.run(ctx).await;
            self.log.lock().unwrap().push((
                ctx.job_id,
                format!("run {} tenant={tenant} ok={}", ctx.attempt, r.is_ok()),
            ));
            r
        })
    }

    fn failed(&self, f: &pubsub_jobs::middleware::Failure<'_>) {
        use pubsub_jobs::middleware::FailureDecision::*;
        let decision = match f.decision {
            Retry { .. } => "retry",
            Discard => "discard",
            Morgue => "morgue",
            _ => "other",
        };
        self.log.lock().unwrap().push((
            f.job_id,
            format!(
                "failed {} {decision} tenant={}",
                f.attempt,
                f.metadata.get("tenant").map_or("", String::as_str)
            ),
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn middleware_tags_jobs_on_enqueue_and_sees_every_execution_and_failure_on_the_emulator() {
    let (client, q) = setup().await;
    let audit = std::sync::Arc::new(Audit::default());
    let client = client.with_middleware(audit.clone());
    let key = unique("mw");
    let ids = client
        .perform_all_later_on(
            &q,
            [
                Probe::new(&format!("{key}-retry"), Mode::FailFirst(1)),
                Probe::new(&format!("{key}-discard"), Mode::Discard),
                Probe::new(&format!("{key}-morgue"), Mode::Unmatched),
            ],
        )
        .await
        .unwrap();
    let w = start_worker(&client, worker_config(&q));
    let dead = morgue_records(&client, 1, LONG).await;
    assert!(
        wait_until(LONG, || audit.of(ids[0]).len() == 3).await,
        "{:?}",
        audit.of(ids[0])
    );
    let summary = w.stop().await;
    assert_eq!(
        (summary.succeeded, summary.discarded, summary.morgued),
        (1, 1, 1),
        "{summary:?}"
    );
    assert_eq!(
        audit.of(ids[0]),
        [
            "run 1 tenant=acme ok=false",
            "failed 1 retry tenant=acme",
            "run 2 tenant=acme ok=true"
        ]
    );
    assert_eq!(
        audit.of(ids[1]),
        ["run 1 tenant=acme ok=false", "failed 1 discard tenant=acme"]
    );
    assert_eq!(
        audit.of(ids[2]),
        [
            "run 1 tenant=acme ok=false",
            "failed 1 retry tenant=acme",
            "run 2 tenant=acme ok=false",
            "failed 2 morgue tenant=acme"
        ]
    );
    assert_eq!(dead.len(), 1);
    let body = Envelope::decode(&dead[0].body, &HashMap::new()).unwrap();
    assert_eq!(body.job_id, ids[2]);
    assert_eq!(
        body.metadata.get("tenant").map(String::as_str),
        Some("acme")
    );
}
