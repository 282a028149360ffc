//! Worker processing with a job store beside processing without one, in one run on one emulator:
//! N no-op jobs enqueued (through a client with the same store, so their rows exist), then a
//! worker in this process (concurrency 200, 4 streams by default) runs them; jobs/s from worker
//! start to the last job's ack (the last step, after its outcome is recorded: the store is
//! checked to show every job succeeded then), and this process's CPU per job over the same
//! span. Rounds alternate none / SQLite / PostgreSQL; medians of 3. `--bin e2e` measures the
//! `worker` binary as its own process.
//!
//! ```text
//! cargo run --release -p bench --bin store -- --n 20000
//! ```

use bench_support::{cpu, fill, fresh_pg, median};
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
    /// The PostgreSQL server: the benchmark creates a database of its own there (dropped at
    /// the end), so that figures do not depend on what earlier runs left behind.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1/test")]
    pg: String,
    /// Use the database of --pg as it is instead of a fresh one.
    #[arg(long)]
    pg_as_is: bool,
    /// Print one JSON object on the last line.
    #[arg(long)]
    json: bool,
    /// Instead: fill a SQLite store (and the PostgreSQL one) with this many finished jobs
    /// through the store's own write path, then time the aggregate reads (medians of 3).
    #[arg(long)]
    fill: Option<usize>,
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

/// Enqueues `n` jobs on a fresh queue and measures a worker running them all: (jobs/s, CPU
/// µs per job).
async fn round(client: &Client, args: &Args, label: &str) -> anyhow::Result<(f64, f64)> {
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
    let mut cfg = WorkerConfig::new(&queue);
    cfg.streams = args.streams;
    cfg.concurrency = args.concurrency;
    cfg.prefetch = args.concurrency;
    cfg.stats_interval = Duration::from_secs(3600);
    let stop = CancellationToken::new();
    let start = Instant::now();
    let cpu0 = cpu::own_seconds();
    let worker = Worker::new(client.clone(), cfg);
    let stats = worker.stats();
    let worker = tokio::spawn(worker.run(stop.clone()));
    let deadline = start + Duration::from_secs(900);
    while stats.acked() < args.n as u64 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{label}: jobs did not finish in time"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_us = (cpu::own_seconds() - cpu0) * 1e6 / args.n as f64;
    let rate = args.n as f64 / elapsed;
    if let Some(store) = client.store() {
        let q = store::ListQuery {
            queue: Some(queue.clone()),
            status: Some(store::JobStatus::Succeeded),
            limit: 1,
            ..Default::default()
        };
        let shown = store.count(&q).await?.count;
        anyhow::ensure!(
            shown == args.n as u64,
            "{label}: the store shows {shown} of {} jobs succeeded once all were acked",
            args.n
        );
    }
    stop.cancel();
    worker.await??;
    Ok((rate, cpu_us))
}

/// Fills `store` with `n` finished jobs (submit, start, succeed or morgue, in batches of 1,000,
/// as workers would) and times `queue_counts` and `metrics`: (ms, ms) medians of 3, and the
/// fill rate.
async fn fill_and_read(
    store: &std::sync::Arc<dyn store::JobStore>,
    n: usize,
) -> anyhow::Result<(f64, f64, f64)> {
    use store::NewJob;
    let t0 = Instant::now();
    let mut done = 0;
    while done < n {
        let k = (n - done).min(1_000);
        let jobs: Vec<NewJob> = (0..k)
            .map(|i| NewJob {
                id: uuid::Uuid::now_v7(),
                job_class: "StoreBenchNoop".into(),
                queue: format!("fill-{}", (done + i) % 4),
                arguments: serde_json::json!({ "pad": "x".repeat(100) }),
                metadata: Default::default(),
                enqueued_at: chrono::Utc::now(),
                scheduled_at: None,
                dedup: None,
                message: None,
            })
            .collect();
        store.submit_many(jobs.clone()).await?;
        store.record_batch(&fill::starts(&jobs)).await?;
        store
            .record_batch(&fill::ends(&jobs, |i| {
                (i % 50 == 0).then(|| "dead".to_string())
            }))
            .await?;
        done += k;
        if done % 100_000 == 0 {
            store.maintain(&store::Retention::keep_all()).await?;
            eprintln!("filled {done}");
        }
    }
    let fill_rate = n as f64 / t0.elapsed().as_secs_f64();
    // Steady state: the maintainer (every second in each process) has folded the deltas.
    while store.maintain(&store::Retention::keep_all()).await?.folded > 0 {}
    let (mut q, mut m) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let t = Instant::now();
        store.queue_counts().await?;
        q.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        store.metrics().await?;
        m.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((median(q), median(m), fill_rate))
}

/// The server's write-ahead log position in bytes (exact at once, unlike `pg_stat_wal`, which
/// backends flush now and then).
async fn wal_bytes(url: &str) -> Option<i64> {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::PgConnection::connect(url).await.ok()?;
    sqlx::query("SELECT CAST(pg_current_wal_lsn() - '0/0'::pg_lsn AS BIGINT) AS b")
        .fetch_one(&mut conn)
        .await
        .and_then(|r| r.try_get::<i64, _>("b"))
        .ok()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    let fresh = if args.pg_as_is {
        None
    } else {
        let db = fresh_pg::create(&args.pg).await?;
        args.pg = db.url.clone();
        Some(db)
    };
    let result = run(args).await;
    if let Some(db) = fresh {
        db.drop().await?;
    }
    result
}

async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(n) = args.fill {
        let dir = std::env::temp_dir().join(format!("pubsub-jobs-fill-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let sqlite = store::connect(&format!("sqlite://{}", dir.join("jobs.db").display())).await?;
        let (q, m, rate) = fill_and_read(&sqlite, n).await?;
        println!("SQLite, {n} finished jobs (filled at {rate:.0} jobs/s): queue counts {q:.2} ms, metrics {m:.2} ms");
        let pg = store::connect(&args.pg).await?;
        let (pq, pm, prate) = fill_and_read(&pg, n).await?;
        println!("PostgreSQL, +{n} finished jobs (filled at {prate:.0} jobs/s): queue counts {pq:.2} ms, metrics {pm:.2} ms");
        if args.json {
            println!(
                "{}",
                serde_json::json!({"jobs": n, "sqlite_queues_ms": q, "sqlite_metrics_ms": m,
                    "postgres_queues_ms": pq, "postgres_metrics_ms": pm})
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(());
    }
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
    let mut wal_per_job = Vec::new();
    for r in 1..=args.rounds.max(1) {
        none.push(round(&plain, &args, "none").await?);
        sqlite.push(round(&with_sqlite, &args, "sqlite").await?);
        let wal_before = wal_bytes(&args.pg).await;
        pg.push(round(&with_pg, &args, "pg").await?);
        if let (Some(a), Some(b)) = (wal_before, wal_bytes(&args.pg).await) {
            wal_per_job.push((b - a) as f64 / args.n as f64);
        }
        let last = |v: &Vec<(f64, f64)>| v[r - 1];
        eprintln!(
            "round {r}: none {:.0} ({:.1} us/job), SQLite {:.0} ({:.1}), PostgreSQL {:.0} ({:.1} in this process) jobs/s",
            last(&none).0, last(&none).1, last(&sqlite).0, last(&sqlite).1, last(&pg).0, last(&pg).1
        );
    }
    let meds = |v: Vec<(f64, f64)>| {
        (
            median(v.iter().map(|x| x.0).collect()),
            median(v.iter().map(|x| x.1).collect()),
        )
    };
    let ((none, none_cpu), (sqlite, sqlite_cpu), (pg, pg_cpu)) =
        (meds(none), meds(sqlite), meds(pg));
    println!(
        "worker processing, {} no-op jobs, concurrency {}, {} streams (medians of {} rounds)",
        args.n, args.concurrency, args.streams, args.rounds
    );
    println!("| store | jobs/s | vs none | CPU us/job (this process) |");
    println!("|---|---|---|---|");
    println!("| none | {none:.0} | 1.00x | {none_cpu:.1} |");
    println!(
        "| SQLite | {sqlite:.0} | {:.2}x | {sqlite_cpu:.1} |",
        sqlite / none
    );
    println!("| PostgreSQL | {pg:.0} | {:.2}x | {pg_cpu:.1} |", pg / none);
    // Steadier than PostgreSQL's jobs/s on a shared machine: what each job writes to the log.
    let wal = (!wal_per_job.is_empty()).then(|| median(wal_per_job));
    if let Some(w) = wal {
        println!("PostgreSQL write-ahead log: {w:.0} bytes per job, enqueue to finish (median; the server's WAL position, cluster-wide)");
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({"none": none, "sqlite": sqlite, "postgres": pg,
                "none_cpu_us": none_cpu, "sqlite_cpu_us": sqlite_cpu, "postgres_cpu_us": pg_cpu,
                "sqlite_ratio": sqlite / none, "postgres_ratio": pg / none,
                "postgres_wal_bytes_per_job": wal})
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
