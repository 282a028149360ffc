//! `worker health`: Pub/Sub reachable and the queue exists (for container healthchecks), or
//! with `--file`, the worker writing that health file alive and pulling (no Pub/Sub call).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

use super::common::connect_pubsub;
use super::GlobalArgs;

pub(crate) async fn run(g: &GlobalArgs, file: Option<PathBuf>, max_age: u64) -> anyhow::Result<()> {
    if let Some(path) = file {
        let max_age = Duration::from_secs(max_age.max(1));
        return match pubsub_jobs::HealthReport::check(&path, max_age) {
            Ok(r) => {
                println!(
                    "ok: worker {} on queue {:?} reported {} stream(s) open, {} running",
                    r.pid, r.queue, r.streams_open, r.running
                );
                Ok(())
            }
            Err(why) => bail!(why),
        };
    }
    let client = connect_pubsub(g).await?;
    client.validate_queue(&g.queue)?;
    if client.queue_exists(&g.queue).await? {
        println!("ok: Pub/Sub reachable, queue {:?} exists", g.queue);
        Ok(())
    } else {
        bail!(
            "Pub/Sub is reachable but queue {:?} does not exist yet",
            g.queue
        )
    }
}
