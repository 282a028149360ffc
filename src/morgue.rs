//! The morgue: where jobs end that will not run again by themselves: retries spent, or a message
//! that cannot run (unknown class, arguments that do not deserialize, broken envelope, newer
//! format). A morgue message keeps the job's body byte for byte (for a job that ran: its final
//! envelope, with `executions` and `last_error`) and carries the reason in attributes.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::broker::{Delivery, OutboundMessage};
use crate::envelope::{Envelope, ATTR_JOB_CLASS, ATTR_JOB_ID};

/// Attribute: why the job is in the morgue.
pub const ATTR_ERROR: &str = "morgue_error";
/// Attribute: the queue the job came from.
pub const ATTR_SOURCE_QUEUE: &str = "source_queue";
/// Attribute: when it failed, RFC 3339.
pub const ATTR_FAILED_AT: &str = "failed_at";
/// Attribute: executions performed.
pub const ATTR_EXECUTIONS: &str = "executions";

/// Pub/Sub's limit on an attribute value.
const MAX_ATTRIBUTE_BYTES: usize = 1024;

/// A dead job.
#[derive(Clone, Debug, PartialEq)]
pub struct MorgueRecord {
    /// The job's body (raw, whatever it was).
    pub body: Vec<u8>,
    /// Why it is here.
    pub error: String,
    /// The queue it came from.
    pub source_queue: String,
    /// When it failed.
    pub failed_at: DateTime<Utc>,
    /// The class name, when known.
    pub job_class: Option<String>,
    /// The job id, when known.
    pub job_id: Option<String>,
    /// Executions performed, when known.
    pub executions: Option<u32>,
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

impl MorgueRecord {
    /// The record of a message dying now. The job's id, class and executions come from its
    /// envelope when it has one; otherwise from the message's routing attributes, or from the
    /// body's `job_id` / `job_class` keys when it is JSON at all, so a broken message still says
    /// whose it was.
    pub fn new(
        body: Vec<u8>,
        error: String,
        source_queue: &str,
        env: Option<&Envelope>,
        attributes: &HashMap<String, String>,
    ) -> Self {
        let json: Option<serde_json::Value> = if env.is_none() {
            serde_json::from_slice(&body).ok()
        } else {
            None
        };
        let from_body = |key: &str| {
            json.as_ref()
                .and_then(|v| v.get(key))
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let job_class = env
            .map(|e| e.job_class.clone())
            .or_else(|| attributes.get(ATTR_JOB_CLASS).cloned())
            .or_else(|| from_body("job_class"));
        let job_id = env
            .map(|e| e.job_id.to_string())
            .or_else(|| attributes.get(ATTR_JOB_ID).cloned())
            .or_else(|| from_body("job_id"));
        Self {
            body,
            error,
            source_queue: source_queue.to_string(),
            failed_at: Utc::now(),
            job_class,
            job_id,
            executions: env.map(|e| e.executions),
        }
    }

    /// The message to publish to the morgue topic.
    pub fn to_message(&self) -> OutboundMessage {
        let mut a = HashMap::new();
        a.insert(
            ATTR_ERROR.to_string(),
            truncate(&self.error, MAX_ATTRIBUTE_BYTES),
        );
        a.insert(
            ATTR_SOURCE_QUEUE.to_string(),
            truncate(&self.source_queue, MAX_ATTRIBUTE_BYTES),
        );
        a.insert(ATTR_FAILED_AT.to_string(), self.failed_at.to_rfc3339());
        if let Some(c) = &self.job_class {
            a.insert(ATTR_JOB_CLASS.to_string(), truncate(c, MAX_ATTRIBUTE_BYTES));
        }
        if let Some(id) = &self.job_id {
            a.insert(ATTR_JOB_ID.to_string(), truncate(id, MAX_ATTRIBUTE_BYTES));
        }
        if let Some(n) = self.executions {
            a.insert(ATTR_EXECUTIONS.to_string(), n.to_string());
        }
        OutboundMessage {
            data: self.body.clone(),
            attributes: a,
        }
    }

    /// Reads a message pulled from the morgue subscription.
    pub fn from_delivery(d: &Delivery) -> Self {
        let get = |k: &str| d.attributes.get(k).cloned();
        Self {
            body: d.data.clone(),
            error: get(ATTR_ERROR).unwrap_or_default(),
            source_queue: get(ATTR_SOURCE_QUEUE).unwrap_or_default(),
            failed_at: get(ATTR_FAILED_AT)
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(Utc::now),
            job_class: get(ATTR_JOB_CLASS),
            job_id: get(ATTR_JOB_ID),
            executions: get(ATTR_EXECUTIONS).and_then(|n| n.parse().ok()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let r = MorgueRecord {
            body: b"\xff garbage".to_vec(),
            error: "é".repeat(2000),
            source_queue: "q".into(),
            failed_at: Utc::now(),
            job_class: Some("MockJob".into()),
            job_id: None,
            executions: Some(3),
        };
        let m = r.to_message();
        assert!(m.attributes[ATTR_ERROR].len() <= 1024);
        let d = Delivery {
            ack_id: "a".into(),
            message_id: "1".into(),
            data: m.data,
            attributes: m.attributes,
        };
        let back = MorgueRecord::from_delivery(&d);
        assert_eq!(back.body, r.body);
        assert_eq!(back.executions, Some(3));
        assert_eq!(back.job_class.as_deref(), Some("MockJob"));
        assert_eq!(
            back.failed_at.timestamp_millis(),
            r.failed_at.timestamp_millis()
        );
    }
}

/// Tools over the morgue queue: list (without losing anything), retry, purge.
pub mod tools {
    use std::collections::HashSet;
    use std::time::Duration;

    use super::MorgueRecord;
    use crate::broker::Delivery;
    use crate::client::Client;
    use crate::envelope::Envelope;
    use crate::error::Result;

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

    /// Pulls up to `limit` messages (unary pulls, so nothing is buffered out of sight), until
    /// `limit` or [`IDLE`] without a new one. Duplicates are released at once.
    async fn pull_up_to(
        client: &Client,
        subscription: &str,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        let broker = client.broker();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        while out.len() < limit {
            let batch = broker
                .pull(subscription, (limit - out.len()).min(500), IDLE)
                .await?;
            if batch.is_empty() {
                break;
            }
            let mut dups = Vec::new();
            for d in batch {
                if seen.insert(d.message_id.clone()) {
                    out.push(d);
                } else {
                    dups.push(d.ack_id);
                }
            }
            if !dups.is_empty() {
                broker.modify_ack_deadline(subscription, dups, 0).await?;
            }
        }
        Ok(out)
    }

    /// Lists up to `limit` dead jobs and leaves them all in the morgue: what it pulls it releases
    /// (ack deadline 0). A morgue that does not exist yet is empty.
    pub async fn list(client: &Client, limit: usize) -> Result<Vec<Entry>> {
        let subscription = morgue_subscription(client);
        if !client.broker().subscription_exists(&subscription).await? {
            return Ok(Vec::new());
        }
        let pulled = pull_up_to(client, &subscription, limit).await?;
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
        Ok(entries)
    }

    /// Empties the morgue (Seek to now).
    pub async fn purge(client: &Client) -> Result<()> {
        let subscription =
            crate::queue::require_subscription(client, "the morgue", client.morgue_queue()).await?;
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
    }

    /// Republishes dead jobs to their source queue with their executions reset, then removes
    /// them from the morgue. A job is acked from the morgue only after its republish succeeded;
    /// everything else pulled is released.
    pub async fn retry(client: &Client, select: Select) -> Result<RetryReport> {
        let subscription =
            crate::queue::require_subscription(client, "the morgue", client.morgue_queue()).await?;
        let broker = client.broker().clone();
        let mut report = RetryReport::default();
        let mut release = Vec::new();
        let mut done = false;
        while !done {
            let pulled = pull_up_to(client, &subscription, 500).await?;
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
                                    .skipped
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
}
