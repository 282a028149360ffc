//! Retention soak: a steady stream of jobs (`perform_later` on a client with the store, `--rate`
//! jobs/s) through a worker whose store prunes finished jobs after a short window (`--keep`),
//! on SQLite and on PostgreSQL side by side, with the store's size sampled every `--sample`
//! seconds: the jobs it holds (its exact counts) and its bytes on disk (SQLite: the database
//! file and its WAL; PostgreSQL: `pg_database_size`). Once the window is reached both should
//! stay flat: what is pruned each second is what arrived a window ago, and the space of pruned
//! rows is reused. At the end every enqueued job must have run (checked, not timed).
//!
//! ```text
//! cargo run --release -p bench --bin retention -- --seconds 1800 --rate 200 --keep 120
//! cargo run -p bench --bin retention -- --seconds 20 --keep 5 --sample 5   # CI's smoke run
//! ```

use bench_support::fresh_pg;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use pubsub_jobs::store::maintenance::MaintainerConfig;
use pubsub_jobs::store::{JobStore, Retention};
use pubsub_jobs::{
    register_job, store, Client, ClientConfig, Job, JobContext, JobError, Worker, WorkerConfig,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug, Clone)]
struct Args {
    /// Seconds of load.
    #[arg(long, default_value_t = 1800)]
    seconds: u64,
    /// Jobs per second enqueued on each store.
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// Retention of finished jobs, seconds.
    #[arg(long, default_value_t = 120)]
    keep: u64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 60)]
    sample: u64,
    /// The PostgreSQL server: a database of its own is created there and dropped at the end.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1/test")]
    pg: String,
    /// Print one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

static DONE: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

#[derive(Serialize, Deserialize)]
struct RetentionNoop {
    store: usize,
    pad: String,
}

impl Job for RetentionNoop {
    const NAME: &'static str = "RetentionSoakNoop";
    async fn perform(&self, _ctx: &JobContext) -> Result<(), JobError> {
        DONE[self.store.min(1)].fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
register_job!(RetentionNoop);

/// One store under load.
struct Lane {
    name: &'static str,
    store: Arc<dyn JobStore>,
    client: Client,
    queue: String,
    enqueued: Arc<AtomicU64>,
}

#[derive(Clone, Copy, Debug, Serialize)]
struct Sample {
    at_s: u64,
    jobs: u64,
    bytes: u64,
}

async fn sqlite_bytes(dir: &std::path::Path) -> u64 {
    ["jobs.db", "jobs.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

async fn pg_bytes(url: &str) -> anyhow::Result<u64> {
    use sqlx::{Connection, Row};
    let mut c = sqlx::PgConnection::connect(url).await?;
    let n: i64 = sqlx::query("SELECT pg_database_size(current_database()) AS n")
        .fetch_one(&mut c)
        .await?
        .get("n");
    Ok(n as u64)
}

async fn held(store: &Arc<dyn JobStore>) -> anyhow::Result<u64> {
    Ok(store.queue_counts().await?.iter().map(|c| c.count).sum())
}

/// Enqueues `rate` jobs/s on `lane` until `stop`, in ticks of 100 ms (each tick's jobs
/// submitted concurrently, as many callers would).
async fn produce(
    lane: Arc<(Client, String, usize, Arc<AtomicU64>)>,
    rate: u64,
    stop: CancellationToken,
) {
    let (client, queue, index, enqueued) = (&lane.0, &lane.1, lane.2, &lane.3);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut carry = 0.0f64;
    while !stop.is_cancelled() {
        tick.tick().await;
        carry += rate as f64 / 10.0;
        let n = carry.floor() as u64;
        carry -= n as f64;
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
            let (client, queue) = (client.clone(), queue.clone());
            set.spawn(async move {
                RetentionNoop {
                    store: index,
                    pad: "x".repeat(100),
                }
                .set()
                .queue(&queue)
                .perform_later(&client)
                .await
            });
        }
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(_)) => {
                    enqueued.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(e)) => tracing_free_warn(&format!("enqueue failed: {e}")),
                Err(e) => tracing_free_warn(&format!("enqueue task failed: {e}")),
            }
        }
    }
}

fn tracing_free_warn(msg: &str) {
    eprintln!("warning: {msg}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = fresh_pg::create(&args.pg).await?;
    let result = run(&args, &db.url).await;
    db.drop().await?;
    result
}

async fn run(args: &Args, pg_url: &str) -> anyhow::Result<()> {
    let host = pubsub_jobs::emulator::shared_host().context("an emulator")?;
    let plain = Client::connect(ClientConfig {
        project_id: "retention-soak".into(),
        emulator_host: Some(host.to_string()),
        ..ClientConfig::default()
    })
    .await?;
    let dir = std::env::temp_dir().join(format!("pubsub-jobs-retention-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let sqlite_url = format!("sqlite://{}", dir.join("jobs.db").display());
    let stores: [(&'static str, Arc<dyn JobStore>); 2] = [
        (
            "SQLite",
            store::connect(&sqlite_url).await.context("SQLite store")?,
        ),
        (
            "PostgreSQL",
            store::connect(pg_url).await.context("PostgreSQL store")?,
        ),
    ];
    let keep = Duration::from_secs(args.keep);
    let stop_workers = CancellationToken::new();
    let stop_load = CancellationToken::new();
    let mut lanes = Vec::new();
    let mut workers = Vec::new();
    let mut producers = Vec::new();
    for (i, (name, store)) in stores.into_iter().enumerate() {
        let client = plain.clone().with_store(store.clone());
        let queue = format!(
            "retention-{}-{}",
            name.to_lowercase(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        client.ensure_queue(&queue).await?;
        let mut cfg = WorkerConfig::new(&queue);
        cfg.stats_interval = Duration::from_secs(3600);
        cfg.maintenance = MaintainerConfig {
            interval: Duration::from_secs(1),
            retention: Retention::all(keep),
            ..Default::default()
        };
        workers.push(tokio::spawn(
            Worker::new(client.clone(), cfg).run(stop_workers.clone()),
        ));
        let enqueued = Arc::new(AtomicU64::new(0));
        producers.push(tokio::spawn(produce(
            Arc::new((client.clone(), queue.clone(), i, enqueued.clone())),
            args.rate,
            stop_load.clone(),
        )));
        lanes.push(Lane {
            name,
            store,
            client,
            queue,
            enqueued,
        });
    }
    println!(
        "retention soak: {} jobs/s per store for {} s, finished jobs kept {} s, sampled every {} s",
        args.rate, args.seconds, args.keep, args.sample
    );
    println!("| t (s) | SQLite jobs held | SQLite MB | PostgreSQL jobs held | PostgreSQL MB |");
    println!("|---|---|---|---|---|");
    let start = Instant::now();
    let mut samples: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
    let mut next = Duration::from_secs(args.sample);
    loop {
        let elapsed = start.elapsed();
        if elapsed >= Duration::from_secs(args.seconds) {
            break;
        }
        tokio::time::sleep(
            next.saturating_sub(elapsed)
                .min(Duration::from_secs(args.seconds) - elapsed),
        )
        .await;
        if start.elapsed() < next {
            continue;
        }
        let at_s = next.as_secs();
        next += Duration::from_secs(args.sample);
        let bytes = [sqlite_bytes(&dir).await, pg_bytes(pg_url).await?];
        for (i, lane) in lanes.iter().enumerate() {
            samples[i].push(Sample {
                at_s,
                jobs: held(&lane.store).await?,
                bytes: bytes[i],
            });
        }
        let mb = |b: u64| b as f64 / 1_048_576.0;
        let (s, p) = (
            samples[0][samples[0].len() - 1],
            samples[1][samples[1].len() - 1],
        );
        println!(
            "| {at_s} | {} | {:.1} | {} | {:.1} |",
            s.jobs,
            mb(s.bytes),
            p.jobs,
            mb(p.bytes)
        );
    }
    // Drain: every enqueued job must run.
    stop_load.cancel();
    for p in producers {
        p.await?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for (i, lane) in lanes.iter().enumerate() {
        lane.client.flush().await;
        let want = lane.enqueued.load(Ordering::Relaxed);
        while DONE[i].load(Ordering::Relaxed) < want {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} ({}): {} of {want} enqueued jobs ran",
                lane.name,
                lane.queue,
                DONE[i].load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    stop_workers.cancel();
    for w in workers {
        w.await??;
    }
    // Flat: compare the samples once the window is reached (plus two samples of slack).
    let settled = args.keep + 2 * args.sample;
    let mut summary = serde_json::Map::new();
    for (i, lane) in lanes.iter().enumerate() {
        let after: Vec<&Sample> = samples[i].iter().filter(|s| s.at_s >= settled).collect();
        let ran = DONE[i].load(Ordering::Relaxed);
        let enqueued = lane.enqueued.load(Ordering::Relaxed);
        if let (Some(first), Some(last)) = (after.first(), after.last()) {
            let (lo, hi) = after.iter().fold((u64::MAX, 0), |(lo, hi), s| {
                (lo.min(s.jobs), hi.max(s.jobs))
            });
            let growth = (last.bytes as f64 / first.bytes.max(1) as f64 - 1.0) * 100.0;
            println!(
                "{}: {enqueued} enqueued, {ran} ran; from {} s to {} s: jobs held {lo}-{hi}, bytes {:.1} -> {:.1} MB ({growth:+.1}%)",
                lane.name,
                first.at_s,
                last.at_s,
                first.bytes as f64 / 1_048_576.0,
                last.bytes as f64 / 1_048_576.0
            );
            summary.insert(
                lane.name.to_lowercase(),
                serde_json::json!({"enqueued": enqueued, "ran": ran, "held_min": lo, "held_max": hi,
                    "bytes_first": first.bytes, "bytes_last": last.bytes, "growth_pct": growth}),
            );
        } else {
            println!(
                "{}: {enqueued} enqueued, {ran} ran (too short to reach the window)",
                lane.name
            );
            summary.insert(
                lane.name.to_lowercase(),
                serde_json::json!({"enqueued": enqueued, "ran": ran}),
            );
        }
    }
    if args.json {
        println!("{}", serde_json::Value::Object(summary));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
