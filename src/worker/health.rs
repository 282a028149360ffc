//! The health file: a running worker rewrites a small JSON report every few seconds, so that a
//! liveness probe (`worker health --file PATH`) reads a file instead of calling Pub/Sub. A
//! probe every 10 s on every pod would otherwise spend the project's admin-call quota (a
//! subscription lookup each) to learn nothing a restart would fix.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Shared;

/// How often a worker rewrites its health file.
pub const HEALTH_EVERY: Duration = Duration::from_secs(5);

/// What a worker's health file says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// The queue it runs.
    pub queue: String,
    /// Its process id.
    pub pid: u32,
    /// When it wrote this.
    pub at: DateTime<Utc>,
    /// Streaming pulls open.
    pub streams_open: u64,
    /// Messages it holds (leased).
    pub leased: u64,
    /// Jobs running.
    pub running: u64,
}

impl HealthReport {
    /// Reads the report at `path` and judges it: healthy if written within `max_age` by a
    /// worker with a stream open. The error says why not, in words.
    pub fn check(path: &Path, max_age: Duration) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "no health file at {} ({e}): is the worker running with --health-file?",
                path.display()
            )
        })?;
        let report: Self = serde_json::from_str(&text).map_err(|e| {
            format!(
                "the health file {} is not a worker's report: {e}",
                path.display()
            )
        })?;
        let age = Utc::now().signed_duration_since(report.at);
        let age_s = age.num_milliseconds() as f64 / 1000.0;
        if age_s > max_age.as_secs_f64() {
            return Err(format!(
                "worker {} (queue {:?}) last reported {age_s:.0} s ago, more than {} s: it is stuck or gone",
                report.pid,
                report.queue,
                max_age.as_secs()
            ));
        }
        if report.streams_open == 0 {
            return Err(format!(
                "worker {} (queue {:?}) has no streaming pull open",
                report.pid, report.queue
            ));
        }
        Ok(report)
    }
}

/// Rewrites `path` every [`HEALTH_EVERY`] until aborted (the worker removes it when it stops).
pub(crate) fn spawn(path: PathBuf, shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(HEALTH_EVERY);
        let mut warned = false;
        loop {
            interval.tick().await;
            let report = HealthReport {
                queue: shared.queue.clone(),
                pid: std::process::id(),
                at: Utc::now(),
                streams_open: shared.stats.open_streams.load(Relaxed),
                leased: shared.lease.held() as u64,
                running: shared.stats.running.load(Relaxed),
            };
            if let Err(e) = write(&path, &report) {
                if !warned {
                    tracing::warn!(path = %path.display(), error = %e, "cannot write the health file");
                    warned = true;
                }
            }
        }
    })
}

/// Writes the report whole: to a file beside it, then renamed over it.
fn write(path: &Path, report: &HealthReport) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let body = serde_json::to_vec(report).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_report_with_a_stream_is_healthy_and_anything_else_says_why_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("health.json");
        let err = HealthReport::check(&path, Duration::from_secs(30)).unwrap_err();
        assert!(err.contains("no health file"), "{err}");
        let mut r = HealthReport {
            queue: "q".into(),
            pid: 7,
            at: Utc::now(),
            streams_open: 2,
            leased: 0,
            running: 0,
        };
        write(&path, &r).unwrap();
        assert_eq!(
            HealthReport::check(&path, Duration::from_secs(30)).unwrap(),
            r
        );
        r.at = Utc::now() - chrono::Duration::seconds(45);
        write(&path, &r).unwrap();
        let err = HealthReport::check(&path, Duration::from_secs(30)).unwrap_err();
        assert!(err.contains("last reported 45 s ago"), "{err}");
        r.at = Utc::now();
        r.streams_open = 0;
        write(&path, &r).unwrap();
        let err = HealthReport::check(&path, Duration::from_secs(30)).unwrap_err();
        assert!(err.contains("no streaming pull open"), "{err}");
        std::fs::write(&path, "{").unwrap();
        let err = HealthReport::check(&path, Duration::from_secs(30)).unwrap_err();
        assert!(err.contains("not a worker's report"), "{err}");
    }
}
