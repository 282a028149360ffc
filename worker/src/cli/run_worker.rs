//! `worker` with no command: runs one queue until SIGTERM / SIGINT.

use std::time::Duration;

use pubsub_jobs::periodic::Scheduler;
use pubsub_jobs::{Registry, State, Worker, WorkerConfig};

use super::common::{connect, relay_config, seconds, shutdown_on_signals};
use super::{GlobalArgs, RunArgs};

pub(crate) async fn run(
    g: &GlobalArgs,
    args: RunArgs,
    registry: Registry,
    state: State,
) -> anyhow::Result<()> {
    let mut config = WorkerConfig::new(g.queue.clone());
    config.concurrency = args.concurrency;
    config.streams = args.streams;
    // The Go job service's names, when ours are not set.
    let prefetch = match args.prefetch {
        Some(p) => Some(p),
        None => alias("JOB_PREFETCH", |v| v.parse::<usize>().ok())?,
    };
    config.prefetch = prefetch.unwrap_or(args.concurrency);
    config.ack_deadline = Duration::from_secs(args.ack_deadline);
    config.shutdown_timeout = seconds("--shutdown-timeout", args.shutdown_timeout)?;
    let job_timeout = match args.job_timeout {
        Some(t) => Some(t),
        None => alias("JOB_TIMEOUT", |v| v.parse::<f64>().ok())?,
    };
    config.job_timeout = match job_timeout {
        Some(t) if t > 0.0 => Some(seconds("--job-timeout", t)?),
        Some(t) => anyhow::bail!(
            "--job-timeout (WORKER_JOB_TIMEOUT, JOB_TIMEOUT) must be a number of seconds > 0, got {t}"
        ),
        None => None,
    };
    config.stats_interval =
        seconds("--stats-interval", args.stats_interval)?.max(Duration::from_secs(1));
    config.relay = relay_config(g)?;
    config.maintenance = super::common::maintainer_config(g)?;
    config.health_file = args.health_file.clone();
    // Fail early on a duplicate class, state a job needs and was not given, a bad queue name or
    // a bad cron file, before connecting.
    let registry = registry.check()?;
    registry.check_state(&state)?;
    super::common::client_config(g)?.validate_queue(&g.queue)?;
    let periodic = match &args.cron {
        Some(file) => {
            anyhow::ensure!(
                g.store.is_some(),
                "--cron {} needs a job store (--store or PUBSUB_JOBS_STORE): each tick is claimed there so that it runs once across workers",
                file.display()
            );
            Some(super::cron::load(file, &registry)?)
        }
        None => None,
    };
    let client = connect(g).await?;
    let scheduler = match periodic {
        Some(entries) => Some(Scheduler::start(client.clone(), entries)?),
        None => None,
    };
    let result = Worker::new(client, config)
        .with_registry(registry)
        .with_state(state)
        .run(shutdown_on_signals())
        .await;
    if let Some(s) = scheduler {
        s.shutdown().await;
    }
    result?;
    Ok(())
}

/// The value of the environment variable `name` (another service's name for one of our
/// settings), parsed; an error naming it when it does not parse.
fn alias<T>(name: &str, parse: impl Fn(&str) -> Option<T>) -> anyhow::Result<Option<T>> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => match parse(v.trim()) {
            Some(t) => Ok(Some(t)),
            None => anyhow::bail!("{name}={v:?} is not a number"),
        },
        _ => Ok(None),
    }
}
