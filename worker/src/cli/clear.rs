//! `worker clear [--morgue] [--yes]`: empties a queue (backlog, leased and scheduled jobs) or the
//! morgue, by Pub/Sub Seek to now. Asks first on a terminal; elsewhere needs `--yes`.

use super::common::{confirm, connect_pubsub, purge_morgue};
use super::GlobalArgs;

pub(crate) async fn run(g: &GlobalArgs, yes: bool, morgue: bool) -> anyhow::Result<()> {
    let client = connect_pubsub(g).await?;
    if morgue {
        return purge_morgue(&client, yes, "Cleared").await;
    }
    client.validate_queue(&g.queue)?;
    confirm(
        yes,
        &format!(
            "Clear queue {:?}: its backlog, leased and scheduled jobs?",
            g.queue
        ),
    )?;
    // With a store, the cleared jobs end cancelled there too.
    let client = match &g.store {
        Some(url) => client.with_store(super::common::open_store(url).await?),
        None => client,
    };
    let cleared = pubsub_jobs::admin::clear(&client, &g.queue).await?;
    println!(
        "Cleared queue {:?} (subscriptions {:?} and {:?}): every job published before {} is gone: backlog, leased and scheduled.",
        g.queue,
        client.resource_name(&g.queue),
        client.scheduled_resource_name(&g.queue),
        cleared.at.to_rfc3339()
    );
    if let Some(n) = cleared.cancelled_in_store {
        println!("The job store records {n} of them as cancelled; none is published again.");
    }
    Ok(())
}
