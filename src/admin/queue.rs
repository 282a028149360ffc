//! Queue tools: empty a queue (`worker clear`), and the check every operator tool makes that a
//! queue exists before touching it.

use crate::error::{Error, Result};

/// What [`clear`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Cleared {
    /// Every job published before this time is gone from Pub/Sub.
    pub at: chrono::DateTime<chrono::Utc>,
    /// With a job store, how many of its jobs were recorded as cancelled (not started, and
    /// enqueued or waiting for a retry before `at`); their outbox rows are never published.
    pub cancelled_in_store: Option<u64>,
}

/// Empties a queue: its backlog, its leased messages and its scheduled jobs, by seeking both of
/// its subscriptions to now (no pull-and-ack loop). A queue that does not exist is an error, and
/// nothing is created. With a job store, the jobs cleared end `cancelled` there
/// ([`ActionStore::cancel_cleared`](crate::store::ActionStore::cancel_cleared)), so the store,
/// the API and the dashboard show what Pub/Sub holds, and no relay publishes them again.
pub async fn clear(client: &crate::Client, queue: &str) -> Result<Cleared> {
    client.validate_queue(queue)?;
    let main = require_subscription(client, "queue", queue).await?;
    let broker = client.broker();
    let now = chrono::Utc::now();
    broker.seek_to_now(&main).await?;
    let scheduled = client.scheduled_resource_name(queue);
    if broker.subscription_exists(&scheduled).await? {
        broker.seek_to_now(&scheduled).await?;
    }
    let cancelled_in_store = match client.store() {
        Some(store) => Some(store.cancel_cleared(queue, now).await?),
        None => None,
    };
    Ok(Cleared {
        at: now,
        cancelled_in_store,
    })
}

/// The worker processes of `queue` alive now: those whose heartbeat reached the store within
/// the last three [`HEARTBEAT_INTERVAL`](crate::store::HEARTBEAT_INTERVAL)s (a worker reports
/// itself every one). Empty: no worker runs the queue, and a job enqueued to it waits.
pub async fn workers_of(
    store: &dyn crate::store::JobStore,
    queue: &str,
) -> Result<Vec<crate::store::ProcessInfo>> {
    let since = chrono::Utc::now()
        - chrono::Duration::from_std(crate::store::HEARTBEAT_INTERVAL * 3)
            .unwrap_or_else(|_| chrono::Duration::seconds(30));
    Ok(store
        .processes(since)
        .await?
        .into_iter()
        .filter(|p| p.kind == "worker" && p.queue.as_deref() == Some(queue))
        .collect())
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
#[non_exhaustive]
pub struct Verdict {
    /// The queue (or the morgue) it belongs to.
    pub queue: String,
    /// The subscription (prefix included).
    pub subscription: String,
    /// Each difference from what `worker queues setup` creates, in words.
    pub problems: Vec<String>,
    /// Whether `gcloud pubsub subscriptions update` can fix every problem (retention, expiry,
    /// the dead-letter policy).
    pub fixable: bool,
    /// The flags of `gcloud pubsub subscriptions update` that fix the fixable problems.
    pub update_flags: Vec<String>,
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
        let expected = client.dead_letter_for(&subscription);
        let j = judge(&queue, &subscription, settings.as_ref(), expected.as_ref());
        out.push(Verdict {
            queue,
            subscription,
            problems: j.problems,
            fixable: j.fixable,
            update_flags: j.update_flags,
        });
    }
    Ok(out)
}

/// What [`judge`] found.
#[derive(Debug, PartialEq)]
struct Judgement {
    problems: Vec<String>,
    fixable: bool,
    update_flags: Vec<String>,
}

/// The differences of one subscription's settings from what setup creates (with
/// `dead_letter`, the policy it should have), whether an update can fix them all, and the
/// update's flags.
fn judge(
    queue: &str,
    subscription: &str,
    settings: Option<&crate::broker::SubscriptionSettings>,
    dead_letter: Option<&crate::broker::DeadLetter>,
) -> Judgement {
    let week = crate::broker::RETENTION;
    let Some(s) = settings else {
        return Judgement {
            problems: vec![format!(
                "missing: create it with `worker queues setup {queue}`"
            )],
            fixable: false,
            update_flags: Vec::new(),
        };
    };
    let mut problems = Vec::new();
    let mut flags = Vec::new();
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
        flags.push("--message-retention-duration=7d".to_string());
    }
    if let Some(e) = s.expires_after {
        problems.push(format!(
            "expires after {} days without activity: Google then deletes it and what its topic \
             receives is dropped; set it to never",
            e.as_secs() / 86_400
        ));
        flags.push("--expiration-period=never".to_string());
    }
    let set_policy = |want: &crate::broker::DeadLetter| {
        format!(
            "--dead-letter-topic={} --max-delivery-attempts={}",
            want.topic, want.max_delivery_attempts
        )
    };
    match (dead_letter, &s.dead_letter) {
        (Some(want), None) => {
            problems.push(format!(
                "no dead-letter policy: a job that kills its worker every time it runs is \
                 delivered forever; setup sends it to {:?} after {} deliveries",
                want.topic, want.max_delivery_attempts
            ));
            flags.push(set_policy(want));
        }
        (Some(want), Some((topic, n)))
            if *topic != want.topic || *n != want.max_delivery_attempts =>
        {
            problems.push(format!(
                "dead-letters to {topic:?} after {n} deliveries, not to {:?} after {}",
                want.topic, want.max_delivery_attempts
            ));
            flags.push(set_policy(want));
        }
        (None, Some((topic, n))) if subscription.ends_with(crate::queue::SCHEDULED_SUFFIX) => {
            problems.push(format!(
                "dead-letters to {topic:?} after {n} deliveries: every time a waiting job is \
                 parked and comes back counts as one, so a job delayed long enough is moved \
                 before it is due"
            ));
            flags.push("--clear-dead-letter-policy".to_string());
        }
        _ => {}
    }
    Judgement {
        problems,
        fixable,
        update_flags: flags,
    }
}

#[cfg(test)]
mod tests {
    use super::judge;
    use crate::broker::{DeadLetter, SubscriptionSettings};
    use std::time::Duration;

    #[test]
    fn a_subscription_is_judged_against_what_setup_creates() {
        let good = SubscriptionSettings {
            topic: "q".into(),
            retention: Some(crate::broker::RETENTION),
            expires_after: None,
            dead_letter: None,
        };
        let j = judge("q", "q", Some(&good), None);
        assert!(j.problems.is_empty() && j.fixable && j.update_flags.is_empty());
        let j = judge("q", "q", None, None);
        assert!(j.problems[0].contains("worker queues setup q") && !j.fixable);
        let idle = SubscriptionSettings {
            retention: Some(Duration::from_secs(600)),
            expires_after: Some(Duration::from_secs(31 * 86_400)),
            ..good.clone()
        };
        let j = judge("q", "q", Some(&idle), None);
        assert_eq!(j.problems.len(), 2, "{:?}", j.problems);
        assert!(j.problems[0].contains("600 s") && j.problems[1].contains("31 days") && j.fixable);
        assert_eq!(
            j.update_flags,
            [
                "--message-retention-duration=7d",
                "--expiration-period=never"
            ]
        );
        let elsewhere = SubscriptionSettings {
            topic: "other".into(),
            ..good.clone()
        };
        let j = judge("q", "q", Some(&elsewhere), None);
        assert!(j.problems[0].contains("reads topic \"other\"") && !j.fixable);
    }

    #[test]
    fn the_dead_letter_policy_is_judged_too() {
        let want = DeadLetter {
            topic: "morgue".into(),
            max_delivery_attempts: 20,
        };
        let with = |dl: Option<(&str, u32)>, topic: &str| SubscriptionSettings {
            topic: topic.into(),
            retention: Some(crate::broker::RETENTION),
            expires_after: None,
            dead_letter: dl.map(|(t, n)| (t.to_string(), n)),
        };
        // A queue's own subscription needs the policy.
        let j = judge("q", "q", Some(&with(None, "q")), Some(&want));
        assert!(
            j.problems[0].contains("no dead-letter policy") && j.fixable,
            "{j:?}"
        );
        assert_eq!(
            j.update_flags,
            ["--dead-letter-topic=morgue --max-delivery-attempts=20"]
        );
        let j = judge(
            "q",
            "q",
            Some(&with(Some(("morgue", 20)), "q")),
            Some(&want),
        );
        assert!(j.problems.is_empty(), "{j:?}");
        let j = judge("q", "q", Some(&with(Some(("other", 5)), "q")), Some(&want));
        assert!(
            j.problems[0].contains("not to \"morgue\" after 20"),
            "{j:?}"
        );
        // A scheduled subscription must not have one.
        let j = judge(
            "q",
            "q.scheduled",
            Some(&with(Some(("morgue", 20)), "q.scheduled")),
            None,
        );
        assert!(j.problems[0].contains("parked") && j.fixable, "{j:?}");
        assert_eq!(j.update_flags, ["--clear-dead-letter-policy"]);
    }
}
