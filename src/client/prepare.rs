//! Prepare: the first step of every enqueue. Whatever way a job enters (`perform_later`, bulk,
//! inside the application's transaction, the API, the CLI, a retry from the store, a periodic
//! tick), its envelope is checked here once against the queue-name rules (with the client's
//! prefix) and Pub/Sub's limits (10 MB per message, attributes included; 7-day retention), and
//! turned into the message Pub/Sub gets: body, attributes and topic, computed once. What follows
//! is the same for all of them: *record* it in the store's outbox when the client has a store,
//! *publish* it ([`publish`](super::publish), split by bytes and by count), *mark* it published.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::Client;
use crate::broker::{message_bytes, RETENTION};
use crate::envelope::{Envelope, Wire};
use crate::error::{Error, Result};
use crate::queue::{validate_queue_name, SCHEDULED_SUFFIX};
use crate::store::{Dedup, NewJob, OutboxMessage};

/// The largest message accepted, body and attributes together (Pub/Sub's limit is 10 MB per
/// message).
pub const MAX_MESSAGE_BYTES: usize = 10_000_000;

/// Pub/Sub's limit on an attribute's value.
const MAX_ATTRIBUTE_VALUE_BYTES: usize = 1024;

/// Pub/Sub's limit on an attribute's key.
const MAX_ATTRIBUTE_KEY_BYTES: usize = 256;

/// The metadata key of a job's W3C trace context (see `telemetry`).
pub(crate) const TRACEPARENT: &str = "traceparent";

/// The attribute Google's Pub/Sub client libraries carry a message's W3C trace context in.
pub(crate) const GOOGLE_TRACEPARENT: &str = "googclient_traceparent";

/// A job checked and turned into its message: what every enqueue records and publishes.
#[derive(Clone, Debug)]
pub(crate) struct Prepared {
    /// The job as enqueued (its arguments may be `Null` when the body was serialized straight
    /// from the job, without a store).
    pub(crate) env: Envelope,
    /// Its topic (prefix included), body and attributes.
    pub(crate) message: OutboxMessage,
}

impl Prepared {
    /// The store row of this job: an outbox entry holding its message.
    pub(crate) fn new_job(&self, dedup: Option<Dedup>) -> NewJob {
        let env = &self.env;
        NewJob {
            id: env.job_id,
            job_class: env.job_class.clone(),
            queue: env.queue_name.clone(),
            arguments: env.arguments.clone(),
            metadata: env.metadata.clone(),
            enqueued_at: env.enqueued_at,
            scheduled_at: env.scheduled_at,
            dedup,
            message: Some(self.message.clone()),
        }
    }
}

/// The topic a job goes to: its queue's when due, else the queue's `.scheduled` topic. The
/// ActiveJob wire waits the adapters' way: in the queue, with a timestamp.
pub(crate) fn topic(prefix: &str, env: &Envelope, now: DateTime<Utc>) -> String {
    match env.scheduled_at {
        Some(at) if at > now && env.wire == Wire::PubsubJobs => {
            format!("{prefix}{}{SCHEDULED_SUFFIX}", env.queue_name)
        }
        _ => format!("{prefix}{}", env.queue_name),
    }
}

/// Checks `env`, whose body is `data` and attributes `attributes`, against the queue-name rules
/// (with `prefix`) and Pub/Sub's limits.
fn check(
    prefix: &str,
    morgue: &str,
    max_bytes: usize,
    env: &Envelope,
    data: &[u8],
    attributes: &HashMap<String, String>,
    now: DateTime<Utc>,
) -> Result<()> {
    validate_queue_name(prefix, &env.queue_name)?;
    if env.queue_name == morgue {
        return Err(Error::InvalidQueueName {
            name: env.queue_name.clone(),
            reason: "it is the morgue queue, where dead jobs go: jobs cannot be enqueued to it"
                .into(),
        });
    }
    for (key, value) in attributes {
        let (size, limit) = if key.len() > MAX_ATTRIBUTE_KEY_BYTES {
            (key.len(), MAX_ATTRIBUTE_KEY_BYTES)
        } else {
            (value.len(), MAX_ATTRIBUTE_VALUE_BYTES)
        };
        if size > limit {
            return Err(Error::AttributeTooLong {
                job_class: crate::morgue::truncate(&env.job_class, 100),
                queue: env.queue_name.clone(),
                attribute: crate::morgue::truncate(key, 100),
                size,
                limit,
            });
        }
    }
    let size = message_bytes(data, attributes);
    let limit = max_bytes.min(MAX_MESSAGE_BYTES);
    if size > limit {
        return Err(Error::PayloadTooLarge {
            job_class: env.job_class.clone(),
            queue: env.queue_name.clone(),
            size,
            limit,
        });
    }
    if let Some(at) = env.scheduled_at {
        let delay = (at - now).to_std().unwrap_or_default();
        if delay >= RETENTION {
            return Err(Error::DelayTooLong {
                job_class: env.job_class.clone(),
                queue: env.queue_name.clone(),
                delay,
            });
        }
    }
    Ok(())
}

impl Client {
    /// Prepares `env`: checks it and makes its message (see the module docs).
    pub(crate) fn prepare(&self, env: Envelope, now: DateTime<Utc>) -> Result<Prepared> {
        #[cfg(feature = "opentelemetry")]
        let env = if self.traced() {
            let mut env = env;
            crate::telemetry::create(&mut env);
            env
        } else {
            env
        };
        let data = env.to_body();
        self.prepare_with_body(env, data, now)
    }

    /// [`Client::prepare`] of each envelope, in order; the first refusal is the error (nothing
    /// of a bulk goes out if one job cannot).
    pub(crate) fn prepare_all(
        &self,
        envelopes: Vec<Envelope>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Prepared>> {
        // Sized once: a vector grown by doubling costs a large bulk copies and page faults.
        let mut jobs = Vec::with_capacity(envelopes.len());
        for env in envelopes {
            jobs.push(self.prepare(env, now)?);
        }
        Ok(jobs)
    }

    /// [`Client::prepare`] of an envelope whose body `data` is already serialized.
    pub(crate) fn prepare_with_body(
        &self,
        env: Envelope,
        data: Vec<u8>,
        now: DateTime<Utc>,
    ) -> Result<Prepared> {
        let config = self.config();
        let prefix = &config.topic_prefix;
        let mut attributes = env.attributes();
        if let Some(traceparent) = env.metadata.get(TRACEPARENT) {
            // Where Google's client libraries read a message's trace context.
            attributes.insert(GOOGLE_TRACEPARENT.to_string(), traceparent.clone());
        }
        check(
            prefix,
            &config.morgue_queue,
            config.max_job_bytes,
            &env,
            &data,
            &attributes,
            now,
        )?;
        let message = OutboxMessage {
            topic: topic(prefix, &env, now),
            data,
            attributes,
        };
        Ok(Prepared { env, message })
    }

    /// Where an envelope is published (see [`topic`]).
    pub(crate) fn topic_for(&self, env: &Envelope, now: DateTime<Utc>) -> String {
        topic(&self.config().topic_prefix, env, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::MemoryBroker;
    use crate::ClientConfig;

    fn client(prefix: &str) -> Client {
        let config = ClientConfig {
            topic_prefix: prefix.into(),
            ..ClientConfig::default()
        };
        Client::with_memory_broker(MemoryBroker::new(), config)
    }

    #[test]
    fn a_trace_context_in_the_metadata_is_mirrored_where_google_clients_read_it() {
        let c = client("");
        let mut env = Envelope::new("Traced", "default", serde_json::Value::Null);
        let plain = c.prepare(env.clone(), Utc::now()).unwrap();
        assert!(!plain.message.attributes.contains_key(GOOGLE_TRACEPARENT));
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        env.metadata.insert(TRACEPARENT.into(), tp.into());
        let traced = c.prepare(env, Utc::now()).unwrap();
        assert_eq!(
            traced
                .message
                .attributes
                .get(GOOGLE_TRACEPARENT)
                .map(String::as_str),
            Some(tp)
        );
    }

    #[test]
    fn the_size_limit_counts_the_attributes() {
        let c = client("");
        let env = Envelope::new("Big", "default", serde_json::Value::Null);
        let attrs = env.attributes();
        let room = MAX_MESSAGE_BYTES - message_bytes(b"", &attrs);
        assert!(c
            .prepare_with_body(env.clone(), vec![b' '; room], Utc::now())
            .is_ok());
        let err = c
            .prepare_with_body(env, vec![b' '; room + 1], Utc::now())
            .unwrap_err();
        assert!(
            matches!(err, Error::PayloadTooLarge { size, limit, .. } if size == MAX_MESSAGE_BYTES + 1 && limit == MAX_MESSAGE_BYTES),
            "{err}"
        );
    }

    #[test]
    fn a_configured_cap_refuses_jobs_over_it_and_the_morgue_queue_takes_none() {
        let c = Client::with_memory_broker(
            MemoryBroker::new(),
            ClientConfig {
                max_job_bytes: 2_000,
                ..ClientConfig::default()
            },
        );
        let small = Envelope::new("J", "default", serde_json::json!({"a": 1}));
        assert!(c.prepare(small, Utc::now()).is_ok());
        let big = Envelope::new("J", "default", serde_json::json!({"a": "x".repeat(2_000)}));
        let err = c.prepare(big, Utc::now()).unwrap_err();
        assert!(
            matches!(err, Error::PayloadTooLarge { limit: 2_000, .. }),
            "{err}"
        );
        let dead = Envelope::new("J", "morgue", serde_json::json!({}));
        let err = c.prepare(dead, Utc::now()).unwrap_err();
        assert!(err.to_string().contains("morgue queue"), "{err}");
        assert!(crate::client::config::parse_max_job_bytes("X", "0").is_err());
        assert!(crate::client::config::parse_max_job_bytes("X", "10000001").is_err());
        assert_eq!(
            crate::client::config::parse_max_job_bytes("X", "65536").unwrap(),
            65_536
        );
    }

    #[test]
    fn a_job_class_name_over_the_attribute_limit_is_refused_naming_it() {
        let c = client("");
        let ok = Envelope::new(&"J".repeat(1024), "default", serde_json::json!({}));
        assert!(c.prepare(ok, Utc::now()).is_ok());
        let long = Envelope::new(&"J".repeat(1025), "default", serde_json::json!({}));
        let err = c.prepare(long, Utc::now()).unwrap_err();
        assert!(
            matches!(&err, Error::AttributeTooLong { attribute, size: 1025, limit: 1024, .. } if attribute == "job_class"),
            "{err}"
        );
    }

    #[test]
    fn the_queue_name_is_checked_with_the_prefix() {
        let queue = "q".repeat(240);
        let env = Envelope::new("J", &queue, serde_json::Value::Null);
        assert!(client("").prepare(env.clone(), Utc::now()).is_ok());
        let err = client("tenant-a-").prepare(env, Utc::now()).unwrap_err();
        assert!(matches!(err, Error::InvalidQueueName { .. }), "{err}");
    }

    #[test]
    fn a_delay_past_the_retention_is_refused_and_a_due_job_goes_to_its_queue() {
        let c = client("p-");
        let now = Utc::now();
        let mut env = Envelope::new("J", "mail", serde_json::Value::Null);
        assert_eq!(c.prepare(env.clone(), now).unwrap().message.topic, "p-mail");
        env.scheduled_at = Some(now + chrono::Duration::hours(1));
        assert_eq!(
            c.prepare(env.clone(), now).unwrap().message.topic,
            format!("p-mail{SCHEDULED_SUFFIX}")
        );
        env.scheduled_at = Some(now + chrono::Duration::days(8));
        let err = c.prepare(env, now).unwrap_err();
        assert!(matches!(err, Error::DelayTooLong { .. }), "{err}");
        assert!(err.to_string().contains("7-day"), "{err}");
    }
}
