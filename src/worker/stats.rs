//! Counters of a running worker, logged every `stats_interval` and at stop.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

const RESERVOIR: usize = 10_000;

/// Outcome counts and run times.
#[derive(Default)]
pub(crate) struct Stats {
    pub processed: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub retried: AtomicU64,
    pub morgued: AtomicU64,
    pub discarded: AtomicU64,
    pub running: AtomicU64,
    pub open_streams: std::sync::Arc<AtomicU64>,
    pub parked: std::sync::Arc<AtomicU64>,
    pub acked: std::sync::Arc<AtomicU64>,
    pub leased: std::sync::Arc<AtomicU64>,
    run_ms: Mutex<Vec<u64>>,
    seen: AtomicU64,
}

/// A snapshot of a worker's counts.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct WorkerSummary {
    /// Messages taken to run (jobs started plus messages sent straight to the morgue).
    pub processed: u64,
    /// Jobs that succeeded.
    pub succeeded: u64,
    /// Executions that failed.
    pub failed: u64,
    /// Retries published.
    pub retried: u64,
    /// Jobs sent to the morgue.
    pub morgued: u64,
    /// Jobs discarded by `discard_on`.
    pub discarded: u64,
    /// Jobs running now.
    pub running: u64,
    /// Scheduled jobs handed back to Pub/Sub until nearer their time (each park counts).
    pub parked: u64,
    /// Messages of this queue acked (Pub/Sub answered the ack): the last step of every job
    /// (its outcome is durable before).
    pub acked: u64,
    /// Median run time of recent jobs, ms.
    pub p50_ms: u64,
    /// 99th percentile run time of recent jobs, ms.
    pub p99_ms: u64,
}

impl Stats {
    pub(crate) fn record_run(&self, d: Duration) {
        let ms = d.as_millis() as u64;
        let n = self.seen.fetch_add(1, Relaxed) as usize;
        let mut v = self.run_ms.lock().unwrap_or_else(|p| p.into_inner());
        if v.len() < RESERVOIR {
            v.push(ms);
        } else {
            v[n % RESERVOIR] = ms;
        }
    }

    pub(crate) fn summary(&self) -> WorkerSummary {
        let mut v = self
            .run_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        v.sort_unstable();
        let pct = |p: f64| -> u64 {
            if v.is_empty() {
                0
            } else {
                v[((v.len() - 1) as f64 * p).round() as usize]
            }
        };
        WorkerSummary {
            processed: self.processed.load(Relaxed),
            succeeded: self.succeeded.load(Relaxed),
            failed: self.failed.load(Relaxed),
            retried: self.retried.load(Relaxed),
            morgued: self.morgued.load(Relaxed),
            discarded: self.discarded.load(Relaxed),
            running: self.running.load(Relaxed),
            parked: self.parked.load(Relaxed),
            acked: self.acked.load(Relaxed),
            p50_ms: pct(0.5),
            p99_ms: pct(0.99),
        }
    }
}
