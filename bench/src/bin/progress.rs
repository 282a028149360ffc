//! What live progress costs the job store: `--jobs` jobs running at once, each reporting
//! `ctx.progress` `--rate` times a second for `--seconds`, in a worker with a job store (SQLite,
//! PostgreSQL), against the same jobs reporting nothing (the baseline). The worker coalesces
//! each job's reports to at most one store write a second (plus one as it ends): with 1,000 jobs
//! at 10 reports a second, ~10,000 reports a second become ~1,000 writes a second.
//!
//! Writes are counted by the store's own record: each progress write moves the job's `version`,
//! so the writes are the sum of the jobs' versions after the run minus the baseline's. The
//! worker runs on the in-memory broker (what is measured is the store's side); CPU is this
//! process's (the worker, and SQLite in it) and PostgreSQL's server, per job. Medians of
//! `--rounds`.
//!
//! ```text
//! cargo run --release -p bench --bin progress -- --jobs 1000 --seconds 10 --rate 10
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use bench_support::{cpu, fresh_pg, median};
use clap::Parser;
use pubsub_jobs::store::{self, JobStatus, JobStore, ListQuery};
use pubsub_jobs::testing::memory_client;
use pubsub_jobs::{register_job, Job, JobContext, JobError, Worker, WorkerConfig};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
struct Args {
    /// Jobs running at once.
    #[arg(long, default_value_t = 1000)]
    jobs: usize,
    /// How long each job runs, in seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Reports per second per job.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Rounds (the medians are reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The stores: sqlite, postgres.
    #[arg(long, default_value = "sqlite,postgres", value_delimiter = ',')]
    kinds: Vec<String>,
    /// The PostgreSQL server: a database of the run's own is created there and dropped after.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1/test")]
    pg: String,
    /// Print one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

/// Runs `seconds`, reporting `rate` times a second (or never, with rate 0).
#[derive(Serialize, Deserialize)]
struct Reporter {
    seconds: f64,
    rate: f64,
}

impl Job for Reporter {
    const NAME: &'static str = "ProgressBenchReporter";
    async fn perform(&self, ctx: &JobContext) -> Result<(), JobError> {
        let end = tokio::time::Instant::now() + Duration::from_secs_f64(self.seconds);
        if self.rate <= 0.0 {
            tokio::time::sleep_until(end).await;
            return Ok(());
        }
        let every = Duration::from_secs_f64(1.0 / self.rate);
        let total = (self.seconds * self.rate).ceil() as u64;
        let mut tick = tokio::time::interval(every);
        for done in 0..total {
            tick.tick().await;
            ctx.progress(done, total, "working");
        }
        tokio::time::sleep_until(end).await;
        Ok(())
    }
}
register_job!(Reporter);

/// One run: the sum of the jobs' versions, the wall time, the CPU seconds of this process and of
/// PostgreSQL's server.
struct Run {
    versions: u64,
    wall: f64,
    cpu: f64,
    db_cpu: f64,
}

async fn run(store: Arc<dyn JobStore>, args: &Args, rate: f64) -> anyhow::Result<Run> {
    let (client, _broker) = memory_client();
    let client = client.with_store(store.clone());
    let queue = pubsub_jobs::testing::unique_queue("progress");
    let jobs = (0..args.jobs).map(|_| Reporter {
        seconds: args.seconds,
        rate,
    });
    client.perform_all_later_on(&queue, jobs).await?;
    client.flush().await;
    let tps = cpu::ticks_per_second();
    let me = std::process::id();
    let (cpu0, db0) = (
        cpu::cpu_ticks(me, false).unwrap_or(0),
        cpu::postgres_ticks(),
    );
    let began = Instant::now();
    let stop = CancellationToken::new();
    let mut config = WorkerConfig::new(&queue);
    config.concurrency = args.jobs;
    config.ack_deadline = Duration::from_secs(60);
    let worker = tokio::spawn(Worker::new(client.clone(), config).run(stop.clone()));
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds * 4.0 + 60.0);
    let query = |cursor: Option<String>| ListQuery {
        queue: Some(queue.clone()),
        limit: 500,
        cursor,
        ..ListQuery::default()
    };
    loop {
        let done = store
            .count(&ListQuery {
                status: Some(JobStatus::Succeeded),
                ..query(None)
            })
            .await?
            .count;
        if done as usize >= args.jobs {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {done} of {} jobs succeeded",
            args.jobs
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let wall = began.elapsed().as_secs_f64();
    stop.cancel();
    worker.await??;
    let cpu = (cpu::cpu_ticks(me, false).unwrap_or(0) - cpu0) as f64 / tps;
    let db_cpu = cpu::postgres_ticks().saturating_sub(db0) as f64 / tps;
    let mut versions = 0u64;
    let mut cursor = None;
    loop {
        let page = store.list(query(cursor)).await?;
        versions += page
            .jobs
            .iter()
            .map(|j| j.version.max(0) as u64)
            .sum::<u64>();
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok(Run {
        versions,
        wall,
        cpu,
        db_cpu,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let reports = args.jobs as f64 * args.seconds * args.rate;
    println!(
        "{} jobs at once, each {} s, reporting {} times a second ({reports:.0} reports in all); medians of {}",
        args.jobs, args.seconds, args.rate, args.rounds
    );
    println!("| store | reports/s | store writes/s | writes per job a second | wall s (baseline) | CPU s, worker (baseline) | CPU s, PostgreSQL (baseline) |");
    println!("|---|---|---|---|---|---|---|");
    let mut json = serde_json::Map::new();
    for kind in &args.kinds {
        let mut pg = None;
        let dir = tempfile_dir()?;
        let url = match kind.as_str() {
            "sqlite" => format!("sqlite://{}/progress.db", dir.display()),
            "postgres" => {
                let db = fresh_pg::create(&args.pg).await?;
                let url = db.url.clone();
                pg = Some(db);
                url
            }
            other => anyhow::bail!("unknown store {other:?}: sqlite or postgres"),
        };
        let store = store::connect(&url).await?;
        let base = run(store.clone(), &args, 0.0).await?;
        let mut writes = Vec::new();
        let mut walls = Vec::new();
        let mut cpus = Vec::new();
        let mut db_cpus = Vec::new();
        for _ in 0..args.rounds {
            let r = run(store.clone(), &args, args.rate).await?;
            writes.push(r.versions.saturating_sub(base.versions) as f64 / r.wall);
            walls.push(r.wall);
            cpus.push(r.cpu);
            db_cpus.push(r.db_cpu);
        }
        let writes = median(writes);
        let (wall, cpu_s, db_s) = (median(walls), median(cpus), median(db_cpus));
        println!(
            "| {kind} | {:.0} | {writes:.0} | {:.2} | {wall:.1} ({:.1}) | {cpu_s:.2} ({:.2}) | {} |",
            reports / wall,
            writes / args.jobs as f64,
            base.wall,
            base.cpu,
            if kind == "postgres" {
                format!("{db_s:.2} ({:.2})", base.db_cpu)
            } else {
                "-".into()
            },
        );
        json.insert(
            kind.clone(),
            serde_json::json!({
                "reports_per_s": reports / wall,
                "writes_per_s": writes,
                "writes_per_job_s": writes / args.jobs as f64,
                "wall_s": wall, "baseline_wall_s": base.wall,
                "cpu_s": cpu_s, "baseline_cpu_s": base.cpu,
                "db_cpu_s": db_s, "baseline_db_cpu_s": base.db_cpu,
            }),
        );
        drop(store);
        if let Some(db) = pg {
            db.drop().await?;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    if args.json {
        println!("{}", serde_json::Value::Object(json));
    }
    Ok(())
}

/// A directory of this run's own for the SQLite file.
fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("pj-progress-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
