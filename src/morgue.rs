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
/// Attribute Pub/Sub adds to a message its dead-letter policy moved: the deliveries it had.
pub const ATTR_DEAD_LETTER_DELIVERIES: &str = "CloudPubSubDeadLetterSourceDeliveryCount";
/// Attribute Pub/Sub adds to a message its dead-letter policy moved: the subscription.
pub const ATTR_DEAD_LETTER_SUBSCRIPTION: &str = "CloudPubSubDeadLetterSourceSubscription";

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
pub(crate) fn truncate(s: &str, max: usize) -> String {
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
    pub fn new<A>(
        body: Vec<u8>,
        error: String,
        source_queue: &str,
        env: Option<&Envelope<A>>,
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

    /// Makes the record fit in one Pub/Sub message: a body that would take it over the 10 MB
    /// limit (a job near the limit, with the morgue's attributes added) is cut, and the error
    /// says so. A dead job's morgue copy must always be publishable: otherwise its message
    /// would come back again and again.
    pub(crate) fn fit(mut self) -> Self {
        let limit = crate::client::MAX_MESSAGE_BYTES;
        // Measured without copying the body (it may be near 10 MB).
        let size = crate::broker::message_bytes(&self.body, &self.attributes());
        if size > limit {
            let total = self.body.len();
            // Room for the longer error below too.
            let keep = total.saturating_sub(size - limit + 128);
            self.body.truncate(keep);
            self.error = format!(
                "{} (the body was cut to its first {keep} of {total} bytes to fit the morgue)",
                self.error
            );
        }
        self
    }

    /// The message to publish to the morgue topic.
    pub fn to_message(&self) -> OutboundMessage {
        OutboundMessage {
            data: self.body.clone(),
            attributes: self.attributes(),
        }
    }

    /// [`to_message`](Self::to_message) without copying the body.
    pub fn into_message(self) -> OutboundMessage {
        let attributes = self.attributes();
        OutboundMessage {
            data: self.body,
            attributes,
        }
    }

    /// The attributes of [`to_message`](Self::to_message).
    fn attributes(&self) -> HashMap<String, String> {
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
        a
    }

    /// Reads a message pulled from the morgue subscription: one a worker sent, or one a queue
    /// subscription's dead-letter policy moved there (no worker ever settled it), read as a
    /// record like any other.
    pub fn from_delivery(d: &Delivery) -> Self {
        let get = |k: &str| d.attributes.get(k).cloned();
        if get(ATTR_ERROR).is_none() {
            if let Some(n) = get(ATTR_DEAD_LETTER_DELIVERIES) {
                return Self::dead_lettered(d, &n);
            }
        }
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

impl MorgueRecord {
    /// The record of a message Pub/Sub's dead-letter policy moved after `deliveries`: the job
    /// (id, class, executions, queue) from its envelope when it has one.
    fn dead_lettered(d: &Delivery, deliveries: &str) -> Self {
        let env = Envelope::decode(&d.data, &d.attributes).ok();
        let subscription = d
            .attributes
            .get(ATTR_DEAD_LETTER_SUBSCRIPTION)
            .map(|s| s.rsplit('/').next().unwrap_or(s).to_string())
            .unwrap_or_default();
        let error = format!(
            "delivered {deliveries} times without an outcome: Pub/Sub's dead-letter policy on \
             subscription {subscription:?} moved it here (each run ended without an ack, a retry or \
             a release: the job crashes or exhausts its worker, or its lease kept lapsing)"
        );
        let mut r = Self::new(
            d.data.clone(),
            error,
            &subscription,
            env.as_ref(),
            &d.attributes,
        );
        if let Some(env) = &env {
            r.source_queue = env.queue_name.clone();
        }
        r
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

    #[test]
    fn a_dead_lettered_message_reads_as_a_record() {
        let attributes = |extra: &[(&str, &str)]| {
            let mut a: HashMap<String, String> = extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            a.insert(ATTR_DEAD_LETTER_DELIVERIES.into(), "20".into());
            a.insert(
                ATTR_DEAD_LETTER_SUBSCRIPTION.into(),
                "projects/p/subscriptions/app_emails".into(),
            );
            a
        };
        // Not a job envelope: the subscription names the source.
        let d = Delivery {
            ack_id: "a".into(),
            message_id: "1".into(),
            data: b"\xff".to_vec(),
            attributes: attributes(&[("job_class", "Crashy")]),
        };
        let r = MorgueRecord::from_delivery(&d);
        assert!(
            r.error.starts_with("delivered 20 times without an outcome"),
            "{}",
            r.error
        );
        assert!(r.error.contains("\"app_emails\""), "{}", r.error);
        assert_eq!(r.source_queue, "app_emails");
        assert_eq!(r.job_class.as_deref(), Some("Crashy"));
        // A job envelope: its queue, id and executions.
        let env = Envelope::new("Crashy", "emails", serde_json::json!({}));
        let mut a = attributes(&[]);
        a.extend(env.attributes());
        let d = Delivery {
            ack_id: "a".into(),
            message_id: "2".into(),
            data: env.to_body(),
            attributes: a,
        };
        let r = MorgueRecord::from_delivery(&d);
        assert_eq!(r.source_queue, "emails");
        assert_eq!(r.job_id, Some(env.job_id.to_string()));
        assert_eq!(r.executions, Some(0));
        // A record a worker sent keeps its own reason.
        let mut m = r.clone().into_message();
        m.attributes
            .insert(ATTR_DEAD_LETTER_DELIVERIES.into(), "5".into());
        let d = Delivery {
            ack_id: "a".into(),
            message_id: "3".into(),
            data: m.data,
            attributes: m.attributes,
        };
        assert_eq!(MorgueRecord::from_delivery(&d).error, r.error);
    }
}
