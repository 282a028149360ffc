//! The worker: runs one queue. The launcher ([`Worker::run`]) starts the long-running parts,
//! each a small struct with `start` / `shutdown`: the pull streams (`pull.rs`), the lease keeper
//! (`lease.rs`), the ack batcher (`ack.rs`) and the scheduler (`schedule.rs`); it then hands each
//! pulled message to `dispatch.rs`, which performs it (`perform.rs`) and settles it
//! (`outcome.rs`).
//!
//! ```no_run
//! # async fn demo() -> pubsub_jobs::Result<()> {
//! use pubsub_jobs::{Client, Worker, WorkerConfig};
//! use tokio_util::sync::CancellationToken;
//!
//! let client = Client::from_env().await?;
//! let shutdown = CancellationToken::new();
//! let summary = Worker::new(client, WorkerConfig::new("default")).run(shutdown).await?;
//! println!("{} jobs succeeded", summary.succeeded);
//! # Ok(()) }
//! ```

pub(crate) mod ack;
pub(crate) mod dispatch;
mod health;
pub(crate) mod lease;
pub(crate) mod outcome;
pub(crate) mod perform;
pub(crate) mod progress;
pub(crate) mod pull;
pub(crate) mod record;
pub(crate) mod schedule;
mod stats;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::broker::{Delivery, StreamOptions};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::registry::Registry;
use ack::{AckBatcher, AckBatcherParams};
pub use health::{HealthReport, HEALTH_EVERY};
use lease::{LeaseKeeper, LeaseKeeperParams};
use pull::{consume, ConsumeParams};
use schedule::{Scheduler, SchedulerParams};
use stats::Stats;
pub use stats::WorkerSummary;

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The queue to run.
    pub queue: String,
    /// Jobs running at once (default 10).
    pub concurrency: usize,
    /// Streaming pulls (default 2; the emulator delivers about 2,000 messages/s per stream).
    pub streams: usize,
    /// Messages pulled and leased but not yet running, at most (default: `concurrency`).
    pub prefetch: usize,
    /// The lease of a pulled message, extended while the job runs (default 30 s; 10-600).
    pub ack_deadline: Duration,
    /// How long running jobs may take to finish after a shutdown signal (default 25 s).
    pub shutdown_timeout: Duration,
    /// The timeout of every job whose class does not set its own: how long an execution may
    /// run before it fails with [`JobTimeout`](crate::JobTimeout), in place of the built-in 30
    /// minutes. A class whose [`Job::timeout`](crate::Job::timeout) returns another value keeps
    /// it (one that returns exactly 30 minutes counts as not setting one). `None` (the default):
    /// 30 minutes.
    pub job_timeout: Option<Duration>,
    /// How often the worker logs its counts (default 30 s).
    pub stats_interval: Duration,
    /// The outbox relay this worker runs when its client has a job store.
    pub relay: crate::relay::RelayConfig,
    /// Store housekeeping (aggregates, retention) this worker runs when its client has a store.
    pub maintenance: crate::store::maintenance::MaintainerConfig,
    /// A file the worker rewrites every [`HEALTH_EVERY`] with a [`HealthReport`] while it runs,
    /// and removes when it stops: a liveness probe reads it (`worker health --file`) instead of
    /// calling Pub/Sub. `None` (the default): no file.
    pub health_file: Option<std::path::PathBuf>,
}

impl WorkerConfig {
    /// Defaults for `queue`.
    pub fn new(queue: impl Into<String>) -> Self {
        Self {
            queue: queue.into(),
            concurrency: 10,
            streams: 2,
            prefetch: 10,
            ack_deadline: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(25),
            job_timeout: None,
            stats_interval: Duration::from_secs(30),
            relay: crate::relay::RelayConfig::default(),
            maintenance: Default::default(),
            health_file: None,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.concurrency == 0 {
            return Err(Error::Config("concurrency must be at least 1".into()));
        }
        if self.job_timeout.is_some_and(|t| t.is_zero()) {
            return Err(Error::Config(
                "the job timeout must be longer than zero".into(),
            ));
        }
        if self.streams == 0 {
            return Err(Error::Config("streams must be at least 1".into()));
        }
        if self.ack_deadline < Duration::from_secs(10)
            || self.ack_deadline > Duration::from_secs(600)
        {
            return Err(Error::Config(format!(
                "ack deadline {:?} is outside Pub/Sub's 10-600 s",
                self.ack_deadline
            )));
        }
        Ok(())
    }
}

/// What every part of a running worker shares.
pub(crate) struct Shared {
    pub client: Client,
    pub registry: Registry,
    pub queue: String,
    pub lease: Arc<LeaseKeeper>,
    pub acker: AckBatcher,
    pub stats: Arc<Stats>,
    /// The batched store writer, with a store.
    pub recorder: Option<Arc<record::Recorder>>,
    /// The jobs reporting progress, with a store.
    pub live: Option<Arc<progress::LiveJobs>>,
    /// The application state jobs read ([`JobContext::state`](crate::JobContext::state)).
    pub state: crate::State,
    /// [`WorkerConfig::job_timeout`].
    pub job_timeout: Option<Duration>,
    /// The worker's shutdown signal, as jobs see it
    /// ([`JobContext::is_stopping`](crate::JobContext::is_stopping)).
    pub stopping: CancellationToken,
}

/// Runs jobs from one queue until shut down.
pub struct Worker {
    client: Client,
    config: WorkerConfig,
    registry: Option<Registry>,
    stats: Arc<Stats>,
    state: crate::State,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A live view of a worker's counts, usable while it runs.
#[derive(Clone)]
pub struct WorkerStats(Arc<Stats>);

impl std::fmt::Debug for WorkerStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WorkerStats").field(&self.summary()).finish()
    }
}

impl WorkerStats {
    /// The counts now.
    pub fn summary(&self) -> WorkerSummary {
        self.0.summary()
    }

    /// Messages acked so far (cheap: one load, unlike [`summary`](Self::summary)).
    pub fn acked(&self) -> u64 {
        self.0.acked.load(Relaxed)
    }

    /// Messages of this queue held now: pulled, with their lease extended, and neither acked
    /// nor released (back to 0 when the worker is idle; a message held for good would be a leak).
    pub fn leased(&self) -> u64 {
        self.0.leased.load(Relaxed)
    }

    /// Streaming pulls open now (equal to the configured streams once the worker is pulling).
    pub fn open_streams(&self) -> u64 {
        self.0.open_streams.load(Relaxed)
    }
}

impl Worker {
    /// A worker for `config.queue` on `client`'s broker.
    pub fn new(client: Client, config: WorkerConfig) -> Self {
        Self {
            client,
            config,
            registry: None,
            stats: Arc::default(),
            state: crate::State::new(),
        }
    }

    /// Gives every job this worker runs `value`, which a job reads with
    /// [`JobContext::state`](crate::JobContext::state) (a database pool, an HTTP client). Several
    /// types may be given; a second value of one type replaces the first.
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// Gives every job this worker runs the values of `state` (see [`Worker::state`]).
    pub fn with_state(mut self, state: crate::State) -> Self {
        self.state.merge(&state);
        self
    }

    /// Runs the job classes of `registry` instead of those registered with
    /// [`register_job!`](crate::register_job) ([`Registry::from_inventory`], the default).
    pub fn with_registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// A live view of this worker's counts.
    pub fn stats(&self) -> WorkerStats {
        WorkerStats(self.stats.clone())
    }

    /// Runs until `shutdown` is cancelled, then stops pulling, lets running jobs finish within
    /// the shutdown timeout, releases everything else it leased, and returns its counts.
    pub async fn run(self, shutdown: CancellationToken) -> Result<WorkerSummary> {
        // The worker's loop runs as a task of the runtime, wherever `run` is awaited. Awaited
        // from `block_on` (the body of `#[tokio::main]`), it would run on the main thread, and
        // every message a stream hands it would wake that thread through the kernel: about a
        // tenth of a worker's CPU per job. Dropping `run` stops the task, as it stopped the loop.
        struct AbortOnDrop(tokio::task::JoinHandle<Result<WorkerSummary>>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let mut task = AbortOnDrop(tokio::spawn(self.run_in_task(shutdown)));
        match (&mut task.0).await {
            Ok(summary) => summary,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(crate::Error::WorkerTask(e.to_string())),
        }
    }

    async fn run_in_task(self, shutdown: CancellationToken) -> Result<WorkerSummary> {
        let Worker {
            client,
            config,
            registry,
            stats,
            state,
        } = self;
        config.validate()?;
        let registry = match registry {
            Some(r) => r.check()?,
            None => Registry::from_inventory()?,
        };
        registry.check_state(&state)?;
        if client.config().create_queues {
            client.ensure_queue(&config.queue).await?;
            client.ensure_morgue().await?;
        } else {
            // Least privilege: no admin call, but a missing subscription stops the start with
            // an error naming it (the morgue's topic is checked when a job first dies).
            client.validate_queue(&config.queue)?;
            client.check_subscriptions(&config.queue).await?;
        }
        let subscription = client.resource_name(&config.queue);
        let broker = client.broker().clone();
        // With a store, publish what enqueuers recorded but could not publish (the outbox).
        let relay = match client.store() {
            Some(_) => Some(crate::relay::Relay::start(
                client.clone(),
                config.relay.clone(),
            )?),
            None => None,
        };
        let maintainer = client.store().map(|store| {
            let mut maintenance = config.maintenance.clone();
            if maintenance.process.is_none() {
                maintenance.process = Some(crate::store::ProcessInfo::this(
                    "worker",
                    Some(&config.queue),
                ));
            }
            crate::store::maintenance::Maintainer::start(store.clone(), maintenance)
        });
        let lease = LeaseKeeper::start(LeaseKeeperParams {
            broker: broker.clone(),
            subscription: subscription.clone(),
            ack_deadline: config.ack_deadline,
            held: Some(stats.leased.clone()),
        });
        let acker = AckBatcher::start(AckBatcherParams {
            broker: broker.clone(),
            subscription: subscription.clone(),
            flush_every: Duration::from_millis(5),
            acked: Some(stats.acked.clone()),
        });
        let recorder = client
            .store()
            .map(|store| Arc::new(record::Recorder::start(store.clone(), Default::default())));
        let live = recorder.clone().map(progress::LiveJobs::start);
        let shared = Arc::new(Shared {
            client: client.clone(),
            registry,
            queue: config.queue.clone(),
            lease: lease.clone(),
            acker,
            stats,
            state,
            job_timeout: config.job_timeout,
            stopping: shutdown.clone(),
            recorder,
            live,
        });
        // Leased at once, at most: running, prefetched, and (with a store, where recording an
        // outcome takes a batch) settling, each up to its bound. Flow control on real Pub/Sub.
        let settling = if client.store().is_some() {
            config.concurrency
        } else {
            0
        };
        let per_stream =
            (config.concurrency + config.prefetch + settling).div_ceil(config.streams) as i64;
        let scheduler = Scheduler::start(SchedulerParams {
            client: client.clone(),
            queue: config.queue.clone(),
            ack_deadline: config.ack_deadline,
            max_outstanding: 0,
            parked: shared.stats.parked.clone(),
        });

        tracing::info!(
            queue = %config.queue,
            project = shared.client.config().project_id.as_str(),
            concurrency = config.concurrency,
            streams = config.streams,
            prefetch = config.prefetch,
            ack_deadline_s = config.ack_deadline.as_secs(),
            jobs = shared.registry.iter().count(),
            "worker started"
        );

        // Pull: each stream feeds a bounded channel of `prefetch` leased messages. On shutdown the
        // streams stay open (leases of running jobs are extended through them) and every message
        // that still arrives is released at once; they close last, when nothing is held.
        let stop_pulling = CancellationToken::new();
        let close_streams = CancellationToken::new();
        let (tx, mut rx) = mpsc::channel::<Delivery>(config.prefetch.max(1));
        let mut pullers = JoinSet::new();
        for _ in 0..config.streams {
            let params = ConsumeParams {
                client: client.clone(),
                subscription: subscription.clone(),
                queue: config.queue.clone(),
                options: StreamOptions {
                    ack_deadline: config.ack_deadline,
                    max_outstanding: per_stream,
                },
                shutdown: close_streams.clone(),
                open_streams: Some(shared.stats.open_streams.clone()),
            };
            let (tx, shared, stopping) = (tx.clone(), shared.clone(), stop_pulling.clone());
            let (broker, subscription) = (broker.clone(), subscription.clone());
            pullers.spawn(consume(params, move |d| {
                // Never leave a message sitting unextended in a stream's buffer: take it now,
                // keep it (leased, extended) if there is room, else hand it back at once so that
                // another worker can run it (through the ack batcher: one request for many).
                // On real Pub/Sub, flow control keeps the excess away; the emulator ignores it
                // and redelivers what is handed back, so a worker slower than its streams keeps
                // re-pulling the excess there (docs/BENCHMARKS.md measures at 1 stream too).
                // Holding the excess instead (waiting for room) measured faster on the emulator
                // but left other workers idle and let what waits unread in the stream age past
                // its lease under long jobs.
                let release = if stopping.is_cancelled() {
                    Some(d.ack_id)
                } else {
                    shared.lease.hold(&d.ack_id);
                    match tx.try_send(d) {
                        Ok(()) => None,
                        Err(e) => {
                            let d = e.into_inner();
                            shared.lease.forget(&d.ack_id);
                            shared.acker.set_deadline(d.ack_id, 0);
                            None
                        }
                    }
                };
                let (broker, subscription) = (broker.clone(), subscription.clone());
                async move {
                    // Shutting down: the ack batcher may have stopped, so release directly.
                    if let Some(ack_id) = release {
                        if let Err(e) = broker.modify_ack_deadline(&subscription, vec![ack_id], 0).await {
                            tracing::debug!(error = %e, "could not release a message; it returns when its lease lapses");
                        }
                    }
                }
            }));
        }
        drop(tx);

        let stats_task = {
            let shared = shared.clone();
            let every = config.stats_interval;
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(every);
                interval.tick().await;
                loop {
                    interval.tick().await;
                    log_summary(&shared, "worker stats");
                }
            })
        };

        let health_task = config
            .health_file
            .clone()
            .map(|path| health::spawn(path, shared.clone()));

        // Dispatch: take a slot, then a message, then run it. The slot is freed when `perform`
        // returns; the outcome is recorded and acked behind it (dispatch::Slot).
        let slots = Arc::new(Semaphore::new(config.concurrency));
        let settling = Arc::new(Semaphore::new(config.concurrency));
        let mut running = JoinSet::new();
        loop {
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => p,
                _ = shutdown.cancelled() => break,
            };
            let Ok(permit) = permit else { break };
            let d = tokio::select! {
                d = rx.recv() => d,
                _ = shutdown.cancelled() => break,
            };
            let Some(d) = d else { break };
            let shared = shared.clone();
            let slot = dispatch::Slot {
                running: permit,
                settling: settling.clone(),
            };
            // Boxed: the task then holds a pointer, not the whole job future, which tokio
            // would copy into the task, and again out of it when the task is reaped.
            running.spawn(Box::pin(dispatch::process(shared, d, slot)));
            while running.try_join_next().is_some() {}
        }

        // Shutdown: stop pulling, release what waits, let running jobs finish in time.
        while running.try_join_next().is_some() {}
        tracing::info!(
            queue = %config.queue,
            running = running.len(),
            timeout_s = config.shutdown_timeout.as_secs_f64(),
            "worker stopping: no new jobs; waiting for running ones"
        );
        stop_pulling.cancel();
        rx.close();
        while let Ok(d) = rx.try_recv() {
            shared.lease.forget(&d.ack_id);
            shared.acker.set_deadline(d.ack_id, 0);
        }
        let scheduler_stop = tokio::spawn(scheduler.shutdown());
        let finished = tokio::time::timeout(config.shutdown_timeout, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                queue = %config.queue,
                unfinished = running.len(),
                "shutdown timeout reached: stopping unfinished jobs and releasing them for redelivery"
            );
            running.shutdown().await;
        }
        stats_task.abort();
        if let Some(task) = health_task {
            task.abort();
            if let Some(path) = &config.health_file {
                // Stopping: a probe should fail now, not once the file is old.
                let _ = std::fs::remove_file(path);
            }
        }
        let _ = scheduler_stop.await;
        if let Some(live) = &shared.live {
            live.shutdown().await;
        }
        if let Some(recorder) = &shared.recorder {
            recorder.shutdown().await;
        }
        shared.acker.shutdown().await;
        shared.lease.shutdown().await;
        if let Some(relay) = relay {
            relay.shutdown().await;
        }
        if let Some(m) = maintainer {
            m.shutdown().await;
        }
        // Only now, with everything acked or released, close the streams.
        close_streams.cancel();
        while let Some(r) = pullers.join_next().await {
            if let Ok(Some(stream)) = r {
                stream.close().await;
            }
        }
        let summary = log_summary(&shared, "worker stopped");
        Ok(summary)
    }
}

fn log_summary(shared: &Shared, message: &'static str) -> WorkerSummary {
    let s = shared.stats.summary();
    tracing::info!(
        queue = %shared.queue,
        processed = s.processed,
        succeeded = s.succeeded,
        failed = s.failed,
        retried = s.retried,
        morgued = s.morgued,
        discarded = s.discarded,
        running = shared.stats.running.load(Relaxed),
        parked = s.parked,
        leased = shared.lease.held(),
        p50_ms = s.p50_ms,
        p99_ms = s.p99_ms,
        "{message}"
    );
    s
}
