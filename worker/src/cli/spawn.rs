//! `worker spawn`: load. Enqueues N random MockJobs at a steady rate (batched per 50 ms tick),
//! prints every job id, shows a progress bar on a terminal, and ends with a one-line summary.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::bail;
use rand::SeedableRng;

use crate::mock_job::MockJob;
use pubsub_jobs::Client;

/// Spawner settings.
#[derive(Clone, Debug)]
pub struct SpawnOptions {
    /// Jobs to enqueue.
    pub count: u64,
    /// Jobs per second.
    pub rate: f64,
    /// Probability that a job always fails.
    pub fail_ratio: f64,
    /// Longest sleep, seconds.
    pub max_sleep: f64,
    /// Target queue.
    pub queue: String,
    /// Print job.enqueued JSON events instead of bare ids.
    pub json: bool,
}

impl SpawnOptions {
    /// Refuses settings that cannot work, naming the flag.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.count == 0 {
            bail!("--count must be at least 1");
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            bail!(
                "--rate must be a positive number of jobs per second, got {}",
                self.rate
            );
        }
        if !(0.0..=1.0).contains(&self.fail_ratio) {
            bail!(
                "--fail-ratio must be between 0 and 1, got {}",
                self.fail_ratio
            );
        }
        if !(self.max_sleep.is_finite() && self.max_sleep >= 0.0) {
            bail!(
                "--max-sleep must be a non-negative number of seconds, got {}",
                self.max_sleep
            );
        }
        Ok(())
    }
}

/// Enqueues the jobs; returns once all were accepted by Pub/Sub.
pub async fn run(client: &Client, opts: SpawnOptions) -> anyhow::Result<()> {
    opts.validate()?;
    client.validate_queue(&opts.queue)?;
    client.ensure_queue(&opts.queue).await?;
    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(opts.count);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} jobs  {per_sec}  eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let mut rng = rand::rngs::StdRng::from_entropy();
    let started = Instant::now();
    let tick = Duration::from_millis(50);
    let mut interval = tokio::time::interval(tick);
    let mut sent: u64 = 0;
    let mut failing: u64 = 0;
    let mut last_line = Instant::now();
    let mut out = std::io::stdout();
    while sent < opts.count {
        let due =
            ((started.elapsed().as_secs_f64() * opts.rate).floor() as u64 + 1).min(opts.count);
        if due <= sent {
            interval.tick().await;
            continue;
        }
        // Behind schedule (a very large --rate: as fast as possible), in bulk enqueues of at
        // most 5,000 (recorded in the store's outbox first when one is given).
        let due = due.min(sent + 5_000);
        let jobs: Vec<MockJob> = (sent..due)
            .map(|_| MockJob::random(&mut rng, opts.max_sleep, opts.fail_ratio))
            .collect();
        failing += jobs.iter().filter(|j| j.raise_error).count() as u64;
        let ids = client.perform_all_later_on(&opts.queue, jobs).await?;
        for id in &ids {
            if opts.json {
                let line = serde_json::json!({
                    "timestamp": chrono::Utc::now().to_rfc3339(),
                    "event": "job.enqueued",
                    "job_id": id,
                    "job_class": "MockJob",
                    "queue": opts.queue,
                    "attempt": 1,
                });
                writeln!(out, "{line}")?;
            } else {
                writeln!(out, "{id}")?;
            }
        }
        sent = due;
        match &bar {
            Some(b) => b.set_position(sent),
            None if last_line.elapsed() >= Duration::from_secs(5) => {
                last_line = Instant::now();
                eprintln!(
                    "spawned {sent}/{} MockJobs on queue {:?}",
                    opts.count, opts.queue
                );
            }
            None => {}
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "spawned {sent} MockJobs on queue {:?} in {secs:.1} s ({:.1}/s), {failing} set to fail",
        opts.queue,
        sent as f64 / secs.max(0.001)
    );
    Ok(())
}
