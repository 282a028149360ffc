//! The morgue's operator tools: list (without losing anything), retry, purge. `worker morgue`
//! and the operator commands call them.

use std::collections::HashSet;
use std::time::Duration;

use crate::broker::Delivery;
use crate::client::Client;
use crate::envelope::Envelope;
use crate::error::Result;
use crate::morgue::MorgueRecord;

/// How long a pull waits for one more message before it decides the morgue is drained.
pub const IDLE: Duration = Duration::from_secs(2);

/// A morgue entry with the broker's message id.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The broker's message id.
    pub message_id: String,
    /// The record.
    pub record: MorgueRecord,
}

fn morgue_subscription(client: &Client) -> String {
    client.resource_name(client.morgue_queue())
}

/// How many bytes of dead messages the morgue tools hold at once (dead jobs can be 10 MB each):
/// a retry round stops pulling there; a listing goes on, keeping no more bodies.
pub const PAGE_BYTES: usize = 64 * 1024 * 1024;

/// What [`pull_up_to`] does once the messages it holds reach [`PAGE_BYTES`].
#[derive(Clone, Copy, PartialEq)]
enum Full {
    /// Stop pulling: the caller handles this page, then pulls the next.
    Stop,
    /// Go on pulling, dropping the body of every further message.
    DropBodies,
}

/// Pulls up to `limit` messages (unary pulls, so nothing is buffered out of sight), until
/// `limit` or [`IDLE`] without a new one, holding at most about [`PAGE_BYTES`] (see [`Full`]).
/// Duplicates are released at once. Returns the messages and how many lost their body.
async fn pull_up_to(
    client: &Client,
    subscription: &str,
    limit: usize,
    full: Full,
) -> Result<(Vec<Delivery>, usize)> {
    let broker = client.broker();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut bytes = 0;
    let mut dropped = 0;
    while out.len() < limit && (full == Full::DropBodies || bytes < PAGE_BYTES) {
        let batch = broker
            .pull(subscription, (limit - out.len()).min(500), IDLE)
            .await?;
        if batch.is_empty() {
            break;
        }
        let mut dups = Vec::new();
        for mut d in batch {
            if !seen.insert(d.message_id.clone()) {
                dups.push(d.ack_id);
                continue;
            }
            if bytes >= PAGE_BYTES {
                d.data = Vec::new();
                dropped += 1;
            }
            bytes += crate::broker::message_bytes(&d.data, &d.attributes);
            out.push(d);
        }
        if !dups.is_empty() {
            broker.modify_ack_deadline(subscription, dups, 0).await?;
        }
    }
    Ok((out, dropped))
}

/// What [`list`] found.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Listing {
    /// The dead jobs listed.
    pub entries: Vec<Entry>,
    /// How many entries come without their body (an empty `record.body`): the listing keeps
    /// bodies only up to [`PAGE_BYTES`].
    pub bodies_dropped: usize,
}

/// Lists up to `limit` dead jobs and leaves them all in the morgue: what it pulls it releases
/// (ack deadline 0). Bodies are kept up to [`PAGE_BYTES`]; entries after that have every field
/// but the body. A morgue that does not exist yet is empty.
pub async fn list(client: &Client, limit: usize) -> Result<Listing> {
    let subscription = morgue_subscription(client);
    if !client.broker().subscription_exists(&subscription).await? {
        return Ok(Listing::default());
    }
    let (pulled, bodies_dropped) =
        pull_up_to(client, &subscription, limit, Full::DropBodies).await?;
    let entries = pulled
        .iter()
        .map(|d| Entry {
            message_id: d.message_id.clone(),
            record: MorgueRecord::from_delivery(d),
        })
        .collect();
    let release: Vec<String> = pulled.into_iter().map(|d| d.ack_id).collect();
    if !release.is_empty() {
        client
            .broker()
            .modify_ack_deadline(&subscription, release, 0)
            .await?;
    }
    Ok(Listing {
        entries,
        bodies_dropped,
    })
}

/// Empties the morgue (Seek to now).
pub async fn purge(client: &Client) -> Result<()> {
    let subscription =
        super::require_subscription(client, "the morgue", client.morgue_queue()).await?;
    client.broker().seek_to_now(&subscription).await
}

/// Which dead jobs to retry.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Select {
    /// One job by id.
    JobId(String),
    /// Every job.
    All,
}

/// What a retry did.
#[derive(Clone, Debug, Default)]
pub struct RetryReport {
    /// Jobs republished to their source queue (and removed from the morgue), by id.
    pub retried: Vec<(String, String)>,
    /// Dead messages that matched but cannot be retried (not a job envelope), with the reason;
    /// they stay in the morgue.
    pub skipped: Vec<(String, String)>,
    /// Jobs whose republish failed (the queue missing, no permission to publish), with the
    /// error; they stay in the morgue.
    pub failed: Vec<(String, String)>,
}

/// Republishes dead jobs to their source queue with their executions reset, then removes
/// them from the morgue. A job is acked from the morgue only after its republish succeeded;
/// everything else pulled is released.
pub async fn retry(client: &Client, select: Select) -> Result<RetryReport> {
    let subscription =
        super::require_subscription(client, "the morgue", client.morgue_queue()).await?;
    let broker = client.broker().clone();
    let mut report = RetryReport::default();
    let mut release = Vec::new();
    let mut done = false;
    while !done {
        let (pulled, _) = pull_up_to(client, &subscription, 500, Full::Stop).await?;
        if pulled.is_empty() {
            break;
        }
        for d in pulled {
            let record = MorgueRecord::from_delivery(&d);
            let wanted = !done
                && match &select {
                    Select::All => true,
                    Select::JobId(id) => record.job_id.as_deref() == Some(id.as_str()),
                };
            if !wanted {
                release.push(d.ack_id);
                continue;
            }
            let label = record
                .job_id
                .clone()
                .unwrap_or_else(|| d.message_id.clone());
            match Envelope::decode(&record.body, &Default::default()) {
                Ok(mut env) => {
                    env.executions = 0;
                    env.exception_executions.clear();
                    env.generation += 1;
                    env.scheduled_at = None;
                    if !record.source_queue.is_empty() {
                        env.queue_name = record.source_queue.clone();
                    }
                    let queue = env.queue_name.clone();
                    match client.publish_envelopes(vec![env]).await {
                        Ok(()) => {
                            broker.ack(&subscription, vec![d.ack_id]).await?;
                            report.retried.push((label, queue));
                        }
                        Err(e) => {
                            release.push(d.ack_id);
                            report
                                .failed
                                .push((label, format!("republish failed: {e}")));
                        }
                    }
                }
                Err(e) => {
                    release.push(d.ack_id);
                    report
                        .skipped
                        .push((label, format!("not a job envelope ({e})")));
                }
            }
            if matches!(select, Select::JobId(_)) {
                done = true;
            }
        }
    }
    if !release.is_empty() {
        broker
            .modify_ack_deadline(&subscription, release, 0)
            .await?;
    }
    Ok(report)
}
