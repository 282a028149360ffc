//! Queue tools: empty a queue (`worker clear`), and the check every operator tool makes that a
//! queue exists before touching it.

use crate::error::{Error, Result};

/// Empties a queue: its backlog, its leased messages and its scheduled jobs, by seeking both of
/// its subscriptions to now (no pull-and-ack loop). A queue that does not exist is an error, and
/// nothing is created. Returns the time it cleared up to.
pub async fn clear(client: &crate::Client, queue: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    client.validate_queue(queue)?;
    let main = require_subscription(client, "queue", queue).await?;
    let broker = client.broker();
    let now = chrono::Utc::now();
    broker.seek_to_now(&main).await?;
    let scheduled = client.scheduled_resource_name(queue);
    if broker.subscription_exists(&scheduled).await? {
        broker.seek_to_now(&scheduled).await?;
    }
    Ok(now)
}

/// The subscription of `queue` if it exists, else [`Error::QueueNotFound`] (`what`: `queue` or
/// `the morgue`). Creates nothing: the operator tools never make a queue by accident.
pub(crate) async fn require_subscription(
    client: &crate::Client,
    what: &'static str,
    queue: &str,
) -> Result<String> {
    let subscription = client.resource_name(queue);
    if client.broker().subscription_exists(&subscription).await? {
        Ok(subscription)
    } else {
        Err(Error::QueueNotFound {
            what,
            queue: queue.to_string(),
            subscription,
            project: client.config().project_id.clone(),
        })
    }
}
