//! What an enqueue writes: the new job, its outbox message, its dedup key.

use super::*;

/// A job about to be published.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// The job id.
    pub id: Uuid,
    /// The class name.
    pub job_class: String,
    /// The queue.
    pub queue: String,
    /// The arguments.
    pub arguments: serde_json::Value,
    /// What middleware attached ([`Envelope::metadata`](crate::envelope::Envelope::metadata)).
    pub metadata: crate::envelope::Metadata,
    /// When it was enqueued.
    pub enqueued_at: DateTime<Utc>,
    /// When it is due, if later.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// At most one job per key within the window.
    pub dedup: Option<Dedup>,
    /// The message to publish. With one, the job is written to the outbox, unpublished, until
    /// [`OutboxStore::mark_published`]; without, it is recorded as published.
    pub message: Option<OutboxMessage>,
}

/// A message waiting in the outbox: what to publish, where.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxMessage {
    /// The topic (prefix included).
    pub topic: String,
    /// The body (UTF-8 JSON).
    pub data: Vec<u8>,
    /// The attributes.
    pub attributes: std::collections::HashMap<String, String>,
}

/// A job left unpublished, claimed by a relay ([`OutboxStore::claim_unpublished`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Unpublished {
    /// The job id.
    pub id: Uuid,
    /// What to publish.
    pub message: OutboxMessage,
}

/// How the outbox stands.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OutboxStatus {
    /// Jobs recorded but not published yet.
    pub unpublished: u64,
    /// When the oldest of them was enqueued.
    pub oldest: Option<DateTime<Utc>>,
}

/// A dedup key and how long it holds.
#[derive(Clone, Debug)]
pub struct Dedup {
    /// The key.
    pub key: String,
    /// How long a second submit with the key returns the first job.
    pub window: Duration,
}

/// The default dedup window: 5 minutes.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(300);

impl Dedup {
    /// The dedup key of a job unique by its arguments within `window`: at most one job of
    /// `job_class` on `queue` whose arguments are equal (all of them, or only the top-level
    /// `fields` named) holds it, whatever the order of their keys. The key is
    /// `unique:` and a SHA-256 of the class, the queue, the fields and the arguments' canonical
    /// JSON (object keys sorted). A named field the arguments lack is an error naming it.
    pub fn by_arguments(
        job_class: &str,
        queue: &str,
        arguments: &serde_json::Value,
        fields: Option<&[String]>,
        window: Duration,
    ) -> crate::Result<Self> {
        use sha2::Digest;
        let mut text = String::new();
        match fields {
            None => canonical(arguments, &mut text),
            Some(fields) => {
                let mut fields = fields.to_vec();
                fields.sort_unstable();
                fields.dedup();
                text.push('{');
                for (i, f) in fields.iter().enumerate() {
                    let value = arguments.get(f.as_str()).ok_or_else(|| {
                        crate::Error::Config(format!(
                            "job class {job_class}: unique by argument {f:?}, which its arguments lack"
                        ))
                    })?;
                    if i > 0 {
                        text.push(',');
                    }
                    canonical(&serde_json::Value::String(f.clone()), &mut text);
                    text.push(':');
                    canonical(value, &mut text);
                }
                text.push('}');
            }
        }
        let mut hash = sha2::Sha256::new();
        for part in [job_class, queue] {
            hash.update(part.len().to_le_bytes());
            hash.update(part.as_bytes());
        }
        hash.update([u8::from(fields.is_some())]);
        hash.update(text.as_bytes());
        let digest = hash.finalize();
        let mut key = String::with_capacity(7 + 64);
        key.push_str("unique:");
        for b in digest {
            key.push_str(&format!("{b:02x}"));
        }
        Ok(Self { key, window })
    }
}

/// `v` as JSON with every object's keys sorted (whatever order the map keeps them in).
fn canonical(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&map[k], out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod unique_tests {
    use super::*;
    use serde_json::json;

    fn key(args: serde_json::Value, fields: Option<&[&str]>) -> String {
        let fields: Option<Vec<String>> = fields.map(|f| f.iter().map(|s| s.to_string()).collect());
        Dedup::by_arguments(
            "Sync",
            "default",
            &args,
            fields.as_deref(),
            DEFAULT_DEDUP_WINDOW,
        )
        .expect("a key")
        .key
    }

    #[test]
    fn equal_arguments_in_any_order_share_a_key_and_others_do_not() {
        let a = key(
            json!({"object_id": 1, "opts": {"x": 1, "y": [1, {"b": 2, "a": 1}]}}),
            None,
        );
        let b = key(
            json!({"opts": {"y": [1, {"a": 1, "b": 2}], "x": 1}, "object_id": 1}),
            None,
        );
        assert_eq!(a, b);
        assert!(a.starts_with("unique:") && a.len() == 7 + 64);
        assert_ne!(
            a,
            key(
                json!({"object_id": 2, "opts": {"x": 1, "y": [1, {"b": 2, "a": 1}]}}),
                None
            )
        );
        // Arrays keep their order.
        assert_ne!(
            key(json!({"l": [1, 2]}), None),
            key(json!({"l": [2, 1]}), None)
        );
        // The class and the queue are part of it.
        let other_queue =
            Dedup::by_arguments("Sync", "low", &json!({"l": 1}), None, DEFAULT_DEDUP_WINDOW)
                .unwrap();
        assert_ne!(other_queue.key, key(json!({"l": 1}), None));
    }

    #[test]
    fn unique_by_some_fields_ignores_the_rest_and_names_a_missing_one() {
        let f: &[&str] = &["object_id"];
        assert_eq!(
            key(json!({"object_id": 7, "attempt_note": "a"}), Some(f)),
            key(json!({"attempt_note": "b", "object_id": 7}), Some(f))
        );
        assert_ne!(
            key(json!({"object_id": 7}), Some(f)),
            key(json!({"object_id": 8}), Some(f))
        );
        // By all arguments is not by a field, even when the field is all there is.
        assert_ne!(
            key(json!({"object_id": 7}), Some(f)),
            key(json!({"object_id": 7}), None)
        );
        let err = Dedup::by_arguments(
            "Sync",
            "default",
            &json!({"id": 7}),
            Some(&["object_id".to_string()]),
            DEFAULT_DEDUP_WINDOW,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("\"object_id\"") && err.to_string().contains("Sync"),
            "{err}"
        );
    }
}

/// What [`OutboxStore::submit`] did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Submitted {
    /// A new job was recorded: publish it.
    Created(Box<JobRecord>),
    /// The dedup key is taken within its window: this is the job that holds it.
    Existing(Box<JobRecord>),
}
