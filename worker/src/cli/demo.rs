//! `worker demo`: the one-command tour. Starts a private emulator (unless `PUBSUB_EMULATOR_HOST`
//! or `PUBSUB_PROJECT_ID` points elsewhere; on a machine without the emulator or Java it says so
//! in one line and runs on the in-memory broker instead, labelled as such), runs two workers on a
//! fresh queue, enqueues MockJobs
//! at a steady rate (some fail once and retry, some always fail and end in the morgue), shows live
//! progress, prints a table per worker, and stops everything it started, also on Ctrl-C.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::SeedableRng;
use tokio_util::sync::CancellationToken;

use crate::mock_job::MockJob;
use pubsub_jobs::broker::MemoryBroker;
use pubsub_jobs::emulator::Emulator;
use pubsub_jobs::Job;
use pubsub_jobs::{Client, ClientConfig};
use pubsub_jobs::{Registry, Worker, WorkerConfig, WorkerStats, WorkerSummary};

/// Demo settings.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// MockJobs to enqueue.
    pub count: usize,
    /// Jobs per second.
    pub rate: f64,
    /// Workers to run.
    pub workers: usize,
    /// Longest MockJob sleep, seconds.
    pub max_sleep: f64,
    /// Share of jobs that always fail (and end in the morgue).
    pub fail_ratio: f64,
    /// Seconds between retries.
    pub retry_wait: f64,
    /// Give up after this long.
    pub deadline: Duration,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            count: 50,
            rate: 5.0,
            workers: 2,
            max_sleep: 2.0,
            fail_ratio: 0.2,
            retry_wait: 3.0,
            deadline: Duration::from_secs(300),
        }
    }
}

/// Runs the demo; `base` is the configuration from the command line and environment.
pub async fn run(base: ClientConfig, opts: DemoOptions) -> anyhow::Result<()> {
    if opts.count == 0 {
        bail!("--count must be at least 1");
    }
    if !(opts.rate.is_finite() && opts.rate > 0.0) {
        bail!(
            "--rate must be a positive number of jobs per second, got {}",
            opts.rate
        );
    }
    if opts.workers == 0 {
        bail!("--workers must be at least 1");
    }
    // MockJob reads its retry wait from the environment when a failure is handled.
    std::env::set_var("MOCK_JOB_RETRY_WAIT", opts.retry_wait.to_string());

    let mut config = base;
    let mut in_memory = false;
    let _emulator = if config.emulator_host.is_some() {
        println!(
            "Using the emulator at {}",
            config.emulator_host.as_deref().unwrap_or("")
        );
        None
    } else if std::env::var_os("PUBSUB_PROJECT_ID").is_some() {
        println!(
            "Using Pub/Sub project {} (PUBSUB_PROJECT_ID)",
            config.project_id
        );
        None
    } else {
        match pubsub_jobs::emulator::check_installed() {
            Err(e) => {
                println!("{}", no_emulator_line(&e));
                in_memory = true;
                None
            }
            Ok(_) => {
                print!("Starting a private Pub/Sub emulator... ");
                std::io::stdout().flush().ok();
                let emu = tokio::task::spawn_blocking(Emulator::start)
                    .await
                    .context("starting the emulator")??;
                println!("listening on {}", emu.host());
                config.emulator_host = Some(emu.host().to_string());
                Some(emu)
            }
        }
    };

    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let queue = format!("demo-{suffix}");
    config.morgue_queue = format!("demo-morgue-{suffix}");
    let client = if in_memory {
        Client::with_memory_broker(MemoryBroker::new(), config)
    } else {
        Client::connect(config).await?
    };
    client.ensure_queue(&queue).await?;
    let registry = Registry::new().register::<MockJob>();

    let stop = CancellationToken::new();
    let ctrl_c = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            ctrl_c.cancel();
        }
    });

    let mut stats = Vec::new();
    let mut workers = Vec::new();
    for _ in 0..opts.workers {
        let mut wc = WorkerConfig::new(queue.clone());
        wc.concurrency = 5;
        wc.prefetch = 5;
        wc.shutdown_timeout = Duration::from_secs(10);
        wc.stats_interval = Duration::from_secs(3600);
        let w = Worker::new(client.clone(), wc).with_registry(registry.clone());
        stats.push(w.stats());
        workers.push(tokio::spawn(w.run(stop.clone())));
    }
    println!(
        "Queue {queue}: {} workers; enqueuing {} MockJobs at {}/s (sleep 0-{} s, {:.0}% always fail, every 4th fails once; retries {} s apart)\n",
        opts.workers,
        opts.count,
        opts.rate,
        opts.max_sleep,
        opts.fail_ratio * 100.0,
        opts.retry_wait
    );

    let started = Instant::now();
    let mut rng = rand::rngs::StdRng::from_entropy();
    let interval = Duration::from_secs_f64(1.0 / opts.rate);
    let mut next_enqueue = tokio::time::Instant::now();
    let mut enqueued = 0usize;
    let mut last_print = Instant::now() - Duration::from_secs(1);
    let result = loop {
        if stop.is_cancelled() {
            break Err(anyhow::anyhow!("interrupted"));
        }
        let totals = total(&stats);
        let done = (totals.succeeded + totals.morgued) as usize;
        if last_print.elapsed() >= Duration::from_millis(500) || done >= opts.count {
            last_print = Instant::now();
            println!(
                "[{:>5.1}s] enqueued {enqueued:>3}/{} | running {:>2} | succeeded {:>3} | failed {:>3} | retried {:>3} | morgued {:>3}",
                started.elapsed().as_secs_f64(),
                opts.count,
                totals.running,
                totals.succeeded,
                totals.failed,
                totals.retried,
                totals.morgued
            );
        }
        if done >= opts.count {
            break Ok(());
        }
        if started.elapsed() > opts.deadline {
            break Err(anyhow::anyhow!(
                "the demo did not finish within {:?}: {done} of {} jobs done",
                opts.deadline,
                opts.count
            ));
        }
        if enqueued < opts.count && tokio::time::Instant::now() >= next_enqueue {
            let mut job = MockJob::random(&mut rng, opts.max_sleep, opts.fail_ratio);
            if !job.raise_error && enqueued % 4 == 3 {
                job.fail_attempts = Some(1);
            }
            job.set().queue(&queue).perform_later(&client).await?;
            enqueued += 1;
            next_enqueue += interval;
            continue;
        }
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    };

    stop.cancel();
    let mut summaries = Vec::new();
    for w in workers {
        summaries.push(w.await.context("worker task")??);
    }
    println!(
        "\n{:<10} {:>10} {:>8} {:>8} {:>8} {:>8}",
        "worker", "succeeded", "failed", "retried", "morgued", "p50 ms"
    );
    for (i, s) in summaries.iter().enumerate() {
        println!(
            "{:<10} {:>10} {:>8} {:>8} {:>8} {:>8}",
            format!("worker-{}", i + 1),
            s.succeeded,
            s.failed,
            s.retried,
            s.morgued,
            s.p50_ms
        );
    }
    let t = sum(&summaries);
    println!(
        "{:<10} {:>10} {:>8} {:>8} {:>8}",
        "total", t.succeeded, t.failed, t.retried, t.morgued
    );
    println!(
        "\n{} jobs in {:.1} s: every one succeeded or is in the morgue ({}{}).",
        opts.count,
        started.elapsed().as_secs_f64(),
        client.resource_name(client.morgue_queue()),
        if in_memory {
            ", in memory: nothing went through Pub/Sub"
        } else {
            ""
        }
    );
    result
}

/// The one line printed when no emulator can run here: why, and how to install it.
fn no_emulator_line(e: &pubsub_jobs::Error) -> String {
    let why = if e.to_string().contains("Java") {
        "Java is not installed"
    } else {
        "the Pub/Sub emulator is not installed"
    };
    format!(
        "IN-MEMORY BROKER: {why}, so this demo runs on pubsub-jobs' in-memory broker, not Pub/Sub \
         (install: apt-get install google-cloud-cli-pubsub-emulator default-jre-headless)."
    )
}

fn total(stats: &[WorkerStats]) -> WorkerSummary {
    sum(&stats.iter().map(|s| s.summary()).collect::<Vec<_>>())
}

fn sum(all: &[WorkerSummary]) -> WorkerSummary {
    let mut t = WorkerSummary::default();
    for s in all {
        t.processed += s.processed;
        t.succeeded += s.succeeded;
        t.failed += s.failed;
        t.retried += s.retried;
        t.morgued += s.morgued;
        t.discarded += s.discarded;
        t.running += s.running;
        t.acked += s.acked;
    }
    t
}
