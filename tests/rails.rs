//! Rails -> Rust: jobs serialized by Rails' own ActiveJob (Debian's ruby-activejob, run as
//! `ruby tests/rails/serialize_jobs.rb`) and published to the emulator the way the Pub/Sub
//! ActiveJob adapters do, run by a Rust worker: keyword and positional arguments, Time / Symbol /
//! Duration arguments, a delayed job (the adapter's `timestamp` attribute), a job Rails had already
//! retried twice, and a GlobalID argument, which goes to the morgue naming it.

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pubsub_jobs::broker::OutboundMessage;
use pubsub_jobs::envelope::Wire;
use pubsub_jobs::{Job, JobContext, JobError, Registry};
use serde::{Deserialize, Serialize};
use support::*;

/// (case label, attempt, when it ran)
static RUNS: Mutex<Vec<(String, u32, DateTime<Utc>)>> = Mutex::new(Vec::new());

fn ran(label: impl Into<String>, ctx: &JobContext) {
    RUNS.lock()
        .unwrap()
        .push((label.into(), ctx.attempt, Utc::now()));
}

#[derive(Serialize, Deserialize)]
struct RailsKeywordJob {
    sleep_duration: f64,
    raise_error: bool,
}
impl Job for RailsKeywordJob {
    const NAME: &'static str = "RailsKeywordJob";
    async fn perform(&self, ctx: &JobContext) -> Result<(), JobError> {
        assert!(!self.raise_error);
        ran(format!("keywords:{}", self.sleep_duration), ctx);
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct RailsPositionalJob(u64, String);
impl Job for RailsPositionalJob {
    const NAME: &'static str = "RailsPositionalJob";
    async fn perform(&self, ctx: &JobContext) -> Result<(), JobError> {
        ran(format!("positional:{}:{}", self.0, self.1), ctx);
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct RailsTimeJob(DateTime<Utc>, String, u64);
impl Job for RailsTimeJob {
    const NAME: &'static str = "RailsTimeJob";
    async fn perform(&self, ctx: &JobContext) -> Result<(), JobError> {
        ran(
            format!("time:{}:{}:{}", self.0.to_rfc3339(), self.1, self.2),
            ctx,
        );
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct RailsGlobalIdJob(serde_json::Value);
impl Job for RailsGlobalIdJob {
    const NAME: &'static str = "RailsGlobalIdJob";
    async fn perform(&self, ctx: &JobContext) -> Result<(), JobError> {
        ran("globalid", ctx);
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("still failing")]
struct StillFailing;

#[derive(Serialize, Deserialize)]
struct RailsFailingJob(String);
impl Job for RailsFailingJob {
    const NAME: &'static str = "RailsFailingJob";
    async fn perform(&self, ctx: &JobContext) -> Result<(), JobError> {
        ran("failing", ctx);
        Err(StillFailing.into())
    }
}

#[derive(Deserialize)]
struct Serialized {
    case: String,
    body: String,
    attributes: HashMap<String, String>,
}

fn rails_jobs(queue: &str) -> Vec<Serialized> {
    let out = Command::new("ruby")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/rails/serialize_jobs.rb"
        ))
        .arg(queue)
        .output()
        .expect("ruby (Debian's ruby-activejob) runs");
    assert!(
        out.status.success(),
        "serialize_jobs.rb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn runs(prefix: &str) -> Vec<(u32, DateTime<Utc>)> {
    RUNS.lock()
        .unwrap()
        .iter()
        .filter(|(l, _, _)| l.starts_with(prefix))
        .map(|(_, a, t)| (*a, *t))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_serialized_by_rails_run_delay_continue_and_die_as_rails_would() {
    if !tools::ruby_activejob("jobs_serialized_by_rails_run_delay_continue_and_die_as_rails_would")
    {
        return;
    }
    let queue = unique("rails");
    let client = client().await;
    client.ensure_queue(&queue).await.unwrap();
    let jobs = rails_jobs(&queue);
    assert_eq!(jobs.len(), 7);
    let broker = raw_broker().await;
    for j in &jobs {
        broker
            .publish(
                &client.resource_name(&queue),
                &[OutboundMessage {
                    data: j.body.as_bytes().to_vec(),
                    attributes: j.attributes.clone(),
                }],
            )
            .await
            .expect("publish like the adapter");
    }
    let registry = Registry::new()
        .register::<RailsKeywordJob>()
        .register::<RailsPositionalJob>()
        .register::<RailsTimeJob>()
        .register::<RailsFailingJob>()
        .register::<RailsGlobalIdJob>();
    let worker = start_worker_with(&client, worker_config(&queue), Some(registry));

    let done = wait_until(Duration::from_secs(30), || {
        runs("positional:3:later").len() == 1 && runs("time:").len() == 1
    })
    .await;
    assert!(done, "runs so far: {:?}", RUNS.lock().unwrap());
    assert_eq!(
        runs("keywords:0.1"),
        runs("keywords:"),
        "keyword arguments mapped"
    );
    assert_eq!(runs("keywords:0.1").len(), 1);
    assert_eq!(runs("positional:7:seven").len(), 1, "positional arguments");
    assert_eq!(
        runs("time:2026-11-22T10:00:00+00:00:eur:3600").len(),
        1,
        "Time, Symbol and Duration arguments: {:?}",
        RUNS.lock().unwrap()
    );
    // Rails had run it twice: this is its third execution.
    assert_eq!(
        runs("positional:2:retried")
            .iter()
            .map(|(a, _)| *a)
            .collect::<Vec<_>>(),
        vec![3]
    );
    // The adapter's timestamp said 3 s after Ruby serialized it: not before.
    let (_, at) = runs("positional:3:later")[0];
    let scheduled: f64 = jobs
        .iter()
        .find(|j| j.case == "scheduled")
        .unwrap()
        .attributes["timestamp"]
        .parse()
        .unwrap();
    assert!(
        at.timestamp_millis() as f64 >= scheduled * 1000.0 - 1.0,
        "ran at {at}, due {scheduled}"
    );
    assert!(runs("globalid").is_empty(), "a GlobalID job never runs");

    let dead = morgue_records(&client, 2, Duration::from_secs(15)).await;
    assert_eq!(
        dead.len(),
        2,
        "the GlobalID job and the failing one are in the morgue"
    );
    let gid = jobs.iter().find(|j| j.case == "globalid").unwrap();
    let body: serde_json::Value = serde_json::from_str(&gid.body).unwrap();
    let g = dead
        .iter()
        .find(|d| d.job_class.as_deref() == Some("RailsGlobalIdJob"))
        .expect("the GlobalID job's morgue record names its class");
    assert_eq!(g.job_id.as_deref(), body["job_id"].as_str());
    assert!(
        g.error.contains("GlobalID") && g.error.contains("gid://shop/User/1"),
        "{}",
        g.error
    );
    assert_eq!(g.body, gid.body.as_bytes(), "the original bytes are kept");
    // Rails had failed it twice: its third failure, the first in Rust, spends the fallback rule.
    let f = dead
        .iter()
        .find(|d| d.job_class.as_deref() == Some("RailsFailingJob"))
        .expect("the failing job's morgue record");
    assert_eq!(
        runs("failing").iter().map(|(a, _)| *a).collect::<Vec<_>>(),
        vec![3],
        "one execution in Rust, its third"
    );
    assert!(f.error.contains("retries spent (3 failures"), "{}", f.error);
    let summary = worker.stop().await;
    assert_eq!(summary.succeeded, 5, "{summary:?}");
}

#[derive(Serialize, Deserialize)]
struct RustToRailsKeywordJob {
    invoice_id: u64,
    currency: String,
    tags: Vec<String>,
}
impl Job for RustToRailsKeywordJob {
    const NAME: &'static str = "RustToRailsKeywordJob";
    const WIRE: Wire = Wire::ActiveJob;
    async fn perform(&self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct RustToRailsPositionalJob(u64, String);
impl Job for RustToRailsPositionalJob {
    const NAME: &'static str = "RustToRailsPositionalJob";
    const WIRE: Wire = Wire::ActiveJob;
    async fn perform(&self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_a_rust_service_enqueues_with_the_activejob_wire_run_in_rails() {
    if !tools::ruby_activejob("jobs_a_rust_service_enqueues_with_the_activejob_wire_run_in_rails") {
        return;
    }
    let queue = unique("torails");
    // With metadata, under a key of ours that Rails ignores.
    let client = client().await.with_middleware(Tag("tenant", Some("acme")));
    let keyword = RustToRailsKeywordJob {
        invoice_id: 42,
        currency: "eur".into(),
        tags: vec!["a".into(), "b".into()],
    }
    .set()
    .queue(&queue)
    .perform_later(&client)
    .await
    .expect("enqueue");
    let positional = RustToRailsPositionalJob(7, "seven".into())
        .set()
        .queue(&queue)
        .perform_later(&client)
        .await
        .expect("enqueue");
    let out = Command::new("ruby")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/rails/execute_jobs.rb"
        ))
        .args([
            emulator_host(),
            &client.config().project_id,
            &client.resource_name(&queue),
            "2",
        ])
        .output()
        .expect("ruby runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "Rails could not run them: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let by_class = |c: &str| {
        lines
            .iter()
            .find(|l| l["class"] == c)
            .unwrap_or_else(|| panic!("{c} did not run in Rails: {stdout}"))
            .clone()
    };
    let k = by_class("RustToRailsKeywordJob");
    assert_eq!(k["job_id"], keyword.to_string());
    assert_eq!(k["queue"], queue.as_str());
    assert_eq!(k["executions"], 1, "Rails counts this execution");
    assert_eq!(
        k["kwargs"],
        serde_json::json!({"invoice_id": 42, "currency": "eur", "tags": ["a", "b"]}),
        "perform received the struct's fields as keyword arguments"
    );
    let p = by_class("RustToRailsPositionalJob");
    assert_eq!(p["job_id"], positional.to_string());
    assert_eq!(p["args"], serde_json::json!([7, "seven"]));
}
