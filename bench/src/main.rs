//! Benchmark: pubsub-jobs beside the raw gcloud-pubsub client, on one emulator, in one run, with
//! the same number of streams on both sides. Prints a table; `--json` adds one JSON object on the
//! last line.
//!
//! ```text
//! cargo run --release -p bench                 # N = 20,000
//! cargo run --release -p bench -- --n 2000 --json
//! ```
//!
//! Workloads: raw publish / consume beside enqueue / process; latency (raw and framework); parked
//! load (10,000 jobs scheduled 10 minutes ahead, then 2,000 due ones, against the same 2,000 on
//! an empty queue) run in a child process of this binary so that its peak RSS is the worker's
//! own; the sleep workload (2,000 x 100 ms at concurrency 200); processing rate by streams.

use bench_support::{median, quantile};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use gcloud_gax::conn::Environment;
use gcloud_googleapis::pubsub::v1::PubsubMessage;
use gcloud_pubsub::client::{Client as GClient, ClientConfig as GConfig};
use gcloud_pubsub::subscriber::SubscriberConfig;
use gcloud_pubsub::subscription::SubscribeConfig;
use pubsub_jobs::{
    register_job, Client, ClientConfig, Job, JobContext, JobError, Worker, WorkerConfig,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
struct Args {
    /// Messages / jobs per throughput measurement.
    #[arg(long, default_value_t = 20_000)]
    n: usize,
    /// Streams on both sides.
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// Jobs running at once in the worker.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Latency samples.
    #[arg(long, default_value_t = 200)]
    latency_samples: usize,
    /// Stream counts for the scaling run (comma-separated).
    #[arg(long, default_value = "1,2,4,8")]
    scaling: String,
    /// Jobs scheduled ahead in the parked-load workload.
    #[arg(long, default_value_t = 10_000)]
    parked: usize,
    /// Due jobs in the parked-load workload.
    #[arg(long, default_value_t = 2_000)]
    due: usize,
    /// Jobs in the sleep workload (each sleeps 100 ms).
    #[arg(long, default_value_t = 2_000)]
    sleepers: usize,
    /// Rounds of publish / enqueue, alternating; the medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Warm the emulator (a JVM) up with one unmeasured round first.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    warmup: bool,
    /// Print one JSON object on the last line.
    #[arg(long)]
    json: bool,
    /// Measure only publish / enqueue (the first workload), and print it.
    #[arg(long)]
    only_publish: bool,
    /// Internal: run the parked-load workload against this emulator and print its JSON figures.
    #[arg(long, hide = true)]
    child_parked: Option<String>,
    /// Internal: the child's two queues, EMPTY,PARKED.
    #[arg(long, hide = true, default_value = "")]
    child_queues: String,
}

/// Epoch microseconds.
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

static DONE: AtomicU64 = AtomicU64::new(0);
static LATENCIES: OnceLock<Mutex<Vec<u64>>> = OnceLock::new();

/// A job that does nothing; `sent_us` > 0 records its enqueue-to-start latency.
#[derive(Serialize, Deserialize)]
struct Noop {
    sent_us: u64,
    #[serde(default)]
    sleep_ms: u64,
    pad: String,
}

impl Job for Noop {
    const NAME: &'static str = "BenchNoop";
    async fn perform(&self, _ctx: &JobContext) -> Result<(), JobError> {
        if self.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
        }
        if self.sent_us > 0 {
            let lat = now_us().saturating_sub(self.sent_us);
            LATENCIES
                .get_or_init(Default::default)
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(lat);
        }
        DONE.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
register_job!(Noop);

struct Raw {
    client: GClient,
}

impl Raw {
    async fn new(host: &str) -> anyhow::Result<Self> {
        let cfg = GConfig {
            environment: Environment::Emulator(host.to_string()),
            project_id: Some("bench".into()),
            ..Default::default()
        };
        Ok(Self {
            client: GClient::new(cfg).await?,
        })
    }

    /// Deletes a subscription and topic of the same name (the emulator keeps messages in memory:
    /// left behind, unconsumed rounds would weigh on later workloads).
    async fn delete(&self, name: &str) -> anyhow::Result<()> {
        self.client.subscription(name).delete(None).await?;
        self.client.topic(name).delete(None).await?;
        Ok(())
    }

    async fn create(&self, name: &str) -> anyhow::Result<()> {
        self.client.create_topic(name, None, None).await?;
        self.client
            .create_subscription(name, name, Default::default(), None)
            .await?;
        Ok(())
    }

    /// Publishes messages in batches of 1,000, all at once.
    async fn send(&self, name: &str, msgs: Vec<PubsubMessage>) -> anyhow::Result<()> {
        let publisher = self.client.topic(name).new_publisher(None);
        let mut tasks = Vec::new();
        let mut msgs = msgs.into_iter().peekable();
        while msgs.peek().is_some() {
            let batch: Vec<PubsubMessage> = msgs.by_ref().take(1000).collect();
            let p = publisher.clone();
            tasks.push(tokio::spawn(async move {
                p.publish_immediately(batch, None).await
            }));
        }
        for t in tasks {
            t.await??;
        }
        Ok(())
    }

    /// Publishes prepared messages (built before the clock starts); returns msgs/s.
    async fn publish_prepared(&self, name: &str, msgs: Vec<PubsubMessage>) -> anyhow::Result<f64> {
        let n = msgs.len();
        let start = Instant::now();
        self.send(name, msgs).await?;
        Ok(n as f64 / start.elapsed().as_secs_f64())
    }

    /// Builds and publishes `n` 200-byte messages (`sent_us` attributes with `attrs`); returns
    /// msgs/s, building included.
    async fn publish(&self, name: &str, n: usize, attrs: bool) -> anyhow::Result<f64> {
        let start = Instant::now();
        let msgs = (0..n)
            .map(|_| PubsubMessage {
                data: vec![b'x'; 200],
                attributes: if attrs {
                    [("sent_us".to_string(), now_us().to_string())].into()
                } else {
                    Default::default()
                },
                ..Default::default()
            })
            .collect();
        self.send(name, msgs).await?;
        Ok(n as f64 / start.elapsed().as_secs_f64())
    }

    /// Consumes and acks `n` messages with `streams` streams; returns msgs/s and latencies (µs).
    async fn consume(
        &self,
        name: &str,
        n: usize,
        streams: usize,
    ) -> anyhow::Result<(f64, Vec<u64>)> {
        let sub = self.client.subscription(name);
        let got = Arc::new(AtomicU64::new(0));
        let lats = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        let start = Instant::now();
        for _ in 0..streams {
            let cfg = SubscribeConfig::default().with_subscriber_config(SubscriberConfig {
                max_outstanding_messages: 1000,
                ..Default::default()
            });
            let mut stream = sub.subscribe(Some(cfg)).await?;
            let (sub, got, lats, stop) = (sub.clone(), got.clone(), lats.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut acks = Vec::new();
                loop {
                    let m = tokio::select! {
                        m = stream.next() => m,
                        _ = stop.cancelled() => None,
                        _ = tokio::time::sleep(Duration::from_millis(20)) => {
                            if !acks.is_empty() { let _ = sub.ack(std::mem::take(&mut acks)).await; }
                            continue;
                        }
                    };
                    let Some(m) = m else { break };
                    if let Some(sent) = m.message.attributes.get("sent_us").and_then(|s| s.parse::<u64>().ok()) {
                        lats.lock().unwrap_or_else(|p| p.into_inner()).push(now_us().saturating_sub(sent));
                    }
                    acks.push(m.ack_id.clone());
                    if acks.len() >= 500 {
                        let _ = sub.ack(std::mem::take(&mut acks)).await;
                    }
                    got.fetch_add(1, Ordering::Relaxed);
                }
                if !acks.is_empty() {
                    let _ = sub.ack(acks).await;
                }
                stream.dispose().await;
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(600);
        while (got.load(Ordering::Relaxed) as usize) < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let rate = got.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
        stop.cancel();
        for t in tasks {
            let _ = t.await;
        }
        let lats = lats.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok((rate, lats))
    }
}

/// Runs a worker until `n` more jobs are done; returns jobs/s from worker start to the last one.
async fn process(
    client: &Client,
    queue: &str,
    n: usize,
    streams: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let base = DONE.load(Ordering::Relaxed);
    let start = Instant::now();
    let (stop, worker, _) = spawn_worker(client, queue, streams, concurrency);
    wait_done(base, n, Instant::now() + Duration::from_secs(600)).await;
    let rate = (DONE.load(Ordering::Relaxed) - base) as f64 / start.elapsed().as_secs_f64();
    stop.cancel();
    worker.await??;
    Ok(rate)
}

type WorkerHandle = tokio::task::JoinHandle<pubsub_jobs::Result<pubsub_jobs::WorkerSummary>>;

/// Starts a worker in this process with `prefetch = concurrency` and no stats log lines.
fn spawn_worker(
    client: &Client,
    queue: &str,
    streams: usize,
    concurrency: usize,
) -> (CancellationToken, WorkerHandle, pubsub_jobs::WorkerStats) {
    let mut cfg = WorkerConfig::new(queue);
    cfg.streams = streams;
    cfg.concurrency = concurrency;
    cfg.prefetch = concurrency;
    cfg.stats_interval = Duration::from_secs(3600);
    let stop = CancellationToken::new();
    let worker = Worker::new(client.clone(), cfg);
    let stats = worker.stats();
    (stop.clone(), tokio::spawn(worker.run(stop)), stats)
}

/// Waits until `n` jobs are done since `base` (or the deadline); returns whether they were.
async fn wait_done(base: u64, n: usize, deadline: Instant) -> bool {
    while ((DONE.load(Ordering::Relaxed) - base) as usize) < n {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    true
}

fn noops(n: usize, sent_us: u64) -> Vec<Noop> {
    sleepers(n, sent_us, 0)
}

fn sleepers(n: usize, sent_us: u64, sleep_ms: u64) -> Vec<Noop> {
    (0..n)
        .map(|_| Noop {
            sent_us,
            sleep_ms,
            pad: "x".repeat(100),
        })
        .collect()
}

async fn connect(host: &str, suffix: &str) -> anyhow::Result<Client> {
    Ok(Client::connect(ClientConfig {
        project_id: "bench".into(),
        emulator_host: Some(host.to_string()),
        morgue_queue: format!("bench-morgue-{suffix}"),
        ..ClientConfig::default()
    })
    .await?)
}

/// Peak resident set size of this process in MiB (VmHWM), where /proc tells.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Enqueues the parked jobs (from the parent, so that the child's memory is the worker's):
/// `parked` jobs scheduled 10 minutes ahead on one queue. Returns (empty queue, parked queue).
async fn prepare_parked(
    client: &Client,
    suffix: &str,
    args: &Args,
) -> anyhow::Result<(String, String)> {
    let empty = format!("empty-{suffix}");
    client.ensure_queue(&empty).await?;
    let parked_q = format!("parked-{suffix}");
    client.ensure_queue(&parked_q).await?;
    let at = chrono::Utc::now() + chrono::Duration::minutes(10);
    let mut ahead = Vec::with_capacity(args.parked);
    for j in noops(args.parked, 0) {
        let mut env =
            pubsub_jobs::envelope::Envelope::new(Noop::NAME, &parked_q, serde_json::to_value(j)?);
        env.scheduled_at = Some(at);
        ahead.push(env);
    }
    client.submit_all(ahead).await?;
    Ok((empty, parked_q))
}

/// With a worker on `queue` that has its streams open and has parked at least `min_parked`
/// scheduled jobs: enqueues `due`
/// no-op jobs and times them from the enqueue to the last one done; then runs `concurrency`
/// jobs of 1 s at once (for the peak RSS). Returns the seconds.
async fn due_after_parked(
    client: &Client,
    queue: &str,
    args: &Args,
    min_parked: u64,
) -> anyhow::Result<f64> {
    let (stop, worker, stats) = spawn_worker(client, queue, args.streams, args.concurrency);
    let deadline = Instant::now() + Duration::from_secs(600);
    while stats.summary().parked < min_parked || stats.open_streams() < args.streams as u64 {
        anyhow::ensure!(Instant::now() < deadline, "the parked jobs never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Three rounds (the emulator delivers in 50 ms cycles, so one round is noisy); the median.
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let base = DONE.load(Ordering::Relaxed);
        let start = Instant::now();
        client
            .perform_all_later_on(queue, noops(args.due, 0))
            .await?;
        anyhow::ensure!(
            wait_done(base, args.due, deadline).await,
            "the due jobs did not finish"
        );
        rounds.push(start.elapsed().as_secs_f64());
    }
    let secs = median(rounds);
    let base = DONE.load(Ordering::Relaxed);
    client
        .perform_all_later_on(queue, sleepers(args.concurrency, 0, 1000))
        .await?;
    anyhow::ensure!(
        wait_done(base, args.concurrency, deadline).await,
        "the running jobs did not finish"
    );
    stop.cancel();
    worker.await??;
    Ok(secs)
}

/// The parked-load worker, in a child process: the due jobs on an empty queue, then on the queue
/// whose `parked` scheduled jobs the worker has all parked, then `concurrency` jobs running
/// beside them. Prints one JSON line with both times and the process's peak RSS.
async fn child_parked(host: &str, queues: &str, args: &Args) -> anyhow::Result<()> {
    let (empty, parked_q) = queues
        .split_once(',')
        .context("--child-queues EMPTY,PARKED")?;
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let client = connect(host, &suffix).await?;
    let empty_s = due_after_parked(&client, empty, args, 0).await?;
    let parked_s = due_after_parked(&client, parked_q, args, args.parked as u64).await?;
    println!(
        "{}",
        serde_json::json!({"empty_s": empty_s, "parked_s": parked_s, "peak_rss_mb": peak_rss_mb()})
    );
    Ok(())
}

/// Runs [`child_parked`] in a child process of this binary; returns (empty s, parked s, peak MiB).
fn run_child_parked(
    host: &str,
    queues: (String, String),
    args: &Args,
) -> anyhow::Result<(f64, f64, Option<f64>)> {
    let exe = std::env::current_exe()?;
    let out = std::process::Command::new(exe)
        .args([
            "--child-parked",
            host,
            "--child-queues",
            &format!("{},{}", queues.0, queues.1),
            "--streams",
            &args.streams.to_string(),
            "--concurrency",
            &args.concurrency.to_string(),
            "--parked",
            &args.parked.to_string(),
            "--due",
            &args.due.to_string(),
        ])
        .stderr(std::process::Stdio::inherit())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "parked-load child failed: {}",
        out.status
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .last()
        .context("parked-load child printed nothing")?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    Ok((
        v["empty_s"].as_f64().unwrap_or(f64::NAN),
        v["parked_s"].as_f64().unwrap_or(f64::NAN),
        v["peak_rss_mb"].as_f64(),
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(host) = &args.child_parked {
        return child_parked(host, &args.child_queues, &args).await;
    }
    let host = pubsub_jobs::emulator::shared_host()
        .context("an emulator")?
        .to_string();
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let raw = Raw::new(&host).await?;
    let client = connect(&host, &suffix).await?;

    // 0. Warm-up: the emulator is a JVM whose JIT compiles for the first tens of seconds; warm it
    // with one unmeasured round of each side so that neither pays for it.
    if args.warmup {
        let t = format!("warm-{suffix}");
        raw.create(&t).await?;
        raw.publish(&t, args.n, false).await?;
        raw.consume(&t, args.n, args.streams).await?;
        let q = format!("warmjobs-{suffix}");
        client.ensure_queue(&q).await?;
        client.perform_all_later_on(&q, noops(args.n, 0)).await?;
        process(&client, &q, args.n, args.streams, args.concurrency).await?;
    }

    // 1, 2. Publish / enqueue in `rounds` alternating rounds (median of each side), then consume
    // the first round's messages raw and process the first round's jobs.
    // Each side's process CPU (this process: the client, its gRPC channels, the runtime) per
    // message is kept beside its rate.
    let (mut raw_publishes, mut enqueues, mut same) = (Vec::new(), Vec::new(), Vec::new());
    let (mut raw_cpu, mut enqueue_cpu, mut same_cpu) = (Vec::new(), Vec::new(), Vec::new());
    let (raw_topic, queue) = (format!("raw-{suffix}"), format!("jobs-{suffix}"));
    let per_msg = |cpu0: f64| (bench_support::cpu::own_seconds() - cpu0) * 1e6 / args.n as f64;
    for round in 0..args.rounds.max(1) {
        let t = format!("{raw_topic}-{round}");
        raw.create(&t).await?;
        let cpu0 = bench_support::cpu::own_seconds();
        raw_publishes.push(raw.publish(&t, args.n, false).await?);
        raw_cpu.push(per_msg(cpu0));
        let q = format!("{queue}-{round}");
        client.ensure_queue(&q).await?;
        let jobs = noops(args.n, 0);
        let (start, cpu0) = (Instant::now(), bench_support::cpu::own_seconds());
        client.perform_all_later_on(&q, jobs).await?;
        enqueues.push(args.n as f64 / start.elapsed().as_secs_f64());
        enqueue_cpu.push(per_msg(cpu0));
        // The raw client again, publishing exactly the bytes and attributes pubsub-jobs sends
        // (built before the clock starts): what the emulator costs for these messages.
        let prepared: Vec<PubsubMessage> = noops(args.n, 0)
            .into_iter()
            .map(|j| {
                let env = pubsub_jobs::envelope::Envelope::new(
                    Noop::NAME,
                    &q,
                    serde_json::to_value(j).unwrap_or_default(),
                );
                PubsubMessage {
                    data: env.to_body(),
                    attributes: env.attributes(),
                    ..Default::default()
                }
            })
            .collect();
        let t = format!("{raw_topic}-same-{round}");
        raw.create(&t).await?;
        let cpu0 = bench_support::cpu::own_seconds();
        same.push(raw.publish_prepared(&t, prepared).await?);
        same_cpu.push(per_msg(cpu0));
    }
    let (raw_cpu, enqueue_cpu, same_cpu) = (median(raw_cpu), median(enqueue_cpu), median(same_cpu));
    let (raw_publish, enqueue, raw_same) = (median(raw_publishes), median(enqueues), median(same));
    let publish_json = serde_json::json!({
        "raw_publish_per_s": raw_publish,
        "raw_publish_same_messages_per_s": raw_same,
        "enqueue_per_s": enqueue,
        "raw_publish_cpu_us": raw_cpu,
        "raw_publish_same_messages_cpu_us": same_cpu,
        "enqueue_cpu_us": enqueue_cpu,
    });
    if args.only_publish {
        println!(
            "pubsub-jobs publish benchmark: N = {}, {} rounds, emulator {host}",
            args.n, args.rounds
        );
        println!(
            "{:<34} {:>12} {:>10} {:>12} {:>10}",
            "", "msgs/s", "ratio", "CPU us/msg", "ratio"
        );
        for (name, rate, cpu) in [
            ("raw publish, 200 bytes", raw_publish, raw_cpu),
            ("raw, pubsub-jobs' messages", raw_same, same_cpu),
        ] {
            println!("{name:<34} {rate:>12.0} {:>10} {cpu:>12.2} {:>10}", "", "");
        }
        println!(
            "{:<34} {:>12.0} {:>10.2} {:>12.2} {:>10.2}",
            "perform_all_later",
            enqueue,
            enqueue / raw_same,
            enqueue_cpu,
            enqueue_cpu / same_cpu
        );
        if args.json {
            println!("{publish_json}");
        }
        return Ok(());
    }
    let (raw_consume, _) = raw
        .consume(&format!("{raw_topic}-0"), args.n, args.streams)
        .await?;
    let process_rate = process(
        &client,
        &format!("{queue}-0"),
        args.n,
        args.streams,
        args.concurrency,
    )
    .await?;
    for round in 0..args.rounds.max(1) {
        raw.delete(&format!("{raw_topic}-same-{round}")).await?;
        if round > 0 {
            raw.delete(&format!("{raw_topic}-{round}")).await?;
            raw.delete(&client.resource_name(&format!("{queue}-{round}")))
                .await?;
        }
    }

    // 3. Latency, 20 ms apart.
    let lat_topic = format!("rawlat-{suffix}");
    raw.create(&lat_topic).await?;
    let consumer = {
        let raw = Raw::new(&host).await?;
        let (t, n, s) = (lat_topic.clone(), args.latency_samples, args.streams);
        tokio::spawn(async move { raw.consume(&t, n, s).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..args.latency_samples {
        raw.publish(&lat_topic, 1, true).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, raw_lats) = consumer.await??;
    let lat_queue = format!("jobslat-{suffix}");
    client.ensure_queue(&lat_queue).await?;
    let lat_worker = {
        let (c, q, n, s) = (
            client.clone(),
            lat_queue.clone(),
            args.latency_samples,
            args.streams,
        );
        tokio::spawn(async move { process(&c, &q, n, s, 10).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..args.latency_samples {
        client
            .perform_all_later_on(&lat_queue, noops(1, now_us()))
            .await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lat_worker.await??;
    let lats = LATENCIES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();

    // 4. Parked load, in a child process (its peak RSS is the worker's).
    let queues = prepare_parked(&client, &suffix, &args).await?;
    let (empty_s, parked_s, peak_rss) = run_child_parked(&host, queues, &args)?;
    let parked_ratio = parked_s / empty_s;

    // 5. Sleep workload: 100 ms each at concurrency 200.
    let sleep_q = format!("sleep-{suffix}");
    client.ensure_queue(&sleep_q).await?;
    client
        .perform_all_later_on(&sleep_q, sleepers(args.sleepers, 0, 100))
        .await?;
    let sleep_start = Instant::now();
    process(&client, &sleep_q, args.sleepers, args.streams, 200).await?;
    let sleep_wall = sleep_start.elapsed().as_secs_f64();
    let sleep_ideal = (args.sleepers as f64 / 200.0).ceil() * 0.1;

    // 6. Scaling.
    let mut scaling = Vec::new();
    for s in args
        .scaling
        .split(',')
        .filter_map(|s| s.trim().parse::<usize>().ok())
    {
        let q = format!("scale{s}-{suffix}");
        client.ensure_queue(&q).await?;
        client
            .perform_all_later_on(&q, noops(args.n / 2, 0))
            .await?;
        let rate = process(&client, &q, args.n / 2, s, args.concurrency).await?;
        scaling.push((s, rate));
    }

    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!("pubsub-jobs benchmark: N = {}, streams = {}, concurrency = {}, {cores} cores, emulator {host}", args.n, args.streams, args.concurrency);
    println!(
        "{:<34} {:>14} {:>14} {:>8}",
        "", "raw gcloud", "pubsub-jobs", "ratio"
    );
    println!(
        "{:<34} {:>14.0} {:>14.0} {:>8.2}",
        "publish / enqueue (msgs/s)",
        raw_publish,
        enqueue,
        enqueue / raw_publish
    );
    println!(
        "{:<34} {:>14.0} {:>14.0} {:>8.2}",
        "  raw, pubsub-jobs' messages",
        raw_same,
        enqueue,
        enqueue / raw_same
    );
    println!(
        "{:<34} {:>14.2} {:>14.2} {:>8.2}",
        "  CPU us per message (same msgs)",
        same_cpu,
        enqueue_cpu,
        enqueue_cpu / same_cpu
    );
    println!(
        "{:<34} {:>14.0} {:>14.0} {:>8.2}",
        "consume+ack / process (msgs/s)",
        raw_consume,
        process_rate,
        process_rate / raw_consume
    );
    let (rp50, rp99) = (
        quantile(raw_lats.clone(), 0.5) as f64 / 1000.0,
        quantile(raw_lats.clone(), 0.99) as f64 / 1000.0,
    );
    let (p50, p99) = (
        quantile(lats.clone(), 0.5) as f64 / 1000.0,
        quantile(lats.clone(), 0.99) as f64 / 1000.0,
    );
    println!(
        "{:<34} {:>14.1} {:>14.1} {:>+8.1}",
        "latency p50 (ms)",
        rp50,
        p50,
        p50 - rp50
    );
    println!(
        "{:<34} {:>14.1} {:>14.1} {:>+8.1}",
        "latency p99 (ms)",
        rp99,
        p99,
        p99 - rp99
    );
    println!(
        "{:<34} {:>14.2} {:>14.2} {:>8.2}",
        format!("{} due jobs (s): empty / {} parked", args.due, args.parked),
        empty_s,
        parked_s,
        parked_ratio
    );
    println!(
        "{:<34} {:>14} {:>14}",
        "worker peak RSS, parked run (MiB)",
        "",
        peak_rss
            .map(|m| format!("{m:.1}"))
            .unwrap_or_else(|| "n/a".into())
    );
    println!(
        "{:<34} {:>14.2} {:>14.2} {:>8.2}",
        format!("{} x 100 ms at 200 (s): ideal", args.sleepers),
        sleep_ideal,
        sleep_wall,
        sleep_wall / sleep_ideal
    );
    for (s, rate) in &scaling {
        println!(
            "{:<34} {:>14} {:>14.0}",
            format!("process, {s} stream(s) (jobs/s)"),
            "",
            rate
        );
    }
    if args.json {
        let mut line = serde_json::json!({
            "raw_consume_per_s": raw_consume,
            "process_per_s": process_rate,
            "raw_latency_p50_ms": rp50,
            "raw_latency_p99_ms": rp99,
            "latency_p50_ms": p50,
            "latency_p99_ms": p99,
            "parked_due_ratio": parked_ratio,
            "peak_rss_mb": peak_rss,
            "sleep_wall_s": sleep_wall,
            "streams": args.streams,
            "scaling": scaling.iter().map(|(s, r)| serde_json::json!({"streams": s, "process_per_s": r})).collect::<Vec<_>>(),
        });
        if let (Some(all), Some(publish)) = (line.as_object_mut(), publish_json.as_object()) {
            all.extend(publish.clone());
        }
        println!("{line}");
    }
    Ok(())
}
