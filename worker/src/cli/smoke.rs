//! `worker queues smoke`: checks, on the project it points at (your own Google Cloud project, or
//! the emulator), what running on real Pub/Sub needs: the project and credentials found, queues
//! set up ahead and used without create rights, large jobs, and the dead-letter backstop. It
//! works on a queue and a morgue of its own (`pubsub-jobs-smoke-<random>`), runs its jobs in an
//! in-process worker, prints what it found check by check, deletes what it created (unless
//! `--keep`), and exits 1 if any check failed. It needs `roles/pubsub.editor` (it creates and
//! deletes its own queue); on Google Cloud it costs a few cents of Pub/Sub traffic (about 30 MB).

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use pubsub_jobs::admin::morgue as morgue_tools;
use pubsub_jobs::broker::{Broker, PubSubBroker};
use pubsub_jobs::{
    Client, ClientConfig, Job, JobContext, JobError, Registry, RetryPolicy, Wait, Worker,
    WorkerConfig,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::common::client_config;
use super::GlobalArgs;

/// Deliveries before the smoke queue's dead-letter policy fires (Pub/Sub's minimum).
const SMOKE_DELIVERIES: u32 = 5;

/// The smoke test's job: it records that it ran, carries `pad`, and fails every time when
/// `fail` is set (3 executions, 1 s apart).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SmokeJob {
    key: String,
    pad: String,
    fail: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("the smoke job fails on purpose")]
struct SmokeFailure;

fn ran() -> std::sync::MutexGuard<'static, HashSet<String>> {
    static RAN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    RAN.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

impl Job for SmokeJob {
    const NAME: &'static str = "PubsubJobsSmokeJob";

    fn retry_policy() -> RetryPolicy {
        RetryPolicy::default().retry_on::<SmokeFailure>(Wait::fixed(Duration::from_secs(1)), 3)
    }

    async fn perform(&self, _ctx: &JobContext) -> Result<(), JobError> {
        ran().insert(self.key.clone());
        if self.fail {
            return Err(SmokeFailure.into());
        }
        Ok(())
    }
}

/// What the checks found.
#[derive(Default)]
struct Findings {
    failed: usize,
}

impl Findings {
    fn report(&mut self, what: &str, outcome: Result<String, String>) {
        match outcome {
            Ok(found) => println!("PASS  {what}: {found}"),
            Err(why) => {
                self.failed += 1;
                println!("FAIL  {what}: {why}");
            }
        }
    }
}

/// Waits until `cond` holds, or `within` passes.
async fn until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cond()
}

/// Waits for a morgue entry whose job id is `id`; returns its reason.
async fn dead(client: &Client, id: &str, within: Duration) -> Result<String, String> {
    let deadline = Instant::now() + within;
    loop {
        let listing = morgue_tools::list(client, 100)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(e) = listing
            .entries
            .iter()
            .find(|e| e.record.job_id.as_deref() == Some(id))
        {
            return Ok(e.record.error.clone());
        }
        if Instant::now() >= deadline {
            return Err(format!("not in the morgue after {} s", within.as_secs()));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn job(key: &str, bytes: usize, fail: bool) -> SmokeJob {
    SmokeJob {
        key: key.to_string(),
        pad: "x".repeat(bytes),
        fail,
    }
}

pub(crate) async fn run(g: &GlobalArgs, keep: bool) -> anyhow::Result<()> {
    let base = client_config(g)?;
    let queue = format!("pubsub-jobs-smoke-{:08x}", rand::random::<u32>());
    let config = ClientConfig {
        morgue_queue: format!("{queue}-morgue"),
        max_delivery_attempts: Some(SMOKE_DELIVERIES),
        create_queues: true,
        ..base
    };
    let mut found = Findings::default();

    // 3. The project and the credentials.
    let admin = match Client::connect(config.clone()).await {
        Ok(c) => c,
        Err(e) => {
            found.report("project and credentials", Err(e.to_string()));
            anyhow::bail!("cannot connect; nothing else was checked");
        }
    };
    let target = match &config.emulator_host {
        Some(h) => format!("the emulator at {h}"),
        None => "Google Cloud with Application Default Credentials".to_string(),
    };
    found.report(
        "project and credentials",
        Ok(format!(
            "project {:?} on {target}",
            admin.config().project_id
        )),
    );

    // 1. Set up ahead, then used without create rights.
    let setup = async {
        admin.setup_queue(&queue).await?;
        admin.setup_morgue().await?;
        pubsub_jobs::admin::verify(&admin, std::slice::from_ref(&queue)).await
    };
    match setup.await {
        Ok(verdicts) => {
            let problems: Vec<String> = verdicts
                .iter()
                .flat_map(|v| {
                    v.problems
                        .iter()
                        .map(move |p| format!("{}: {p}", v.subscription))
                })
                .collect();
            found.report(
                "queues setup and verify",
                if problems.is_empty() {
                    Ok(format!(
                        "{queue}, {queue}.scheduled and {} as setup makes them (dead-letter policy after {SMOKE_DELIVERIES} deliveries)",
                        config.morgue_queue
                    ))
                } else {
                    Err(problems.join("; "))
                },
            );
        }
        Err(e) => {
            found.report("queues setup and verify", Err(e.to_string()));
            anyhow::bail!("cannot set the smoke queue up; nothing else was checked");
        }
    }
    let least = Client::connect(ClientConfig {
        create_queues: false,
        ..config.clone()
    })
    .await?;
    let missing = format!("{queue}-missing");
    let refused = job("missing", 10, false)
        .set()
        .queue(&missing)
        .perform_later(&least)
        .await;
    found.report(
        "a missing queue without create rights",
        match refused {
            Err(e @ pubsub_jobs::Error::QueueMissing { .. }) => Ok(e.to_string()),
            Err(e) => Err(format!("another error: {e}")),
            Ok(_) => Err(format!(
                "the job was published to {missing:?}, which should not exist"
            )),
        },
    );

    let stop = CancellationToken::new();
    let mut wc = WorkerConfig::new(queue.clone());
    wc.shutdown_timeout = Duration::from_secs(5);
    let registry = Registry::new().register::<SmokeJob>();
    let worker = tokio::spawn(
        Worker::new(least.clone(), wc)
            .with_registry(registry)
            .run(stop.clone()),
    );
    let small = job("small", 100, false);
    let outcome = match small
        .clone()
        .set()
        .queue(&queue)
        .perform_later(&least)
        .await
    {
        Ok(_) if until(Duration::from_secs(60), || ran().contains("small")).await => {
            Ok("enqueued and run with PUBSUB_CREATE_QUEUES=false (no admin call)".to_string())
        }
        Ok(_) => Err("enqueued, but it did not run within 60 s".to_string()),
        Err(e) => Err(e.to_string()),
    };
    found.report("a job without create rights", outcome);

    // 4. Large jobs: several in one pull, and one near the limit that dies.
    let bigs: Vec<SmokeJob> = (0..5)
        .map(|i| job(&format!("big-{i}"), 3_000_000, false))
        .collect();
    let mut enqueued = true;
    for b in &bigs {
        if let Err(e) = b.clone().set().queue(&queue).perform_later(&least).await {
            found.report("large jobs", Err(e.to_string()));
            enqueued = false;
            break;
        }
    }
    if enqueued {
        let all = || bigs.iter().all(|b| ran().contains(&b.key));
        found.report(
            "large jobs",
            if until(Duration::from_secs(120), all).await {
                Ok("5 jobs of 3 MB ran (15 MB, more than a 10 MiB response)".to_string())
            } else {
                Err("not all of 5 jobs of 3 MB ran within 120 s".to_string())
            },
        );
    }
    let huge = job("huge", 9_900_000, true);
    let outcome = match huge.set().queue(&queue).perform_later(&least).await {
        Ok(id) => dead(&admin, &id.to_string(), Duration::from_secs(120))
            .await
            .map(|why| format!("a 9.9 MB job that always fails is in the morgue: {why}")),
        Err(e) => Err(e.to_string()),
    };
    found.report("a job near the size limit", outcome);
    stop.cancel();
    let _ = worker.await;

    // 5. The dead-letter backstop: deliveries that end without an outcome.
    let broker = PubSubBroker::connect(
        &admin.config().project_id,
        config.emulator_host.as_deref(),
        config.timeout,
    )
    .await?;
    let outcome = async {
        let id = job("crash", 100, false)
            .set()
            .queue(&queue)
            .perform_later(&least)
            .await
            .map_err(|e| e.to_string())?;
        let sub = admin.resource_name(&queue);
        let mut deliveries = 0;
        let deadline = Instant::now() + Duration::from_secs(120);
        while deliveries < SMOKE_DELIVERIES && Instant::now() < deadline {
            let got = broker
                .pull(&sub, 10, Duration::from_secs(2))
                .await
                .map_err(|e| e.to_string())?;
            // Deliveries elsewhere count too (on the emulator, to the streams of the worker
            // stopped above): it may be in the morgue already.
            if got.is_empty() && dead(&admin, &id.to_string(), Duration::ZERO).await.is_ok() {
                break;
            }
            let ids: Vec<String> = got.into_iter().map(|d| d.ack_id).collect();
            deliveries += ids.len() as u32;
            if !ids.is_empty() {
                broker
                    .modify_ack_deadline(&sub, ids, 0)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        // The next delivery attempt moves it.
        let _ = broker.pull(&sub, 10, Duration::from_secs(5)).await;
        dead(&admin, &id.to_string(), Duration::from_secs(60))
            .await
            .map(|why| format!("released {deliveries} time(s) by this check, in the morgue: {why}"))
            .map_err(|e| {
                let grants = if config.emulator_host.is_none() {
                    " (on Google Cloud: grant Pub/Sub's service agent roles/pubsub.publisher on \
                     the morgue topic and roles/pubsub.subscriber on the queue's subscription; \
                     `worker queues setup --print-gcloud` prints the commands)"
                } else {
                    ""
                };
                format!("{e}{grants}")
            })
    };
    found.report("the dead-letter backstop", outcome.await);

    if keep {
        println!(
            "kept {queue}, {queue}.scheduled and {} (delete them with gcloud when done)",
            config.morgue_queue
        );
    } else {
        for name in [
            admin.resource_name(&queue),
            admin.scheduled_resource_name(&queue),
            admin.resource_name(&config.morgue_queue),
        ] {
            if let Err(e) = broker.delete_pair(&name).await {
                println!("could not delete {name:?}: {e}");
            }
        }
    }
    if found.failed > 0 {
        anyhow::bail!("{} check(s) failed", found.failed);
    }
    println!("all checks passed");
    Ok(())
}
