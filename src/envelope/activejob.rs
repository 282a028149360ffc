//! Rails' ActiveJob wire format, read and written. Read: a message that Rails enqueued through a Pub/Sub ActiveJob
//! adapter (`JSON.dump(job.serialize)`, the adapter's `timestamp` attribute for `enqueue_at`) is
//! a job like any other. Step 1 of dispatch for such a message: [`Envelope::decode`] hands a body
//! without `format_version` whose keys are ActiveJob's to [`to_envelope`].
//!
//! Arguments map to the Rust job's arguments:
//! - one keyword hash (`perform(invoice_id:, force:)`, or `perform(hash)`) becomes a JSON object:
//!   the struct's fields;
//! - anything else (positional arguments) becomes a JSON array: a tuple struct or a `Vec`;
//! - ActiveJob's serializer markers are unwrapped: `_aj_ruby2_keywords`, `_aj_symbol_keys` and
//!   `_aj_hash_with_indifferent_access` are dropped from hashes, `_aj_serialized` values with a
//!   plain meaning become JSON (Symbol -> string, Time / TimeWithZone / DateTime -> RFC 3339
//!   string, Date -> `YYYY-MM-DD`, Duration -> seconds, BigDecimal -> its decimal string);
//! - a GlobalID (`_aj_globalid`, an ActiveRecord object) or any other serializer cannot map: the
//!   message goes to the morgue with a reason that names it.
//!
//! `job_id`, `queue_name`, `executions`, `exception_executions`, `enqueued_at` and
//! `scheduled_at` (Rails 7.1+, or the adapter's `timestamp` attribute, epoch seconds) carry over,
//! so delays and execution counts continue where Rails left off. The Rust type that runs a Rails
//! class is the one registered under the class name: `Job::NAME = "Billing::SendInvoiceJob"`.
//!
//! Written, opt-in per job type: a job with `const WIRE: Wire = Wire::ActiveJob` is published as
//! [`to_body`] serializes it, which a Rails worker runs (`ActiveJob::Base.execute`).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value};

use super::{DecodeError, Envelope, Wire, FORMAT_VERSION};

/// The adapter attribute with the due time of `enqueue_at`, epoch seconds.
pub(crate) const ATTR_TIMESTAMP: &str = "timestamp";

/// True when a body (a JSON object without `format_version`) has ActiveJob's keys.
/// Where a job's [`Metadata`](super::Metadata) travels in an ActiveJob payload: a key of
/// ours, which `ActiveJob::Base.deserialize` ignores and Rails' own keys never collide with.
pub(crate) const METADATA_KEY: &str = "pubsub_jobs_metadata";

pub(crate) fn looks_like_activejob(obj: &Map<String, Value>) -> bool {
    obj.contains_key("job_class")
        && obj.contains_key("job_id")
        && obj.get("arguments").is_some_and(Value::is_array)
}

/// The envelope of an ActiveJob message; the error names what cannot map.
pub(crate) fn to_envelope(
    obj: &Map<String, Value>,
    attributes: &HashMap<String, String>,
) -> Result<Envelope, DecodeError> {
    let text = |key: &str| obj.get(key).and_then(Value::as_str);
    let job_class = text("job_class")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| broken("job_class is not a string"))?
        .to_string();
    let job_id = text("job_id")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| broken("job_id is not a UUID"))?;
    let queue_name = text("queue_name").unwrap_or("default").to_string();
    let args = obj
        .get("arguments")
        .and_then(Value::as_array)
        .ok_or_else(|| broken("arguments is not an array"))?;
    let arguments = arguments(args)?;
    let executions = obj
        .get("executions")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        .min(u64::from(u32::MAX)) as u32;
    let mut exception_executions: BTreeMap<String, u32> = obj
        .get("exception_executions")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?.min(u64::from(u32::MAX)) as u32)))
                .collect()
        })
        .unwrap_or_default();
    // Ruby's exception classes have no Rust counterpart: the failures Rails counted count
    // against the Rust job's fallback rule, so a job Rails retried twice has that many fewer
    // retries left under `otherwise` (its `retry_on` rules start their own counts).
    let rails_failures = exception_executions
        .values()
        .fold(0u32, |sum, n| sum.saturating_add(*n));
    if rails_failures > 0 {
        exception_executions
            .entry(super::DEFAULT_RULE_KEY.to_string())
            .or_insert(rails_failures);
    }
    let enqueued_at = text("enqueued_at")
        .and_then(parse_time)
        .unwrap_or_else(Utc::now);
    let scheduled_at = obj
        .get("scheduled_at")
        .and_then(|v| match v {
            Value::String(s) => parse_time(s),
            Value::Number(n) => n.as_f64().and_then(epoch_seconds),
            _ => None,
        })
        .or_else(|| {
            attributes
                .get(ATTR_TIMESTAMP)
                .and_then(|t| t.parse::<f64>().ok())
                .and_then(epoch_seconds)
        });
    Ok(Envelope {
        format_version: FORMAT_VERSION,
        job_class,
        job_id,
        queue_name,
        arguments,
        executions,
        exception_executions,
        enqueued_at,
        scheduled_at,
        last_error: None,
        // Rails 8.1's continuable jobs: where the job is (`continuation`, its finished steps and
        // the current one's cursor) is the Rust job's checkpoint, and back.
        checkpoint: obj
            .get("continuation")
            .filter(|c| !c.is_null() && c.as_object().is_none_or(|o| !o.is_empty()))
            .cloned(),
        generation: 0,
        // Rails 8.1's continuable jobs count their resumptions under the same key.
        resumptions: obj
            .get("resumptions")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .min(u64::from(u32::MAX)) as u32,
        // Ours, under a key Rails ignores: string values only (anything else is left out).
        metadata: obj
            .get(METADATA_KEY)
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default(),
        wire: Wire::PubsubJobs,
    })
}

/// The body Rails' `ActiveJob::Base.execute(JSON.parse(data))` accepts: `job.serialize`'s keys,
/// arguments in ActiveJob's shape. A struct's fields become one keyword hash (marked
/// `_aj_ruby2_keywords`, so `perform(invoice_id:, ...)` receives them as keywords); a sequence
/// (tuple struct, `Vec`) becomes positional arguments; anything else one argument.
pub(crate) fn to_body(env: &Envelope) -> Vec<u8> {
    let arguments = match &env.arguments {
        Value::Object(fields) => {
            let mut hash = fields.clone();
            let keys: Vec<Value> = fields.keys().map(|k| Value::from(k.as_str())).collect();
            hash.insert("_aj_ruby2_keywords".into(), Value::Array(keys));
            Value::Array(vec![Value::Object(hash)])
        }
        Value::Array(items) => Value::Array(items.clone()),
        Value::Null => Value::Array(Vec::new()),
        other => Value::Array(vec![other.clone()]),
    };
    let mut body = serde_json::json!({
        "job_class": env.job_class,
        "job_id": env.job_id,
        "provider_job_id": null,
        "queue_name": env.queue_name,
        "priority": null,
        "arguments": arguments,
        "executions": env.executions,
        "exception_executions": env.exception_executions,
        "locale": "en",
        "timezone": null,
        "enqueued_at": env.enqueued_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    if let Some(continuation) = &env.checkpoint {
        body["continuation"] = continuation.clone();
    }
    if env.resumptions > 0 {
        body["resumptions"] = env.resumptions.into();
    }
    if !env.metadata.is_empty() {
        body[METADATA_KEY] = serde_json::json!(env.metadata);
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The adapter's attributes: `timestamp` (epoch seconds) for a job due later.
pub(crate) fn attributes<A>(env: &Envelope<A>) -> HashMap<String, String> {
    env.scheduled_at
        .map(|at| {
            let secs = at.timestamp_millis() as f64 / 1000.0;
            (ATTR_TIMESTAMP.to_string(), secs.to_string())
        })
        .into_iter()
        .collect()
}

fn broken(what: &str) -> DecodeError {
    DecodeError::Broken(format!("ActiveJob message: {what}"))
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn epoch_seconds(s: f64) -> Option<DateTime<Utc>> {
    s.is_finite()
        .then(|| {
            Utc.timestamp_millis_opt((s * 1000.0).round() as i64)
                .single()
        })
        .flatten()
}

/// One keyword hash -> an object; otherwise the list, each value unwrapped.
fn arguments(args: &[Value]) -> Result<Value, DecodeError> {
    if let [only @ Value::Object(_)] = args {
        return unwrap("arguments[0]", only);
    }
    args.iter()
        .enumerate()
        .map(|(i, v)| unwrap(&format!("arguments[{i}]"), v))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

const MARKERS: [&str; 3] = [
    "_aj_ruby2_keywords",
    "_aj_symbol_keys",
    "_aj_hash_with_indifferent_access",
];

/// A serialized argument as plain JSON; `path` names it in errors.
fn unwrap(path: &str, v: &Value) -> Result<Value, DecodeError> {
    match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, x)| unwrap(&format!("{path}[{i}]"), x))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(m) if m.contains_key("_aj_globalid") => Err(DecodeError::Broken(format!(
            "ActiveJob argument {path} is a GlobalID ({}): a Rails record cannot run in Rust; pass its id instead",
            m.get("_aj_globalid").and_then(Value::as_str).unwrap_or("?")
        ))),
        Value::Object(m) if m.contains_key("_aj_serialized") => serialized(path, m),
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                if MARKERS.contains(&k.as_str()) {
                    continue;
                }
                out.insert(k.clone(), unwrap(&format!("{path}.{k}"), x)?);
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}

/// ActiveJob's built-in serializers with a plain meaning in JSON.
fn serialized(path: &str, m: &Map<String, Value>) -> Result<Value, DecodeError> {
    let kind = m
        .get("_aj_serialized")
        .and_then(Value::as_str)
        .unwrap_or("");
    let value = m.get("value").cloned().unwrap_or(Value::Null);
    let name = kind.rsplit("::").next().unwrap_or(kind);
    match name {
        "SymbolSerializer"
        | "TimeWithZoneSerializer"
        | "TimeSerializer"
        | "DateTimeSerializer"
        | "DateSerializer"
        | "BigDecimalSerializer" => match value {
            Value::String(_) => Ok(value),
            other => Err(DecodeError::Broken(format!(
                "ActiveJob argument {path} ({kind}) has value {other}, not a string"
            ))),
        },
        "DurationSerializer" => Some(value).filter(Value::is_number).ok_or_else(|| {
            DecodeError::Broken(format!(
                "ActiveJob argument {path} ({kind}) has no number of seconds"
            ))
        }),
        _ => Err(DecodeError::Broken(format!(
            "ActiveJob argument {path} uses serializer {kind:?}, which has no Rust meaning"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: &str, attrs: &[(&str, &str)]) -> Result<Envelope, DecodeError> {
        let attrs = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Envelope::decode(body.as_bytes(), &attrs)
    }

    #[test]
    fn rails_keyword_arguments_become_the_structs_fields() {
        // Rails 6.1's job.serialize of MockJob.perform_later(sleep_duration: 0.1, raise_error: false).
        let env = decode(
            r#"{"job_class":"MockJob","job_id":"e7ce1f84-41de-4653-aaa2-b92d76f975ce","provider_job_id":null,"queue_name":"ajq15290",
                "priority":null,"arguments":[{"sleep_duration":0.1,"raise_error":false,"_aj_ruby2_keywords":["sleep_duration","raise_error"]}],
                "executions":0,"exception_executions":{},"locale":"en","timezone":null,"enqueued_at":"2026-11-22T21:50:12Z"}"#,
            &[],
        )
        .expect("an ActiveJob message is a job");
        assert_eq!(env.job_class, "MockJob");
        assert_eq!(
            env.job_id.to_string(),
            "e7ce1f84-41de-4653-aaa2-b92d76f975ce"
        );
        assert_eq!(env.queue_name, "ajq15290");
        assert_eq!(
            env.arguments,
            serde_json::json!({"sleep_duration": 0.1, "raise_error": false})
        );
        assert_eq!(env.attempt(), 1);
        assert_eq!(env.enqueued_at.to_rfc3339(), "2026-11-22T21:50:12+00:00");
        assert_eq!(env.scheduled_at, None);
    }

    #[test]
    fn counters_from_the_wire_saturate_instead_of_overflowing() {
        let env = decode(
            r#"{"job_class":"MockJob","job_id":"e7ce1f84-41de-4653-aaa2-b92d76f975ce","arguments":[],
                "executions":99999999999,"exception_executions":{"[A]":4294967295,"[B]":99999999999}}"#,
            &[],
        )
        .expect("a job");
        assert_eq!(env.executions, u32::MAX);
        assert_eq!(env.attempt(), u32::MAX, "the next attempt saturates too");
        assert_eq!(env.exception_executions["[B]"], u32::MAX);
        assert_eq!(
            env.exception_executions[crate::envelope::DEFAULT_RULE_KEY],
            u32::MAX,
            "Rails' failures summed, saturating"
        );
    }

    #[test]
    fn positional_arguments_serializers_counts_and_the_timestamp_attribute() {
        let env = decode(
            r#"{"job_class":"Billing::SendInvoiceJob","job_id":"0b6c7c6e-7a43-4f3e-9d59-2f9a4e7d1c11","queue_name":"billing",
                "arguments":[42,{"_aj_serialized":"ActiveJob::Serializers::SymbolSerializer","value":"eur"},
                  {"_aj_serialized":"ActiveJob::Serializers::DurationSerializer","value":3600,"parts":[["hours",1]]},
                  {"_aj_serialized":"ActiveJob::Serializers::TimeWithZoneSerializer","value":"2026-11-22T10:00:00.000000000Z"},
                  {"a":{"_aj_symbol_keys":["b"],"b":[1,{"_aj_serialized":"ActiveJob::Serializers::DateSerializer","value":"2026-11-22"}]}}],
                "executions":2,"exception_executions":{"[Net::ReadTimeout]":2}}"#,
            &[("timestamp", "1795435200.5")],
        )
        .expect("a job");
        assert_eq!(
            env.arguments,
            serde_json::json!([42, "eur", 3600, "2026-11-22T10:00:00.000000000Z", {"a": {"b": [1, "2026-11-22"]}}])
        );
        assert_eq!(env.executions, 2);
        assert_eq!(env.attempt(), 3);
        assert_eq!(env.exception_executions["[Net::ReadTimeout]"], 2);
        assert_eq!(
            env.exception_executions[crate::envelope::DEFAULT_RULE_KEY],
            2,
            "Rails' failures count against the fallback rule"
        );
        assert_eq!(
            env.scheduled_at.map(|t| t.timestamp_millis()),
            Some(1_795_435_200_500)
        );
    }

    #[test]
    fn a_rails_continuation_and_its_resumptions_are_the_checkpoint_and_come_back() {
        let env = decode(
            r#"{"job_class":"ImportJob","job_id":"0b6c7c6e-7a43-4f3e-9d59-2f9a4e7d1c11","arguments":[7],
                "executions":1,"continuation":{"completed":["fetch"],"current":["rows",120]},"resumptions":3}"#,
            &[],
        )
        .expect("a job");
        let continuation = serde_json::json!({"completed": ["fetch"], "current": ["rows", 120]});
        assert_eq!(env.checkpoint.as_ref(), Some(&continuation));
        assert_eq!((env.executions, env.resumptions), (1, 3));
        let mut back = env.clone();
        back.wire = Wire::ActiveJob;
        let body: Value = serde_json::from_slice(&back.to_body()).unwrap();
        assert_eq!(body["continuation"], continuation);
        assert_eq!(body["resumptions"], 3);
        // A job that never ran as a continuation has neither key, as Rails writes it.
        let plain = decode(
            r#"{"job_class":"X","job_id":"0b6c7c6e-7a43-4f3e-9d59-2f9a4e7d1c11","arguments":[],"continuation":{}}"#,
            &[],
        )
        .expect("a job");
        assert_eq!((plain.checkpoint.as_ref(), plain.resumptions), (None, 0));
        let mut plain = plain;
        plain.wire = Wire::ActiveJob;
        let body: Value = serde_json::from_slice(&plain.to_body()).unwrap();
        assert!(body.get("continuation").is_none() && body.get("resumptions").is_none());
    }

    #[test]
    fn metadata_travels_under_a_key_of_its_own_and_comes_back() {
        let env = decode(
            r#"{"job_class":"X","job_id":"0b6c7c6e-7a43-4f3e-9d59-2f9a4e7d1c11","arguments":[],
                "pubsub_jobs_metadata":{"tenant":"acme","traceparent":"00-abc-def-01","bad":7}}"#,
            &[],
        )
        .expect("a job");
        // Strings only: a value of another kind is left out rather than refusing the job.
        assert_eq!(
            env.metadata
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
            [("tenant", "acme"), ("traceparent", "00-abc-def-01")]
        );
        let mut back = env.clone();
        back.wire = Wire::ActiveJob;
        let body: Value = serde_json::from_slice(&back.to_body()).unwrap();
        assert_eq!(
            body[METADATA_KEY],
            serde_json::json!({"tenant": "acme", "traceparent": "00-abc-def-01"})
        );
        // Without metadata, Rails' payload has no such key.
        back.metadata.clear();
        let body: Value = serde_json::from_slice(&back.to_body()).unwrap();
        assert!(body.get(METADATA_KEY).is_none());
    }

    #[test]
    fn a_global_id_or_an_unknown_serializer_is_refused_by_name() {
        let err = decode(
            r#"{"job_class":"X","job_id":"0b6c7c6e-7a43-4f3e-9d59-2f9a4e7d1c11","arguments":[{"user":{"_aj_globalid":"gid://app/User/1"}}]}"#,
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("arguments[0].user")
                && err.contains("GlobalID")
                && err.contains("gid://app/User/1"),
            "{err}"
        );
        let err = decode(
            r#"{"job_class":"X","job_id":"0b6c7c6e-7a43-4f3e-9d59-2f9a4e7d1c11","arguments":[1,{"_aj_serialized":"MoneySerializer","value":"1"}]}"#,
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("arguments[1]") && err.contains("MoneySerializer"),
            "{err}"
        );
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    struct SendInvoice {
        invoice_id: u64,
        currency: String,
    }
    static SEEN: std::sync::Mutex<Vec<(u64, String, u32)>> = std::sync::Mutex::new(Vec::new());
    impl crate::Job for SendInvoice {
        const NAME: &'static str = "Billing::SendInvoiceJob";
        async fn perform(&self, ctx: &crate::JobContext) -> Result<(), crate::JobError> {
            SEEN.lock()
                .unwrap()
                .push((self.invoice_id, self.currency.clone(), ctx.attempt));
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_worker_runs_a_rails_enqueued_job_by_its_ruby_class_name() {
        use crate::broker::{Broker, OutboundMessage};
        let (client, broker) = crate::testing::memory_client();
        client.ensure_queue("billing").await.unwrap();
        let body = r#"{"job_class":"Billing::SendInvoiceJob","job_id":"5a0e3f5e-8d0c-4c53-9e0a-6f1b8f0b7a01","queue_name":"billing",
            "arguments":[{"invoice_id":42,"currency":{"_aj_serialized":"ActiveJob::Serializers::SymbolSerializer","value":"eur"},
            "_aj_symbol_keys":["invoice_id","currency"]}],"executions":1,"exception_executions":{},"enqueued_at":"2026-11-22T21:50:12Z"}"#;
        broker
            .publish(
                "billing",
                &[OutboundMessage {
                    data: body.as_bytes().to_vec(),
                    attributes: Default::default(),
                }],
            )
            .await
            .unwrap();
        let registry = crate::Registry::new().register::<SendInvoice>();
        let stop = tokio_util::sync::CancellationToken::new();
        let mut config = crate::WorkerConfig::new("billing");
        config.ack_deadline = std::time::Duration::from_secs(10);
        let worker = tokio::spawn(
            crate::Worker::new(client.clone(), config)
                .with_registry(registry)
                .run(stop.clone()),
        );
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while broker.outstanding("billing") > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        stop.cancel();
        let summary = worker.await.unwrap().unwrap();
        assert_eq!(summary.succeeded, 1);
        // Rails had run it once: this is the second execution.
        assert_eq!(*SEEN.lock().unwrap(), vec![(42, "eur".to_string(), 2)]);
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    struct ToRails {
        invoice_id: u64,
    }
    impl crate::Job for ToRails {
        const NAME: &'static str = "ToRails";
        const WIRE: Wire = Wire::ActiveJob;
        async fn perform(&self, _: &crate::JobContext) -> Result<(), crate::JobError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn the_activejob_wire_waits_in_the_queue_with_a_timestamp_and_reads_back() {
        let (client, broker) = crate::testing::memory_client();
        let before = Utc::now();
        let id = crate::Job::set(&ToRails { invoice_id: 9 })
            .wait(std::time::Duration::from_secs(60))
            .perform_later(&client)
            .await
            .unwrap();
        assert!(crate::testing::scheduled_jobs(&client, "default").is_empty());
        let pending = broker.pending("default");
        assert_eq!(pending.len(), 1, "in the queue itself, as the adapters do");
        let (body, attrs) = &pending[0];
        let ts: f64 = attrs[ATTR_TIMESTAMP].parse().unwrap();
        let wait = ts - before.timestamp_millis() as f64 / 1000.0;
        assert!((59.0..=61.0).contains(&wait), "timestamp {wait} s ahead");
        let raw: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(
            raw["arguments"],
            serde_json::json!([{"invoice_id": 9, "_aj_ruby2_keywords": ["invoice_id"]}])
        );
        assert!(raw.get("format_version").is_none());
        // A Rust worker reads it back too.
        let env = Envelope::decode(body, attrs).unwrap();
        assert_eq!(env.job_id, id);
        assert_eq!(env.arguments, serde_json::json!({"invoice_id": 9}));
        assert_eq!(
            env.scheduled_at.map(|t| t.timestamp()),
            Some(ts.floor() as i64)
        );
    }

    #[test]
    fn a_body_that_is_neither_format_is_still_broken() {
        let err = decode(r#"{"job_class":"X"}"#, &[]).unwrap_err().to_string();
        assert!(err.contains("format_version"), "{err}");
    }
}
