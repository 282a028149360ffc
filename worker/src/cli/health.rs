//! `worker health`: Pub/Sub reachable and the queue exists (for container healthchecks).

use anyhow::bail;

use super::common::connect_pubsub;
use super::GlobalArgs;

pub(crate) async fn run(g: &GlobalArgs) -> anyhow::Result<()> {
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
