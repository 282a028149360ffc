//! Commit -> started latency of transactional enqueue (`perform_later_in(&mut tx)`, the relay
//! woken by PostgreSQL's NOTIFY), beside the baseline of a plain `perform_later` on the same
//! client and store (published by the enqueuer itself): from the moment the call (or the commit)
//! returns until the job's `perform` starts, in a worker in this process, on the emulator.
//! Medians of 3 rounds.
//!
//! ```text
//! cargo run --release -p bench --bin tx_latency -- --jobs 50
//! ```

use bench_support::{median, quantile};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use pubsub_jobs::{register_job, store, Client, ClientConfig, Job, JobContext, JobError};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
struct Args {
    /// Jobs per round and path.
    #[arg(long, default_value_t = 50)]
    jobs: usize,
    /// Rounds (the medians are reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The PostgreSQL database (job store and application alike).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1/test")]
    pg: String,
    /// Print one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

static STARTED: Mutex<Option<HashMap<u64, Instant>>> = Mutex::new(None);

#[derive(Serialize, Deserialize)]
struct Ping {
    n: u64,
}

impl Job for Ping {
    const NAME: &'static str = "TxLatencyPing";
    async fn perform(&self, _ctx: &JobContext) -> Result<(), JobError> {
        STARTED
            .lock()
            .unwrap()
            .get_or_insert_with(HashMap::new)
            .insert(self.n, Instant::now());
        Ok(())
    }
}
register_job!(Ping);

async fn started(n: u64) -> Option<Instant> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(t) = STARTED.lock().unwrap().as_ref().and_then(|m| m.get(&n)) {
            return Some(*t);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let host = pubsub_jobs::emulator::shared_host().context("an emulator")?;
    let config = ClientConfig {
        project_id: "tx-latency".into(),
        emulator_host: Some(host.to_string()),
        ..ClientConfig::default()
    };
    let store = store::connect(&args.pg).await.context("the job store")?;
    let client = Client::connect(config).await?.with_store(store);
    let app = sqlx::PgPool::connect(&args.pg).await?;
    let queue = format!("txlat-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    client.ensure_queue(&queue).await?;
    let stop = CancellationToken::new();
    let mut wc = pubsub_jobs::WorkerConfig::new(&queue);
    wc.streams = 2;
    let worker = tokio::spawn(pubsub_jobs::Worker::new(client.clone(), wc).run(stop.clone()));
    // Warm up: streams open, the relay listening, the emulator's JIT.
    let mut n: u64 = 0;
    for _ in 0..20 {
        n += 1;
        Ping { n }
            .set()
            .queue(&queue)
            .perform_later(&client)
            .await?;
        started(n).await.context("warm-up job did not start")?;
    }
    let (mut direct_p50, mut direct_p99, mut tx_p50, mut tx_p99) = (vec![], vec![], vec![], vec![]);
    for round in 1..=args.rounds {
        let (mut direct, mut tx_lat) = (Vec::new(), Vec::new());
        for _ in 0..args.jobs {
            n += 1;
            Ping { n }
                .set()
                .queue(&queue)
                .perform_later(&client)
                .await?;
            let t0 = Instant::now();
            let t = started(n).await.context("a job did not start")?;
            direct.push(t.saturating_duration_since(t0).as_secs_f64() * 1000.0);

            n += 1;
            let mut tx = app.begin().await?;
            Ping { n }
                .set()
                .queue(&queue)
                .perform_later_in(&client, &mut tx)
                .await?;
            tx.commit().await?;
            let t0 = Instant::now();
            let t = started(n)
                .await
                .context("a transactional job did not start")?;
            tx_lat.push(t.saturating_duration_since(t0).as_secs_f64() * 1000.0);
        }
        let (d50, d99, t50, t99) = (
            quantile(direct.clone(), 0.5),
            quantile(direct, 0.99),
            quantile(tx_lat.clone(), 0.5),
            quantile(tx_lat, 0.99),
        );
        println!("round {round}: perform_later -> started p50 {d50:.1} ms p99 {d99:.1} ms | commit -> started p50 {t50:.1} ms p99 {t99:.1} ms");
        direct_p50.push(d50);
        direct_p99.push(d99);
        tx_p50.push(t50);
        tx_p99.push(t99);
    }
    stop.cancel();
    worker.await??;
    let (d50, d99, t50, t99) = (
        median(direct_p50),
        median(direct_p99),
        median(tx_p50),
        median(tx_p99),
    );
    println!(
        "\n{:<40} {:>10} {:>10}",
        "medians of rounds (ms)", "p50", "p99"
    );
    println!(
        "{:<40} {:>10.1} {:>10.1}",
        "perform_later -> started (baseline)", d50, d99
    );
    println!(
        "{:<40} {:>10.1} {:>10.1}",
        "commit -> started (transactional)", t50, t99
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({"direct_p50_ms": d50, "direct_p99_ms": d99, "tx_p50_ms": t50, "tx_p99_ms": t99})
        );
    }
    Ok(())
}
