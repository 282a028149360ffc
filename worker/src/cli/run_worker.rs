//! `worker` with no command: runs one queue until SIGTERM / SIGINT.

use std::time::Duration;

use pubsub_jobs::{Registry, Worker, WorkerConfig};

use super::common::{connect, relay_config, seconds, shutdown_on_signals};
use super::{GlobalArgs, RunArgs};

pub(crate) async fn run(g: &GlobalArgs, args: RunArgs, registry: Registry) -> anyhow::Result<()> {
    let mut config = WorkerConfig::new(g.queue.clone());
    config.concurrency = args.concurrency;
    config.streams = args.streams;
    config.prefetch = args.prefetch.unwrap_or(args.concurrency);
    config.ack_deadline = Duration::from_secs(args.ack_deadline);
    config.shutdown_timeout = seconds("--shutdown-timeout", args.shutdown_timeout)?;
    config.stats_interval =
        seconds("--stats-interval", args.stats_interval)?.max(Duration::from_secs(1));
    config.relay = relay_config(g)?;
    // Fail early on a duplicate class or a bad queue name, before connecting.
    let registry = registry.check()?;
    pubsub_jobs::queue::validate_queue_name(&g.topic_prefix, &g.queue)?;
    let client = connect(g).await?;
    Worker::new(client, config)
        .with_registry(registry)
        .run(shutdown_on_signals())
        .await?;
    Ok(())
}
