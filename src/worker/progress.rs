//! Live progress: what a running job reports with [`JobContext::progress`] and
//! [`JobContext::log`], coalesced per job and written through the recorder's batches at most
//! once a second per job (latest progress wins; log lines accumulate), and once more when the job
//! ends, before its outcome. Only jobs that report are tracked; without a store nothing of this
//! exists and a report goes to the worker's log only.
//!
//! [`JobContext::progress`]: crate::JobContext::progress
//! [`JobContext::log`]: crate::JobContext::log

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::record::Recorder;
use crate::store::{LogLine, Progress, StoreOp};

/// How often a reporting job's latest state is written, at most.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The most log lines one execution holds unwritten (beyond, lines go to the worker's log only).
const MAX_PENDING_LINES: usize = crate::store::MAX_STORED_LOG_LINES as usize;

/// What one execution reported since its last write.
#[derive(Default)]
struct Pending {
    progress: Option<Progress>,
    logs: Vec<LogLine>,
}

struct Live {
    attempt: u32,
    pending: Mutex<Pending>,
}

/// The reporting jobs of one worker, and the task that writes their reports.
pub(crate) struct LiveJobs {
    recorder: Arc<Recorder>,
    jobs: Mutex<HashMap<Uuid, Arc<Live>>>,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for LiveJobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveJobs")
    }
}

impl LiveJobs {
    /// Starts the writer task.
    pub(crate) fn start(recorder: Arc<Recorder>) -> Arc<Self> {
        let live = Arc::new(Self {
            recorder,
            jobs: Mutex::default(),
            stop: CancellationToken::new(),
            task: Mutex::default(),
        });
        let task = tokio::spawn(flush_loop(Arc::downgrade(&live), live.stop.clone()));
        *lock(&live.task) = Some(task);
        live
    }

    fn live(&self, id: Uuid, attempt: u32) -> Arc<Live> {
        lock(&self.jobs)
            .entry(id)
            .or_insert_with(|| {
                Arc::new(Live {
                    attempt,
                    pending: Mutex::default(),
                })
            })
            .clone()
    }

    /// Job `id`'s execution `attempt` is at `done` of `total`.
    pub(crate) fn progress(&self, id: Uuid, attempt: u32, done: u64, total: u64, message: String) {
        let live = self.live(id, attempt);
        lock(&live.pending).progress = Some(Progress {
            done,
            total,
            message,
            attempt,
            at: Utc::now(),
        });
    }

    /// Job `id`'s execution `attempt` logged `line` (not stored beyond the cap of its unwritten
    /// lines: it is in the worker's log).
    pub(crate) fn log(&self, id: Uuid, attempt: u32, line: String) {
        let live = self.live(id, attempt);
        let mut p = lock(&live.pending);
        if p.logs.len() < MAX_PENDING_LINES {
            p.logs.push(LogLine {
                attempt,
                at: Utc::now(),
                line,
            });
        }
    }

    /// The job ended: what it reported since the last write is queued now, ahead of its
    /// outcome (the same writer, in order), and it is no longer tracked.
    pub(crate) fn finish(&self, id: Uuid) {
        let live = lock(&self.jobs).remove(&id);
        if let Some(live) = live {
            self.write(id, &live);
        }
    }

    fn write(&self, id: Uuid, live: &Live) {
        let Pending { progress, logs } = std::mem::take(&mut *lock(&live.pending));
        if progress.is_none() && logs.is_empty() {
            return;
        }
        self.recorder.send_progress(StoreOp::Progress {
            id,
            attempt: live.attempt,
            progress,
            logs,
        });
    }

    fn write_all(&self) {
        let jobs: Vec<(Uuid, Arc<Live>)> = lock(&self.jobs)
            .iter()
            .map(|(id, l)| (*id, l.clone()))
            .collect();
        for (id, live) in jobs {
            self.write(id, &live);
        }
    }

    /// Writes what is pending and stops the task (before the recorder stops).
    pub(crate) async fn shutdown(&self) {
        self.stop.cancel();
        let task = lock(&self.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        self.write_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn flush_loop(live: std::sync::Weak<LiveJobs>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let Some(live) = live.upgrade() else { return };
        live.write_all();
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use serde::{Deserialize, Serialize};
    use tokio::sync::Notify;

    use crate::store::{JobStatus, JobStore, SqlStore};
    use crate::testing::memory_client;
    use crate::{register_job, Job, JobContext, JobError, Worker, WorkerConfig};

    /// Lets the reporting job finish.
    static GO: Notify = Notify::const_new();

    #[derive(Serialize, Deserialize)]
    struct Reports {
        fail_first: bool,
    }

    impl Job for Reports {
        const NAME: &'static str = "ProgressReports";
        fn retry_policy() -> crate::RetryPolicy {
            crate::RetryPolicy::default()
                .otherwise(crate::Wait::fixed(Duration::from_millis(10)), 3)
        }
        async fn perform(&self, ctx: &JobContext) -> Result<(), JobError> {
            for step in 1..=50u64 {
                ctx.progress(step, 100, format!("{step} of 100"));
            }
            ctx.log(format!("attempt {} half way", ctx.attempt));
            GO.notified().await;
            ctx.progress(100, 100, "done");
            ctx.log("x".repeat(crate::MAX_LOG_LINE_BYTES + 10));
            if self.fail_first && ctx.attempt == 1 {
                return Err(JobError::msg("first time fails"));
            }
            Ok(())
        }
    }
    register_job!(Reports);

    async fn until<T>(mut f: impl AsyncFnMut() -> Option<T>, what: &str) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = f().await {
                return v;
            }
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_running_jobs_latest_progress_and_its_lines_reach_the_store_and_a_retry_starts_afresh(
    ) {
        let (client, _broker) = memory_client();
        let store: Arc<dyn JobStore> =
            Arc::new(SqlStore::connect("sqlite::memory:").await.unwrap());
        let client = client.with_store(store.clone());
        let id = Reports { fail_first: true }
            .set()
            .queue("live")
            .perform_later(&client)
            .await
            .unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let worker =
            tokio::spawn(Worker::new(client.clone(), WorkerConfig::new("live")).run(stop.clone()));
        // While it waits: its latest report, within the flush interval.
        let p = until(
            async || store.get(id).await.unwrap()?.progress,
            "no progress stored while the job runs",
        )
        .await;
        assert_eq!(
            (p.done, p.total, p.message.as_str(), p.attempt),
            (50, 100, "50 of 100", 1)
        );
        let logs = store.logs(id, None, 10).await.unwrap();
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].line, "attempt 1 half way");
        GO.notify_one();
        // The retry: a new execution starts without progress, then reports its own.
        let p = until(
            async || {
                let rec = store.get(id).await.unwrap()?;
                rec.progress.filter(|p| p.attempt == 2)
            },
            "the retry reports nothing",
        )
        .await;
        assert_eq!(p.done, 50);
        GO.notify_one();
        until(
            async || {
                let rec = store.get(id).await.unwrap()?;
                (rec.status == JobStatus::Succeeded).then_some(())
            },
            "the retry does not succeed",
        )
        .await;
        stop.cancel();
        worker.await.unwrap().unwrap();
        let rec = store.get(id).await.unwrap().unwrap();
        let p = rec
            .progress
            .expect("the last report, written before the outcome");
        assert_eq!((p.done, p.message.as_str(), p.attempt), (100, "done", 2));
        let lines: Vec<(u32, usize)> = store
            .logs(id, None, 10)
            .await
            .unwrap()
            .iter()
            .map(|l| (l.attempt, l.line.len()))
            .collect();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert_eq!(lines[0], (1, "attempt 1 half way".len()));
        assert!(
            lines[1].1 <= crate::MAX_LOG_LINE_BYTES,
            "a long line is cut"
        );
        assert_eq!(lines[2], (2, "attempt 2 half way".len()));
    }
}
