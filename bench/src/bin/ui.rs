//! The dashboard's pages at scale: fills a SQLite store and a PostgreSQL one with `--fill`
//! finished jobs (default 1,000,000: 5 classes, 4 queues, 2% morgued with errors, text in the
//! arguments) plus 2,500 live ones, serves `worker api`'s router in process, and times each page
//! over HTTP (server side: request to last byte on loopback), median of `--rounds`. The
//! target is 100 ms per page.
//!
//! ```sh
//! cargo run --release -p bench --bin ui -- --fill 1000000
//! ```

use bench_support::{fill, median};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use pubsub_jobs::api::{ApiConfig, ApiState};
use pubsub_jobs::broker::MemoryBroker;
use pubsub_jobs::store::{self, JobStore, NewJob};
use pubsub_jobs::{Client, ClientConfig};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(about = "Dashboard page times at scale, SQLite and PostgreSQL side by side")]
struct Args {
    /// Finished jobs to fill each store with.
    #[arg(long, default_value_t = 1_000_000)]
    fill: usize,
    /// Timed requests per page (the median is shown).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// PostgreSQL server (a database `pj_bench_ui` is created afresh on it).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    postgres: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

const CLASSES: [&str; 5] = [
    "SendInvoice",
    "ResizeImage",
    "SyncCustomer",
    "ChargeCard",
    "Webhook",
];

/// Fills `store` as workers would: submit, start, then succeed (or, one in 50, morgue) in
/// batches of 1,000; then leaves 2,500 jobs pending and scheduled. Returns the last job's id.
async fn fill(s: &Arc<dyn JobStore>, n: usize) -> anyhow::Result<uuid::Uuid> {
    let t0 = Instant::now();
    let mut done = 0;
    let job = |k: usize, later: bool| NewJob {
        id: uuid::Uuid::now_v7(),
        job_class: CLASSES[k % CLASSES.len()].into(),
        queue: format!("queue-{}", k % 4),
        arguments: serde_json::json!({ "customer": format!("customer-{k}"), "plan": if k.is_multiple_of(3) { "pro" } else { "team" }, "amount_cents": k % 10_000 }),
        metadata: Default::default(),
        enqueued_at: chrono::Utc::now(),
        scheduled_at: later.then(|| chrono::Utc::now() + chrono::Duration::hours(1)),
        dedup: None,
        message: None,
    };
    let mut last = uuid::Uuid::nil();
    while done < n {
        let k = (n - done).min(1_000);
        let jobs: Vec<NewJob> = (done..done + k).map(|i| job(i, false)).collect();
        last = jobs[jobs.len() - 1].id;
        s.submit_many(jobs.clone()).await?;
        s.record_batch(&fill::starts(&jobs)).await?;
        s.record_batch(&fill::ends(&jobs, |i| {
            ((done + i) % 50 == 0).then(|| {
                format!(
                    "connection refused by payments-{} after 3 attempts",
                    (done + i) % 7
                )
            })
        }))
        .await?;
        done += k;
        if done % 100_000 == 0 {
            s.maintain(&store::Retention::keep_all()).await?;
            eprintln!(
                "filled {done} ({:.0} jobs/s)",
                done as f64 / t0.elapsed().as_secs_f64()
            );
        }
    }
    let live: Vec<NewJob> = (0..2_500).map(|i| job(n + i, i % 2 == 0)).collect();
    s.submit_many(live).await?;
    while s.maintain(&store::Retention::keep_all()).await?.folded > 0 {}
    Ok(last)
}

/// The pages timed: (name, path).
fn pages(job: uuid::Uuid) -> Vec<(&'static str, String)> {
    vec![
        ("Overview", "/ui/".into()),
        ("Jobs (all)", "/ui/jobs".into()),
        ("Jobs by status (morgued)", "/ui/jobs?status=morgued".into()),
        ("Jobs by queue", "/ui/jobs?queue=queue-1".into()),
        ("Jobs by class", "/ui/jobs?class=ChargeCard".into()),
        (
            "Jobs by queue + status",
            "/ui/jobs?queue=queue-1&status=morgued".into(),
        ),
        (
            "Jobs by text (one match)",
            "/ui/jobs?q=customer-999999%22".into(),
        ),
        (
            "Morgue by class + text",
            "/ui/morgue?class=ChargeCard&q=payments-3".into(),
        ),
        ("Scheduled", "/ui/scheduled".into()),
        ("Job", format!("/ui/jobs/{job}")),
        ("Enqueue", "/ui/enqueue".into()),
    ]
}

async fn time_pages(
    s: Arc<dyn JobStore>,
    job: uuid::Uuid,
    rounds: usize,
) -> anyhow::Result<Vec<(&'static str, f64)>> {
    let client =
        Client::with_memory_broker(MemoryBroker::new(), ClientConfig::default()).with_store(s);
    let state = ApiState::new(client, ApiConfig::default())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let stop = CancellationToken::new();
    let server = tokio::spawn(pubsub_jobs::api::serve(listener, state, stop.clone()));
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    for (name, path) in pages(job) {
        let mut times = Vec::new();
        for _ in 0..rounds.max(1) {
            let t = Instant::now();
            let r = http.get(format!("{base}{path}")).send().await?;
            let status = r.status();
            r.bytes().await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(status.is_success(), "{path}: {status}");
        }
        out.push((name, median(times)));
    }
    stop.cancel();
    let _ = server.await;
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile_dir()?;
    let sqlite = store::connect(&format!("sqlite://{}/ui.db", dir.display())).await?;
    eprintln!("filling SQLite with {} jobs", args.fill);
    let sqlite_job = fill(&sqlite, args.fill).await?;
    let sqlite_times = time_pages(sqlite, sqlite_job, args.rounds).await?;

    let admin = format!("{}/postgres", args.postgres.trim_end_matches('/'));
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .with_context(|| format!("PostgreSQL at {admin}"))?;
    sqlx::query("DROP DATABASE IF EXISTS pj_bench_ui")
        .execute(&mut conn)
        .await?;
    sqlx::query("CREATE DATABASE pj_bench_ui")
        .execute(&mut conn)
        .await?;
    let pg_url = format!("{}/pj_bench_ui", args.postgres.trim_end_matches('/'));
    let pg = store::connect(&pg_url).await?;
    eprintln!("filling PostgreSQL with {} jobs", args.fill);
    let pg_job = fill(&pg, args.fill).await?;
    // As autovacuum would after such a fill: fresh statistics and visibility.
    sqlx::query("VACUUM ANALYZE")
        .execute(&mut <sqlx::PgConnection as sqlx::Connection>::connect(&pg_url).await?)
        .await?;
    let pg_times = time_pages(pg, pg_job, args.rounds).await?;
    sqlx::query("DROP DATABASE IF EXISTS pj_bench_ui WITH (FORCE)")
        .execute(&mut conn)
        .await?;
    let _ = std::fs::remove_dir_all(&dir);

    if args.json {
        let rows: Vec<serde_json::Value> = sqlite_times
            .iter()
            .zip(&pg_times)
            .map(|((name, a), (_, b))| serde_json::json!({"page": name, "sqlite_ms": a, "postgres_ms": b}))
            .collect();
        println!(
            "{}",
            serde_json::json!({ "fill": args.fill, "rounds": args.rounds, "pages": rows })
        );
    } else {
        println!(
            "dashboard pages, {} finished jobs + 2,500 live, median of {} (target: 100 ms)",
            args.fill, args.rounds
        );
        println!("{:<28} {:>10} {:>12}", "page", "SQLite ms", "PostgreSQL ms");
        for ((name, a), (_, b)) in sqlite_times.iter().zip(&pg_times) {
            println!("{name:<28} {a:>10.1} {b:>12.1}");
        }
    }
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("pubsub-jobs-ui-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
