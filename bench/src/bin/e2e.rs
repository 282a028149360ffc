//! Processing as a user runs it: the `worker` binary as its own process, on jobs enqueued by
//! `worker spawn` (no-op MockJobs), without a store, with SQLite and with PostgreSQL, beside a
//! raw gcloud-pubsub consumer (this binary again, as a child) acking the same messages.
//!
//! The clock starts at the first `job.started` line of the worker (the first message received,
//! for the raw consumer) and stops when Pub/Sub has answered the ack of the N-th job: the last
//! step of a job's life, after its outcome is recorded (the store is checked to show all N
//! succeeded at that moment). Acks are counted from the worker's `acks.sent` debug events
//! (`RUST_LOG=info,pubsub_jobs::worker::ack=debug`: the worker's usual info lines stay on).
//! CPU is the process's user + system time over the same span (`/proc/PID/stat`), and for
//! PostgreSQL the server's too (every `postgres` process plus what the postmaster reaped).
//! Rounds alternate the kinds; medians of 3.
//!
//! ```text
//! cargo build --release -p pubsub-jobs-cli -p bench
//! cargo run --release -p bench --bin e2e -- --n 20000
//! ```

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench_support::cpu::{cpu_ticks, postgres_ticks, ticks_per_second};
use bench_support::{fresh_pg, median};
use clap::Parser;
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Parser, Debug, Clone)]
struct Args {
    /// Jobs per measurement.
    #[arg(long, default_value_t = 20_000)]
    n: usize,
    /// Streaming pulls of the worker (and of the raw consumer).
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// The worker's concurrency.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Rounds (the medians are reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// What to run, in this order each round: raw, none, sqlite, postgres.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "raw,none,sqlite,postgres"
    )]
    kinds: Vec<String>,
    /// The PostgreSQL server: a database of the run's own is created there and dropped after.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1/test")]
    pg: String,
    /// The `worker` binary (default: beside this one).
    #[arg(long)]
    worker: Option<PathBuf>,
    /// The worker's log format (text is the default users get).
    #[arg(long, default_value = "text")]
    log_format: String,
    /// Print one JSON object on the last line.
    #[arg(long)]
    json: bool,
    /// (Internal) be the raw consumer of this subscription.
    #[arg(long, hide = true)]
    raw_consume: Option<String>,
}

/// One measurement.
#[derive(Clone, Copy, Debug)]
struct Run {
    rate: f64,
    /// Consumer process CPU, µs per job.
    cpu_us: f64,
    /// Database server CPU, µs per job (PostgreSQL only).
    db_us: Option<f64>,
}

fn env_for(cmd: &mut tokio::process::Command, host: &str, project: &str, store: Option<&str>) {
    cmd.env("PUBSUB_EMULATOR_HOST", host)
        .env("PUBSUB_PROJECT_ID", project)
        .env_remove("PUBSUB_JOBS_STORE")
        .env_remove("QUEUE_NAME")
        .env_remove("LOG_FORMAT");
    if let Some(s) = store {
        cmd.env("PUBSUB_JOBS_STORE", s);
    }
}

/// Enqueues `n` no-op MockJobs on `queue` with `worker spawn` (through the store, if any).
async fn enqueue(
    worker: &PathBuf,
    host: &str,
    project: &str,
    store: Option<&str>,
    queue: &str,
    n: usize,
) -> anyhow::Result<()> {
    let mut cmd = tokio::process::Command::new(worker);
    env_for(&mut cmd, host, project, store);
    cmd.args(["--queue", queue, "spawn", "--count"])
        .arg(n.to_string())
        .args(["--rate", "1000000", "--fail-ratio", "0", "--max-sleep", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let status = cmd.status().await.context("running worker spawn")?;
    anyhow::ensure!(status.success(), "worker spawn failed: {status}");
    Ok(())
}

/// The count in an `acks.sent` line of `subscription`, if it is one.
fn acks_in(line: &str, subscription: &str) -> Option<u64> {
    if !line.contains("acks.sent") {
        return None;
    }
    let quoted = format!("subscription=\"{subscription}\"");
    let bare = format!("subscription={subscription} ");
    let json = format!("\"subscription\":\"{subscription}\"");
    if !(line.contains(&quoted) || line.contains(&bare) || line.contains(&json)) {
        return None;
    }
    let at = line.find("count")? + "count".len();
    let digits: String = line[at..]
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// Runs one consumer process over `n` enqueued jobs and measures it.
async fn measure(
    mut cmd: tokio::process::Command,
    subscription: &str,
    n: usize,
    with_db: bool,
    tck: f64,
) -> anyhow::Result<Run> {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().context("starting the consumer")?;
    let pid = child.id().context("the consumer's pid")?;
    let stderr = child.stderr.take().context("the consumer's stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut start: Option<(Instant, u64, u64)> = None;
    let mut acked = 0u64;
    let mut tail = Vec::new();
    while acked < n as u64 {
        let line = tokio::time::timeout_at(deadline.into(), lines.next_line())
            .await
            .context("the consumer did not finish in time")??;
        let Some(line) = line else {
            bail!(
                "the consumer exited after {acked} of {n} acks; its last lines:\n{}",
                tail.join("\n")
            );
        };
        if start.is_none() && (line.contains("job.started") || line.contains("raw.first")) {
            let db = if with_db { postgres_ticks() } else { 0 };
            start = Some((Instant::now(), cpu_ticks(pid, false).unwrap_or(0), db));
        }
        if let Some(k) = acks_in(&line, subscription) {
            acked += k;
        } else if !line.contains("job.s") {
            tail.push(line);
            if tail.len() > 20 {
                tail.remove(0);
            }
        }
    }
    let end = Instant::now();
    let cpu_end = cpu_ticks(pid, false).unwrap_or(0);
    let db_end = if with_db { postgres_ticks() } else { 0 };
    let (t0, cpu0, db0) = start.context("no job started")?;
    let secs = end.duration_since(t0).as_secs_f64();
    // Stop it (SIGTERM: the worker's graceful shutdown), reading what it still says.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let drain = async {
        while let Ok(Some(_)) = lines.next_line().await {}
        child.wait().await
    };
    if tokio::time::timeout(Duration::from_secs(30), drain)
        .await
        .is_err()
    {
        eprintln!("the consumer did not stop within 30 s of SIGTERM; killed");
    }
    let per_job = |ticks: u64| ticks as f64 / tck * 1e6 / n as f64;
    Ok(Run {
        rate: n as f64 / secs,
        cpu_us: per_job(cpu_end.saturating_sub(cpu0)),
        db_us: with_db.then(|| per_job(db_end.saturating_sub(db0))),
    })
}

/// The raw consumer: acks every message of `subscription` with gcloud-pubsub, as the main
/// bench's baseline does (500 per ack request, or every 20 ms), printing `raw.first` at the
/// first message and `acks.sent subscription="..." count=K` after each ack answered.
async fn raw_consume(subscription: &str, streams: usize) -> anyhow::Result<()> {
    use gcloud_pubsub::client::{Client as GClient, ClientConfig as GConfig};
    use gcloud_pubsub::subscriber::SubscriberConfig;
    use gcloud_pubsub::subscription::SubscribeConfig;
    let host = std::env::var("PUBSUB_EMULATOR_HOST").context("PUBSUB_EMULATOR_HOST")?;
    let project = std::env::var("PUBSUB_PROJECT_ID").context("PUBSUB_PROJECT_ID")?;
    let client = GClient::new(GConfig {
        environment: gcloud_gax::conn::Environment::Emulator(host),
        project_id: Some(project),
        ..Default::default()
    })
    .await?;
    let sub = client.subscription(subscription);
    let first = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let cfg = SubscribeConfig::default().with_subscriber_config(SubscriberConfig {
            max_outstanding_messages: 1000,
            ..Default::default()
        });
        let mut stream = sub.subscribe(Some(cfg)).await?;
        let (sub, first, name) = (sub.clone(), first.clone(), subscription.to_string());
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            let ack = |ids: Vec<String>| {
                let (sub, name) = (sub.clone(), name.clone());
                async move {
                    let k = ids.len();
                    if sub.ack(ids).await.is_ok() {
                        eprintln!("acks.sent subscription=\"{name}\" count={k}");
                    }
                }
            };
            loop {
                let m = tokio::select! {
                    m = stream.next() => m,
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {
                        if !acks.is_empty() { ack(std::mem::take(&mut acks)).await; }
                        continue;
                    }
                };
                let Some(m) = m else { break };
                if first.fetch_add(1, Ordering::Relaxed) == 0 {
                    eprintln!("raw.first");
                }
                acks.push(m.ack_id.clone());
                if acks.len() >= 500 {
                    ack(std::mem::take(&mut acks)).await;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if let Some(sub) = &args.raw_consume {
        return raw_consume(sub, args.streams).await;
    }
    let db = fresh_pg::create(&args.pg).await?;
    args.pg = db.url.clone();
    let result = run(args).await;
    db.drop().await?;
    result
}

async fn run(args: Args) -> anyhow::Result<()> {
    let me = std::env::current_exe()?;
    let worker = match &args.worker {
        Some(w) => w.clone(),
        None => me.with_file_name("worker"),
    };
    anyhow::ensure!(
        worker.exists(),
        "no worker binary at {} (cargo build --release -p pubsub-jobs-cli, or --worker PATH)",
        worker.display()
    );
    let host = pubsub_jobs::emulator::shared_host().context("an emulator")?;
    let project = "e2e-bench";
    let tck = ticks_per_second();
    let dir = std::env::temp_dir().join(format!("pubsub-jobs-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let sqlite = format!("sqlite://{}", dir.join("jobs.db").display());
    let store_of = |kind: &str| -> anyhow::Result<Option<String>> {
        Ok(match kind {
            "raw" | "none" => None,
            "sqlite" => Some(sqlite.clone()),
            "postgres" => Some(args.pg.clone()),
            other => bail!("unknown kind {other:?}: raw, none, sqlite or postgres"),
        })
    };
    let one = |kind: String, n: usize| {
        let (worker, me, args) = (worker.clone(), me.clone(), args.clone());
        let store = store_of(&kind);
        async move {
            let store = store?;
            let queue = format!(
                "e2e-{kind}-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            );
            enqueue(&worker, host, project, store.as_deref(), &queue, n).await?;
            let cmd = if kind == "raw" {
                let mut c = tokio::process::Command::new(&me);
                env_for(&mut c, host, project, None);
                c.args(["--raw-consume", &queue, "--streams"])
                    .arg(args.streams.to_string());
                c
            } else {
                let mut c = tokio::process::Command::new(&worker);
                env_for(&mut c, host, project, store.as_deref());
                c.env("RUST_LOG", "info,pubsub_jobs::worker::ack=debug")
                    .args(["--queue", &queue, "--log-format", &args.log_format])
                    .args(["--concurrency", &args.concurrency.to_string()])
                    .args(["--streams", &args.streams.to_string()])
                    .args(["--stats-interval", "3600"]);
                c
            };
            let run = measure(cmd, &queue, n, kind == "postgres", tck).await?;
            if let Some(url) = &store {
                // The user's wait is over only if the store shows every job finished.
                let s = pubsub_jobs::store::connect(url).await?;
                let q = pubsub_jobs::store::ListQuery {
                    queue: Some(queue.clone()),
                    status: Some(pubsub_jobs::store::JobStatus::Succeeded),
                    limit: 1,
                    ..Default::default()
                };
                let c = s.count(&q).await?;
                anyhow::ensure!(
                    c.count == n as u64,
                    "{kind}: the store shows {} of {n} jobs succeeded once all were acked",
                    c.count
                );
            }
            anyhow::Ok(run)
        }
    };
    // Warm-up (the emulator's JIT, the stores' files and caches), unmeasured.
    for kind in &args.kinds {
        one(kind.clone(), args.n.min(2_000)).await?;
    }
    let mut runs: Vec<(String, Vec<Run>)> =
        args.kinds.iter().map(|k| (k.clone(), Vec::new())).collect();
    for r in 1..=args.rounds.max(1) {
        let mut line = format!("round {r}:");
        for (kind, v) in runs.iter_mut() {
            let run = one(kind.clone(), args.n).await?;
            line.push_str(&format!(
                " {kind} {:.0} jobs/s {:.1} us/job{};",
                run.rate,
                run.cpu_us,
                run.db_us
                    .map(|d| format!(" + db {d:.1}"))
                    .unwrap_or_default()
            ));
            v.push(run);
        }
        eprintln!("{line}");
    }
    let med = |v: &[Run]| Run {
        rate: median(v.iter().map(|r| r.rate).collect()),
        cpu_us: median(v.iter().map(|r| r.cpu_us).collect()),
        db_us: v
            .iter()
            .map(|r| r.db_us)
            .collect::<Option<Vec<f64>>>()
            .map(median),
    };
    let meds: Vec<(String, Run)> = runs.iter().map(|(k, v)| (k.clone(), med(v))).collect();
    let none = meds.iter().find(|(k, _)| k == "none").map(|(_, r)| *r);
    let raw = meds.iter().find(|(k, _)| k == "raw").map(|(_, r)| *r);
    println!(
        "the worker binary, {} no-op MockJobs, concurrency {}, {} streams, log format {}; clock: first start to the last ack (medians of {})",
        args.n, args.concurrency, args.streams, args.log_format, args.rounds
    );
    println!("| consumer | jobs/s | vs no store | CPU us/job (consumer) | vs raw | CPU us/job (database) |");
    println!("|---|---|---|---|---|---|");
    for (kind, r) in &meds {
        let vs_none = none
            .map(|b| format!("{:.2}x", r.rate / b.rate))
            .unwrap_or_default();
        let vs_raw = raw
            .map(|b| format!("{:.1}x", r.cpu_us / b.cpu_us))
            .unwrap_or_default();
        let db = r.db_us.map(|d| format!("{d:.1}")).unwrap_or_default();
        let label = match kind.as_str() {
            "raw" => "raw gcloud-pubsub (acks only)",
            "none" => "worker, no store",
            "sqlite" => "worker, SQLite",
            "postgres" => "worker, PostgreSQL",
            _ => kind,
        };
        println!(
            "| {label} | {:.0} | {vs_none} | {:.1} | {vs_raw} | {db} |",
            r.rate, r.cpu_us
        );
    }
    if args.json {
        let obj: serde_json::Map<String, serde_json::Value> = meds
            .iter()
            .map(|(k, r)| {
                (
                    k.clone(),
                    serde_json::json!({"jobs_per_s": r.rate, "cpu_us_per_job": r.cpu_us,
                        "db_cpu_us_per_job": r.db_us}),
                )
            })
            .collect();
        println!("{}", serde_json::Value::Object(obj));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
