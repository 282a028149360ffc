//! API benchmark: `GET /v1/jobs/{id}` under load from wrk, beside `GET /healthz` (one store
//! round trip, no JSON of a job) as the baseline, in one run. Runs the release `worker api`
//! binary as its own process on a SQLite store in a temp dir, against an emulator it starts (or
//! PUBSUB_EMULATOR_HOST), submits one job, and lets a worker in that process's sibling finish
//! it, so the polled job is a finished one; then polls a live (pending) one too.
//!
//! ```text
//! cargo build --release -p pubsub-jobs-cli && cargo run --release -p bench --bin api -- --duration 10
//! ```
//! Needs wrk (Debian package `wrk`).

use bench_support::{fresh_pg, median_by};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;

#[derive(Parser, Debug, Clone)]
struct Args {
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// wrk connections.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 1)]
    threads: u32,
    /// The worker binary (default: target/release/worker beside this one).
    #[arg(long)]
    worker_bin: Option<String>,
    /// Print one JSON object on the last line.
    #[arg(long)]
    json: bool,
    /// The job store (default: SQLite in a temp directory), e.g. postgres://postgres@127.0.0.1/test
    /// (the benchmark then creates a database of its own on that server and drops it at the end).
    #[arg(long)]
    store: Option<String>,
    /// Rounds of the four measurements, alternating (the medians are reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Debug, Default, serde::Serialize)]
struct WrkResult {
    requests_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx_3xx: u64,
    errors: u64,
}

fn parse_ms(s: &str) -> f64 {
    let s = s.trim();
    for (unit, f) in [("us", 0.001), ("ms", 1.0), ("s", 1000.0)] {
        if let Some(v) = s.strip_suffix(unit) {
            return v.parse::<f64>().unwrap_or(f64::NAN) * f;
        }
    }
    f64::NAN
}

fn wrk(url: &str, args: &Args) -> anyhow::Result<WrkResult> {
    wrk_with(url, args, None)
}

/// wrk with a Lua script (for POST requests).
fn wrk_with(url: &str, args: &Args, script: Option<&std::path::Path>) -> anyhow::Result<WrkResult> {
    let mut cmd = Command::new("wrk");
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    let out = cmd
        .args([
            "-t",
            &args.threads.to_string(),
            "-c",
            &args.connections.to_string(),
            "-d",
            &format!("{}s", args.duration),
            "--latency",
            url,
        ])
        .output()
        .context("running wrk (apt-get install wrk)")?;
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut r = WrkResult::default();
    for line in text.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            r.requests_per_s = v.trim().parse().unwrap_or(f64::NAN);
        } else if let Some(v) = t.strip_prefix("50%") {
            r.p50_ms = parse_ms(v);
        } else if let Some(v) = t.strip_prefix("99%") {
            r.p99_ms = parse_ms(v);
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx_3xx = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            r.errors = v
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        }
    }
    Ok(r)
}

async fn wait_http(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(r) = reqwest::get(url).await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{url} did not come up in {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    let fresh = match &args.store {
        Some(url) if url.starts_with("postgres") => {
            let db = fresh_pg::create(url).await?;
            args.store = Some(db.url.clone());
            Some(db)
        }
        _ => None,
    };
    let result = run(args).await;
    if let Some(db) = fresh {
        db.drop().await?;
    }
    result
}

async fn run(args: Args) -> anyhow::Result<()> {
    let host = pubsub_jobs::emulator::shared_host()
        .context("an emulator")?
        .to_string();
    let worker_bin = match &args.worker_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .with_file_name("worker")
            .to_string_lossy()
            .into_owned(),
    };
    let dir = std::env::temp_dir().join(format!("pubsub-jobs-api-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = args
        .store
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.join("jobs.db").display()));
    let store_name = if store.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let queue = format!(
        "apibench-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let spawn = |sub: &[&str]| -> anyhow::Result<Kill> {
        Ok(Kill(
            Command::new(&worker_bin)
                .args(sub)
                .env("PUBSUB_EMULATOR_HOST", &host)
                .env("PUBSUB_JOBS_STORE", &store)
                .env("QUEUE_NAME", &queue)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .with_context(|| {
                    format!("starting {worker_bin} (cargo build --release -p pubsub-jobs-cli)")
                })?,
        ))
    };
    let base = format!("http://127.0.0.1:{port}");
    let _api = spawn(&["api", "--bind", &format!("127.0.0.1:{port}")])?;
    wait_http(&format!("{base}/healthz"), Duration::from_secs(30)).await?;
    let http = reqwest::Client::new();
    let submit = |args: serde_json::Value| {
        let http = http.clone();
        let url = format!("{base}/v1/jobs");
        let queue = queue.clone();
        async move {
            let r: serde_json::Value = http
                .post(url)
                .json(
                    &serde_json::json!({"job_class": "MockJob", "arguments": args, "queue": queue}),
                )
                .send()
                .await?
                .json()
                .await?;
            anyhow::Ok(r["id"].as_str().context("no id")?.to_string())
        }
    };
    let finished = submit(serde_json::json!({"sleep_duration": 0.0, "raise_error": false})).await?;
    let live = submit(serde_json::json!({"sleep_duration": 0.0, "raise_error": false})).await?;
    // Run the first job to completion, then stop the worker so the second stays pending.
    {
        let _worker = spawn(&["--queue", &queue])?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let j: serde_json::Value = http
                .get(format!("{base}/v1/jobs/{finished}"))
                .send()
                .await?
                .json()
                .await?;
            if j["status"] == "succeeded" {
                break;
            }
            if Instant::now() > deadline {
                bail!("the job did not finish: {j}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Submits: each a new job, recorded in the outbox and published (no worker runs them).
    let script = dir.join("post.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = '{{\"job_class\":\"MockJob\",\"arguments\":{{\"sleep_duration\":0,\"raise_error\":false}},\"queue\":\"{queue}\"}}'\n"
        ),
    )?;
    // Warm-up, unmeasured: the emulator's JIT compiles its publish path, the store its caches.
    let warm = Args {
        duration: args.duration.min(3),
        ..args.clone()
    };
    wrk_with(&format!("{base}/v1/jobs"), &warm, Some(&script))?;
    wrk(&format!("{base}/v1/jobs/{live}"), &warm)?;
    let (mut health, mut get_finished, mut get_live, mut post) = (vec![], vec![], vec![], vec![]);
    for r in 1..=args.rounds.max(1) {
        health.push(wrk(&format!("{base}/healthz"), &args)?);
        get_finished.push(wrk(&format!("{base}/v1/jobs/{finished}"), &args)?);
        get_live.push(wrk(&format!("{base}/v1/jobs/{live}"), &args)?);
        post.push(wrk_with(&format!("{base}/v1/jobs"), &args, Some(&script))?);
        eprintln!(
            "round {r}: GET pending {:.0} req/s, POST {:.0} req/s (p99 {:.1} ms)",
            get_live[r - 1].requests_per_s,
            post[r - 1].requests_per_s,
            post[r - 1].p99_ms
        );
    }
    let (health, get_finished, get_live, post) = (
        median_by(health, |r| r.requests_per_s),
        median_by(get_finished, |r| r.requests_per_s),
        median_by(get_live, |r| r.requests_per_s),
        median_by(post, |r| r.requests_per_s),
    );
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "API benchmark: wrk -t{} -c{} -d{}s, {store_name} store, {cores} cores (wrk and the API share them), medians of {} rounds",
        args.threads, args.connections, args.duration, args.rounds.max(1)
    );
    println!(
        "{:<34} {:>12} {:>10} {:>10} {:>8}",
        "", "requests/s", "p50 ms", "p99 ms", "errors"
    );
    for (name, r) in [
        ("GET /healthz (baseline)", &health),
        ("GET /v1/jobs/{id} (succeeded)", &get_finished),
        ("GET /v1/jobs/{id} (pending)", &get_live),
        ("POST /v1/jobs", &post),
    ] {
        println!(
            "{:<34} {:>12.0} {:>10.2} {:>10.2} {:>8}",
            name,
            r.requests_per_s,
            r.p50_ms,
            r.p99_ms,
            r.errors + r.non_2xx_3xx
        );
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({"healthz": health, "get_job_finished": get_finished, "get_job_pending": get_live,
                "post_job": post, "post_vs_get": post.requests_per_s / get_live.requests_per_s})
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "POST / GET (pending): {:.2}",
        post.requests_per_s / get_live.requests_per_s
    );
    if get_finished.non_2xx_3xx + get_live.non_2xx_3xx + post.non_2xx_3xx > 0 {
        bail!("some requests failed");
    }
    Ok(())
}
