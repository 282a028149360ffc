//! Worker processing with a job store beside processing without one, in one run on one emulator:
//! N no-op jobs enqueued (through a client with the same store, so their rows exist), then a
//! worker in this process (concurrency 200, 4 streams by default) runs them; jobs/s from worker
//! start to the last job done. Rounds alternate none / SQLite / PostgreSQL; medians of 3.
//!
//! ```text
//! cargo run --release -p bench --bin store -- --n 20000
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use pubsub_jobs::{
    register_job, store, Client, ClientConfig, Job, JobContext, JobError, Worker, WorkerConfig,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug, Clone)]
struct Args {
    /// Jobs per measurement.
    #[arg(long, default_value_t = 20_000)]
    n: usize,
    /// Streams.
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// Jobs running at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Rounds (the medians are reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The PostgreSQL job store.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1/test")]
    pg: String,
    /// Print one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

static DONE: AtomicU64 = AtomicU64::new(0);

#[derive(Serialize, Deserialize)]
struct StoreNoop {
    pad: String,
}

impl Job for StoreNoop {
    const NAME: &'static str = "StoreBenchNoop";
    async fn perform(&self, _ctx: &JobContext) -> Result<(), JobError> {
        DONE.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
register_job!(StoreNoop);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Enqueues `n` jobs on a fresh queue and measures a worker running them all.
async fn round(client: &Client, args: &Args, label: &str) -> anyhow::Result<f64> {
    let queue = format!(
        "storebench-{label}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    client.ensure_queue(&queue).await?;
    let mut left = args.n;
    while left > 0 {
        let k = left.min(5_000);
        let jobs = (0..k).map(|_| StoreNoop {
            pad: "x".repeat(100),
        });
        client.perform_all_later_on(&queue, jobs).await?;
        left -= k;
    }
    let base = DONE.load(Ordering::Relaxed);
    let mut cfg = WorkerConfig::new(&queue);
    cfg.streams = args.streams;
    cfg.concurrency = args.concurrency;
    cfg.prefetch = args.concurrency;
    cfg.stats_interval = Duration::from_secs(3600);
    let stop = CancellationToken::new();
    let start = Instant::now();
    let worker = tokio::spawn(Worker::new(client.clone(), cfg).run(stop.clone()));
    let deadline = start + Duration::from_secs(900);
    while DONE.load(Ordering::Relaxed) - base < args.n as u64 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{label}: jobs did not finish in time"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = args.n as f64 / start.elapsed().as_secs_f64();
    stop.cancel();
    worker.await??;
    Ok(rate)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let host = pubsub_jobs::emulator::shared_host().context("an emulator")?;
    let config = ClientConfig {
        project_id: "store-bench".into(),
        emulator_host: Some(host.to_string()),
        ..ClientConfig::default()
    };
    let plain = Client::connect(config).await?;
    let dir = std::env::temp_dir().join(format!("pubsub-jobs-store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let sqlite_url = format!("sqlite://{}", dir.join("jobs.db").display());
    let with_sqlite = plain
        .clone()
        .with_store(store::connect(&sqlite_url).await.context("SQLite store")?);
    let with_pg = plain
        .clone()
        .with_store(store::connect(&args.pg).await.context("PostgreSQL store")?);
    // Warm-up (the emulator's JIT, the stores' caches), unmeasured.
    let warm = Args {
        n: args.n.min(2_000),
        ..args.clone()
    };
    for c in [&plain, &with_sqlite, &with_pg] {
        round(c, &warm, "warm").await?;
    }
    let (mut none, mut sqlite, mut pg) = (Vec::new(), Vec::new(), Vec::new());
    for r in 1..=args.rounds.max(1) {
        none.push(round(&plain, &args, "none").await?);
        sqlite.push(round(&with_sqlite, &args, "sqlite").await?);
        pg.push(round(&with_pg, &args, "pg").await?);
        eprintln!(
            "round {r}: none {:.0}, SQLite {:.0}, PostgreSQL {:.0} jobs/s",
            none[r - 1],
            sqlite[r - 1],
            pg[r - 1]
        );
    }
    let (none, sqlite, pg) = (median(none), median(sqlite), median(pg));
    println!(
        "worker processing, {} no-op jobs, concurrency {}, {} streams (medians of {} rounds)",
        args.n, args.concurrency, args.streams, args.rounds
    );
    println!("| store | jobs/s | vs none |");
    println!("|---|---|---|");
    println!("| none | {none:.0} | 1.00x |");
    println!("| SQLite | {sqlite:.0} | {:.2}x |", sqlite / none);
    println!("| PostgreSQL | {pg:.0} | {:.2}x |", pg / none);
    if args.json {
        println!(
            "{}",
            serde_json::json!({"none": none, "sqlite": sqlite, "postgres": pg,
                "sqlite_ratio": sqlite / none, "postgres_ratio": pg / none})
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
