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

/// What `verify` found of one subscription: nothing when `problems` is empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The queue (or the morgue) it belongs to.
    pub queue: String,
    /// The subscription (prefix included).
    pub subscription: String,
    /// Each difference from what `worker queues setup` creates, in words.
    pub problems: Vec<String>,
    /// Whether `gcloud pubsub subscriptions update` can fix every problem (retention, expiry).
    pub fixable: bool,
}

/// Checks each queue's subscription, its `.scheduled` one and the morgue's against what `worker
/// queues setup` creates: that they exist, read their own topic, keep unacked messages 7 days,
/// and never expire (an idle subscription with the default 31-day expiry is deleted by Google,
/// and what its topic then receives is dropped). Reads each subscription's settings, which needs
/// `roles/pubsub.viewer`; creates and changes nothing.
pub async fn verify(client: &crate::Client, queues: &[String]) -> Result<Vec<Verdict>> {
    let mut targets = Vec::new();
    for q in queues {
        client.validate_queue(q)?;
        targets.push((q.clone(), client.resource_name(q)));
        targets.push((q.clone(), client.scheduled_resource_name(q)));
    }
    let morgue = client.morgue_queue().to_string();
    targets.push((morgue.clone(), client.resource_name(&morgue)));
    let mut out = Vec::with_capacity(targets.len());
    for (queue, subscription) in targets {
        let settings = client.broker().subscription_settings(&subscription).await?;
        let (problems, fixable) = judge(&queue, &subscription, settings.as_ref());
        out.push(Verdict {
            queue,
            subscription,
            problems,
            fixable,
        });
    }
    Ok(out)
}

/// The differences of one subscription's settings from what setup creates, and whether an
/// update can fix them all.
fn judge(
    queue: &str,
    subscription: &str,
    settings: Option<&crate::broker::SubscriptionSettings>,
) -> (Vec<String>, bool) {
    let week = crate::broker::RETENTION;
    let Some(s) = settings else {
        return (
            vec![format!(
                "missing: create it with `worker queues setup {queue}`"
            )],
            false,
        );
    };
    let mut problems = Vec::new();
    let mut fixable = true;
    if s.topic == "_deleted-topic_" {
        problems.push("detached: its topic was deleted, so nothing reaches it".to_string());
        fixable = false;
    } else if s.topic != subscription {
        problems.push(format!(
            "reads topic {:?}, not {subscription:?}: jobs published to the queue never reach it",
            s.topic
        ));
        fixable = false;
    }
    if let Some(r) = s.retention.filter(|r| *r < week) {
        problems.push(format!(
            "keeps unacked messages {} s, not 7 days: a job waiting longer (a delay, a retry) is lost",
            r.as_secs()
        ));
    }
    if let Some(e) = s.expires_after {
        problems.push(format!(
            "expires after {} days without activity: Google then deletes it and what its topic \
             receives is dropped; set it to never",
            e.as_secs() / 86_400
        ));
    }
    (problems, fixable)
}

#[cfg(test)]
mod tests {
    use super::judge;
    use crate::broker::SubscriptionSettings;
    use std::time::Duration;

    #[test]
    fn a_subscription_is_judged_against_what_setup_creates() {
        let good = SubscriptionSettings {
            topic: "q".into(),
            retention: Some(crate::broker::RETENTION),
            expires_after: None,
            dead_letter: None,
        };
        assert_eq!(judge("q", "q", Some(&good)), (vec![], true));
        let (problems, fixable) = judge("q", "q", None);
        assert!(problems[0].contains("worker queues setup q") && !fixable);
        let idle = SubscriptionSettings {
            retention: Some(Duration::from_secs(600)),
            expires_after: Some(Duration::from_secs(31 * 86_400)),
            ..good.clone()
        };
        let (problems, fixable) = judge("q", "q", Some(&idle));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("600 s") && problems[1].contains("31 days") && fixable);
        let elsewhere = SubscriptionSettings {
            topic: "other".into(),
            ..good
        };
        let (problems, fixable) = judge("q", "q", Some(&elsewhere));
        assert!(problems[0].contains("reads topic \"other\"") && !fixable);
    }
}
