//! The wire format: what travels in a Pub/Sub message between `perform_later` and the worker.
//!
//! The body is JSON with ActiveJob's keys; a few small attributes let tools route a message
//! without parsing it. A worker refuses (sends to the morgue) a format version newer than its own.
//!
//! ```json
//! {"format_version":1,"job_class":"MockJob","job_id":"6f1c...","queue_name":"default",
//!  "arguments":{"sleep_duration":0.5,"raise_error":false},"executions":0,
//!  "exception_executions":{},"enqueued_at":"2026-11-22T06:00:00Z"}
//! ```

mod activejob;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// String pairs a job carries besides its arguments: see [`Envelope::metadata`].
pub type Metadata = BTreeMap<String, String>;

/// The format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// Attribute: the job's class name.
pub const ATTR_JOB_CLASS: &str = "job_class";
/// Attribute: the job id.
pub const ATTR_JOB_ID: &str = "job_id";
/// Attribute: when the job is due, in epoch milliseconds (absent when due at once).
pub const ATTR_SCHEDULED_AT: &str = "scheduled_at";
/// Attribute: the envelope's format version.
pub const ATTR_FORMAT_VERSION: &str = "format_version";

/// A job on the wire.
///
/// `A` is the form its arguments are held in: a JSON value ([`Envelope`], what enqueuing
/// builds and what [`Envelope::decode`] returns), or the JSON text as it came
/// ([`ReceivedEnvelope`], what a worker decodes a job from without building a value first).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Envelope<A = serde_json::Value> {
    /// The wire format version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// The registered class name.
    pub job_class: String,
    /// Stable across retries.
    pub job_id: Uuid,
    /// The queue the job is meant for.
    pub queue_name: String,
    /// The job struct, serialized.
    pub arguments: A,
    /// How many times the job has run already (0 on first enqueue).
    pub executions: u32,
    /// Failures counted per retry rule.
    #[serde(default)]
    pub exception_executions: BTreeMap<String, u32>,
    /// When the job was first enqueued.
    #[serde(serialize_with = "rfc3339", deserialize_with = "from_rfc3339")]
    pub enqueued_at: DateTime<Utc>,
    /// When the job is due; `None` means at once.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "rfc3339_opt",
        deserialize_with = "from_rfc3339_opt"
    )]
    pub scheduled_at: Option<DateTime<Utc>>,
    /// The error of the previous execution, on a retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// What the previous execution saved with `JobContext::save_checkpoint`, for its retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<serde_json::Value>,
    /// Bumped each time an operator retries the job from the morgue, so that a job store that
    /// shows the job finished still lets the new run through (and skips duplicates of old ones).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u32,
    /// How many times this execution was interrupted and resumed without counting one
    /// ([`JobError::interrupted`](crate::JobError::interrupted); Rails 8.1's `resumptions`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resumptions: u32,
    /// What [`Middleware`](crate::Middleware) attached on enqueue (a tenant, a request id, W3C
    /// trace context): it travels with the job through retries, the store, the outbox and the
    /// morgue, and the job reads it with [`JobContext::metadata`](crate::JobContext::metadata).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: Metadata,
    /// The format this envelope is published in ([`Job::WIRE`](crate::Job::WIRE)); not on the wire.
    #[serde(skip)]
    pub wire: Wire,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn rfc3339<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    Rfc3339(*t).serialize(s)
}

fn rfc3339_opt<S: serde::Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    t.map(Rfc3339).serialize(s)
}

fn from_rfc3339<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    d.deserialize_str(TimeVisitor)
}

fn from_rfc3339_opt<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    d.deserialize_option(OptionalTime)
}

/// Reads a time as chrono's `DateTime<Utc>` does (any RFC 3339 offset), the shape we write
/// (`Z`, 0 to 9 fractional digits) in one pass: chrono's general parser was a tenth of the
/// decode of an envelope.
struct TimeVisitor;

impl serde::de::Visitor<'_> for TimeVisitor {
    type Value = DateTime<Utc>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an RFC 3339 date and time")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if let Some(t) = parse_utc(v.as_bytes()) {
            return Ok(t);
        }
        v.parse::<DateTime<chrono::FixedOffset>>()
            .map(|t| t.with_timezone(&Utc))
            .map_err(E::custom)
    }
}

struct OptionalTime;

impl<'de> serde::de::Visitor<'de> for OptionalTime {
    type Value = Option<DateTime<Utc>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an RFC 3339 date and time, or null")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        from_rfc3339(d).map(Some)
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`, or `None` for anything else (chrono then decides).
fn parse_utc(b: &[u8]) -> Option<DateTime<Utc>> {
    let num = |at: usize, digits: usize| -> Option<u32> {
        let mut v = 0u32;
        for &c in b.get(at..at + digits)? {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(c - b'0');
        }
        Some(v)
    };
    if b.len() < 20 || SEPARATORS.iter().any(|&(at, c)| b[at] != c) || b[b.len() - 1] != b'Z' {
        return None;
    }
    let nanos = match b.len() {
        20 => 0,
        22..=30 if b[19] == b'.' => {
            let digits = b.len() - 21;
            num(20, digits)? * 10u32.pow(9 - digits as u32)
        }
        _ => return None,
    };
    let date = chrono::NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 2)?, num(8, 2)?)?;
    let (h, m, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if sec > 59 {
        return None;
    }
    Some(date.and_hms_nano_opt(h, m, sec, nanos)?.and_utc())
}

/// [`FORMAT_VERSION`] as text (the `format_version` attribute).
const FORMAT_VERSION_TEXT: &str = "1";

/// A time serialized as chrono serializes a `DateTime<Utc>` (RFC 3339, `Z`, the fraction in 0,
/// 3, 6 or 9 digits: `SecondsFormat::AutoSi`), written in one pass: chrono's own goes through
/// `Display` a character at a time, a fifth of the cost of a job's body.
struct Rfc3339(DateTime<Utc>);

/// Where `YYYY-MM-DDTHH:MM:SS` has its punctuation (written by [`Rfc3339`], checked by
/// [`parse_utc`]).
const SEPARATORS: [(usize, u8); 5] = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];

impl Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use chrono::{Datelike, Timelike};
        let t = self.0;
        let nanos = t.nanosecond();
        let year = t.year();
        if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
            // Years chrono writes with a sign, and leap seconds: chrono's own way.
            return self.0.serialize(serializer);
        }
        let mut buf = [0u8; 30];
        let mut put = |at: usize, value: u32, digits: usize| {
            let mut v = value;
            for i in (0..digits).rev() {
                buf[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, year as u32, 4);
        put(5, t.month(), 2);
        put(8, t.day(), 2);
        put(11, t.hour(), 2);
        put(14, t.minute(), 2);
        put(17, t.second(), 2);
        let (fraction, digits) = if nanos == 0 {
            (0, 0)
        } else if nanos.is_multiple_of(1_000_000) {
            (nanos / 1_000_000, 3)
        } else if nanos.is_multiple_of(1_000) {
            (nanos / 1_000, 6)
        } else {
            (nanos, 9)
        };
        if digits > 0 {
            put(20, fraction, digits);
            buf[19] = b'.';
        }
        for (at, c) in SEPARATORS {
            buf[at] = c;
        }
        let end = if digits > 0 { 20 + digits } else { 19 };
        buf[end] = b'Z';
        // Digits and ASCII punctuation only.
        let text = std::str::from_utf8(&buf[..=end]).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(text)
    }
}

/// The format a job type is published in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Wire {
    /// pubsub-jobs' own envelope (ActiveJob's keys plus `format_version`), delays through the
    /// queue's `.scheduled` topic. The default.
    #[default]
    PubsubJobs,
    /// Rails' ActiveJob serialization, as the Pub/Sub ActiveJob adapters publish it: a Rails
    /// worker runs it with `ActiveJob::Base.execute(JSON.parse(data))`. A delayed job goes to the
    /// queue's topic with the adapter's `timestamp` attribute (epoch seconds). The codec is
    /// `src/envelope/activejob.rs`; the guide's "Running Rails jobs in Rust" says what maps.
    ActiveJob,
}

/// The key under which failures that no rule matches are counted in `exception_executions`.
pub(crate) const DEFAULT_RULE_KEY: &str = "default";

/// When a job delayed by `wait` from now is due: the one conversion of a wait into a
/// `scheduled_at` (the client's `set().wait()`, the CLI's `--wait`, the API's `wait_seconds`, a
/// retry's wait). A
/// wait too long for a date saturates; publishing refuses anything beyond Pub/Sub's retention.
pub fn due_after(wait: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(wait)
        .ok()
        .and_then(|w| Utc::now().checked_add_signed(w))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Why a message is not a job this worker can run.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The body is not JSON, or not a JSON object.
    #[error("broken envelope: {0}")]
    Broken(String),
    /// Written by a newer version of pubsub-jobs.
    #[error("format version {found} is newer than this worker supports ({supported})")]
    NewerFormat {
        /// The version in the message.
        found: u64,
        /// This build's version.
        supported: u32,
    },
    /// The attributes say one thing and the body another.
    #[error("attribute {attribute} is {attribute_value:?} but the body says {body_value:?}")]
    AttributeMismatch {
        /// The attribute's name.
        attribute: &'static str,
        /// Its value.
        attribute_value: String,
        /// The body's value.
        body_value: String,
    },
}

impl Envelope {
    /// A fresh envelope for a first execution. Its job id is a UUIDv7: ids of jobs enqueued
    /// close together sort together, so the store's indexes on them grow at one end instead of
    /// touching a random page per job (a third of the store's write time on SQLite).
    pub fn new(job_class: &str, queue: &str, arguments: serde_json::Value) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            job_class: job_class.to_string(),
            job_id: Uuid::now_v7(),
            queue_name: queue.to_string(),
            arguments,
            executions: 0,
            exception_executions: BTreeMap::new(),
            enqueued_at: Utc::now(),
            scheduled_at: None,
            last_error: None,
            checkpoint: None,
            generation: 0,
            resumptions: 0,
            metadata: Metadata::new(),
            wire: Wire::PubsubJobs,
        }
    }

    /// The JSON body, in the envelope's [`Wire`] format.
    pub fn to_body(&self) -> Vec<u8> {
        if self.wire == Wire::ActiveJob {
            return activejob::to_body(self);
        }
        // Serializing a struct of plain fields and a serde_json::Value cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The JSON body with `arguments` in place of `self.arguments`, in one pass (the same bytes
    /// as [`Envelope::to_body`] of an envelope holding `arguments` as a JSON value).
    pub fn body_with<A: Serialize + ?Sized>(&self, arguments: &A) -> serde_json::Result<Vec<u8>> {
        #[derive(Serialize)]
        struct Body<'a, A: Serialize + ?Sized> {
            format_version: u32,
            job_class: &'a str,
            job_id: Uuid,
            queue_name: &'a str,
            arguments: &'a A,
            executions: u32,
            exception_executions: &'a BTreeMap<String, u32>,
            enqueued_at: Rfc3339,
            #[serde(skip_serializing_if = "Option::is_none")]
            scheduled_at: Option<Rfc3339>,
            #[serde(skip_serializing_if = "Option::is_none")]
            last_error: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            checkpoint: Option<&'a serde_json::Value>,
            #[serde(skip_serializing_if = "is_zero")]
            generation: u32,
            #[serde(skip_serializing_if = "is_zero")]
            resumptions: u32,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            metadata: &'a Metadata,
        }
        // Most bodies fit; a larger one grows once.
        let mut body = Vec::with_capacity(384);
        serde_json::to_writer(
            &mut body,
            &Body {
                format_version: self.format_version,
                job_class: &self.job_class,
                job_id: self.job_id,
                queue_name: &self.queue_name,
                arguments,
                executions: self.executions,
                exception_executions: &self.exception_executions,
                enqueued_at: Rfc3339(self.enqueued_at),
                scheduled_at: self.scheduled_at.map(Rfc3339),
                last_error: self.last_error.as_deref(),
                checkpoint: self.checkpoint.as_ref(),
                generation: self.generation,
                resumptions: self.resumptions,
                metadata: &self.metadata,
            },
        )?;
        Ok(body)
    }

    /// Parses a message body and checks it against its attributes.
    pub fn decode(body: &[u8], attributes: &HashMap<String, String>) -> Result<Self, DecodeError> {
        if body.is_empty() {
            return Err(DecodeError::Broken("empty body".into()));
        }
        // The common case in one pass: a well-formed envelope of ours. Anything else (ActiveJob,
        // or a body with something wrong) takes the path below, which names what is wrong.
        if let Ok(env) = serde_json::from_slice::<Envelope>(body) {
            return checked(env, attributes);
        }
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| DecodeError::Broken(format!("body is not JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| DecodeError::Broken("body is not a JSON object".into()))?;
        match obj.get("format_version").map(|v| v.as_u64()) {
            Some(Some(v)) if v > u64::from(FORMAT_VERSION) => {
                return Err(DecodeError::NewerFormat {
                    found: v,
                    supported: FORMAT_VERSION,
                })
            }
            Some(Some(_)) => {}
            Some(None) => return Err(DecodeError::Broken("format_version is not a number".into())),
            None if activejob::looks_like_activejob(obj) => {
                return activejob::to_envelope(obj, attributes)
            }
            None => return Err(DecodeError::Broken("missing field `format_version`".into())),
        }
        let env: Envelope = serde_path_to_error::deserialize(value)
            .map_err(|e| DecodeError::Broken(format!("{}: {}", e.path(), e.inner())))?;
        check_attributes(env, attributes)
    }
}

/// An envelope as a worker receives it: its arguments are the JSON text of the body (copied out
/// once), which the job is decoded from directly. A JSON value of them is built only where one
/// is needed: a job store's record of the start, and a retry.
pub type ReceivedEnvelope = Envelope<Box<serde_json::value::RawValue>>;

impl ReceivedEnvelope {
    /// Parses a message body as [`Envelope::decode`] does (the same checks, the same errors),
    /// leaving the arguments as JSON text.
    pub fn decode_received(
        body: &[u8],
        attributes: &HashMap<String, String>,
    ) -> Result<Self, DecodeError> {
        if let Ok(env) = serde_json::from_slice::<ReceivedEnvelope>(body) {
            return checked(env, attributes);
        }
        // Anything else (ActiveJob, or a body with something wrong) the one way, which names
        // what is wrong.
        Envelope::decode(body, attributes)?.map_arguments(|value| {
            serde_json::value::to_raw_value(&value)
                .map_err(|e| DecodeError::Broken(format!("arguments: {e}")))
        })
    }

    /// The arguments as a JSON value. JSON text that is no value (a number out of range, nesting
    /// deeper than serde_json reads) is named in the error.
    pub fn arguments_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(self.arguments.get())
    }

    /// The envelope with its arguments as a JSON value (see [`Self::arguments_value`]); when
    /// they cannot be one, the error, and this envelope back (for the morgue).
    pub fn into_parsed(self) -> Result<Envelope, Box<(Self, serde_json::Error)>> {
        match self.arguments_value() {
            Ok(arguments) => {
                let Ok(env) = self.map_arguments(|_| Ok::<_, std::convert::Infallible>(arguments));
                Ok(env)
            }
            Err(e) => Err(Box::new((self, e))),
        }
    }
}

impl<A> Envelope<A> {
    /// The 1-based number of the execution about to run (saturating: the count comes from the
    /// wire, and `u32::MAX` executions stays `u32::MAX`).
    pub fn attempt(&self) -> u32 {
        self.executions.saturating_add(1)
    }

    /// The routing attributes (for the ActiveJob wire, only the adapter's `timestamp`).
    pub fn attributes(&self) -> HashMap<String, String> {
        if self.wire == Wire::ActiveJob {
            return activejob::attributes(self);
        }
        let mut a = HashMap::with_capacity(4);
        a.insert(ATTR_JOB_CLASS.to_string(), self.job_class.clone());
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        a.insert(
            ATTR_JOB_ID.to_string(),
            self.job_id.hyphenated().encode_lower(&mut id).to_string(),
        );
        let version = if self.format_version == FORMAT_VERSION {
            FORMAT_VERSION_TEXT.to_string()
        } else {
            self.format_version.to_string()
        };
        a.insert(ATTR_FORMAT_VERSION.to_string(), version);
        if let Some(at) = self.scheduled_at {
            a.insert(
                ATTR_SCHEDULED_AT.to_string(),
                at.timestamp_millis().to_string(),
            );
        }
        a
    }

    /// The same envelope with its arguments in another form.
    pub fn map_arguments<B, E>(self, f: impl FnOnce(A) -> Result<B, E>) -> Result<Envelope<B>, E> {
        let Envelope {
            format_version,
            job_class,
            job_id,
            queue_name,
            arguments,
            executions,
            exception_executions,
            enqueued_at,
            scheduled_at,
            last_error,
            checkpoint,
            generation,
            resumptions,
            metadata,
            wire,
        } = self;
        Ok(Envelope {
            format_version,
            job_class,
            job_id,
            queue_name,
            arguments: f(arguments)?,
            executions,
            exception_executions,
            enqueued_at,
            scheduled_at,
            last_error,
            checkpoint,
            generation,
            resumptions,
            metadata,
            wire,
        })
    }
}

/// A decoded envelope of ours, checked: a format this build reads, and attributes that agree.
fn checked<A>(
    env: Envelope<A>,
    attributes: &HashMap<String, String>,
) -> Result<Envelope<A>, DecodeError> {
    if env.format_version > FORMAT_VERSION {
        return Err(DecodeError::NewerFormat {
            found: env.format_version.into(),
            supported: FORMAT_VERSION,
        });
    }
    check_attributes(env, attributes)
}

/// Checks a decoded envelope against the message's routing attributes.
fn check_attributes<A>(
    env: Envelope<A>,
    attributes: &HashMap<String, String>,
) -> Result<Envelope<A>, DecodeError> {
    if let Some(class) = attributes.get(ATTR_JOB_CLASS) {
        if *class != env.job_class {
            return Err(DecodeError::AttributeMismatch {
                attribute: ATTR_JOB_CLASS,
                attribute_value: class.clone(),
                body_value: env.job_class,
            });
        }
    }
    if let Some(id) = attributes.get(ATTR_JOB_ID) {
        let mut buf = Uuid::encode_buffer();
        if id.as_str() != env.job_id.hyphenated().encode_lower(&mut buf) {
            return Err(DecodeError::AttributeMismatch {
                attribute: ATTR_JOB_ID,
                attribute_value: id.clone(),
                body_value: env.job_id.to_string(),
            });
        }
    }
    Ok(env)
}

/// Reads the `scheduled_at` attribute (epoch ms), if present and valid.
pub fn scheduled_at_attribute(attributes: &HashMap<String, String>) -> Option<DateTime<Utc>> {
    let ms: i64 = attributes.get(ATTR_SCHEDULED_AT)?.parse().ok()?;
    Utc.timestamp_millis_opt(ms).single()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_serialize_as_chrono_serializes_them() {
        let base = Utc.with_ymd_and_hms(2026, 12, 4, 23, 5, 9).unwrap();
        let mut times = vec![base, Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap()];
        for nanos in [
            0,
            1,
            7,
            1_000,
            120_000,
            999_999,
            1_000_000,
            5_000_000,
            123_456_789,
            999_999_999,
        ] {
            times.push(base + chrono::Duration::nanoseconds(nanos));
        }
        for i in 0..1000 {
            times.push(Utc::now() + chrono::Duration::nanoseconds(i * 7_919_123));
        }
        for t in times {
            assert_eq!(
                serde_json::to_string(&Rfc3339(t)).unwrap(),
                serde_json::to_string(&t).unwrap(),
                "{t:?}"
            );
        }
        // The same times as chrono's own reading, and the same refusals.
        for text in [
            "2026-12-04T23:05:09Z",
            "2026-12-04T23:05:09.5Z",
            "2026-12-04T23:05:09.123456789Z",
            "2026-12-04T23:05:09.1234567890Z",
            "2026-12-04T23:05:09+01:00",
            "2026-12-04T23:05:09.25-05:30",
            "2026-02-28T00:00:00.000Z",
            "2024-02-29T12:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-12-04T24:00:00Z",
            "2026-12-04T23:05:60Z",
            "2026-12-04T23:05:09.Z",
            "2026-12-04 23:05:09",
            "x026-12-04T23:05:09Z",
        ] {
            let json = format!("{text:?}");
            let theirs = serde_json::from_str::<DateTime<Utc>>(&json).ok();
            let ours = from_rfc3339(&mut serde_json::Deserializer::from_str(&json)).ok();
            assert_eq!(ours, theirs, "{text}");
        }
        assert!(parse_utc(b"2026-12-04T23:05:09.123Z").is_some());
        let mut env = Envelope::new("J", "q", serde_json::json!({"a": [1, "b"]}));
        env.scheduled_at = Some(base + chrono::Duration::milliseconds(1500));
        let back: Envelope = serde_json::from_slice(&env.to_body()).unwrap();
        assert_eq!(back.enqueued_at, env.enqueued_at);
        assert_eq!(back.scheduled_at, env.scheduled_at);
        let none: Envelope = serde_json::from_str(
            r#"{"format_version":1,"job_class":"J","job_id":"0190c4c5-0000-7000-8000-000000000000","queue_name":"q","arguments":null,"executions":0,"enqueued_at":"2026-12-04T23:05:09Z","scheduled_at":null}"#,
        )
        .unwrap();
        assert_eq!(none.scheduled_at, None);
        let body = env.to_body();
        assert_eq!(env.body_with(&env.arguments).unwrap(), body);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["scheduled_at"], "2026-12-04T23:05:10.500Z");
    }

    #[test]
    fn round_trip_with_attributes() {
        let mut e = Envelope::new("MockJob", "default", serde_json::json!({"a": 1}));
        e.scheduled_at = Some(Utc.timestamp_millis_opt(1_700_000_000_123).unwrap());
        let back = Envelope::decode(&e.to_body(), &e.attributes()).unwrap();
        assert_eq!(back, e);
        assert_eq!(scheduled_at_attribute(&e.attributes()), e.scheduled_at);
    }

    #[test]
    fn body_with_is_to_body_in_one_pass() {
        #[derive(Serialize)]
        struct Job {
            name: String,
            n: u32,
            tags: Vec<&'static str>,
        }
        let job = Job {
            name: "x\"y".into(),
            n: 7,
            tags: vec!["a", "b"],
        };
        let mut e = Envelope::new("J", "q", serde_json::Value::Null);
        e.scheduled_at = Some(Utc.timestamp_millis_opt(1_700_000_000_123).unwrap());
        e.last_error = Some("boom".into());
        e.checkpoint = Some(serde_json::json!({"step": 2}));
        e.exception_executions.insert("rule".into(), 2);
        let direct = e.body_with(&job).unwrap();
        e.arguments = serde_json::to_value(&job).unwrap();
        // The same JSON (a Value orders object keys; the job's own order may differ), and it
        // decodes to the same envelope.
        let parse = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).unwrap();
        assert_eq!(parse(&direct), parse(&e.to_body()));
        assert_eq!(Envelope::decode(&direct, &e.attributes()).unwrap(), e);
        let plain = Envelope::new("J", "q", serde_json::json!({"k": 1}));
        assert_eq!(plain.body_with(&plain.arguments).unwrap(), plain.to_body());
    }

    #[test]
    fn refuses_newer_format_broken_bodies_and_mismatched_attributes() {
        let none = HashMap::new();
        let mut v = serde_json::to_value(Envelope::new("X", "q", serde_json::json!(null))).unwrap();
        v["format_version"] = 99.into();
        let body = serde_json::to_vec(&v).unwrap();
        assert_eq!(
            Envelope::decode(&body, &none),
            Err(DecodeError::NewerFormat {
                found: 99,
                supported: 1
            })
        );
        assert!(matches!(
            Envelope::decode(b"", &none),
            Err(DecodeError::Broken(_))
        ));
        assert!(matches!(
            Envelope::decode(b"\xff\x00", &none),
            Err(DecodeError::Broken(_))
        ));
        assert!(matches!(
            Envelope::decode(b"[1]", &none),
            Err(DecodeError::Broken(_))
        ));
        let err = Envelope::decode(br#"{"format_version":1,"job_class":"X"}"#, &none).unwrap_err();
        assert!(err.to_string().contains("job_id"), "{err}");
        let e = Envelope::new("X", "q", serde_json::json!(null));
        let mut attrs = e.attributes();
        attrs.insert(ATTR_JOB_CLASS.into(), "Y".into());
        assert!(matches!(
            Envelope::decode(&e.to_body(), &attrs),
            Err(DecodeError::AttributeMismatch {
                attribute: ATTR_JOB_CLASS,
                ..
            })
        ));
    }

    #[test]
    fn received_envelopes_decode_as_envelopes_do_with_the_arguments_as_sent() {
        let none = HashMap::new();
        let mut retry = Envelope::new(
            "X",
            "q",
            serde_json::json!({"n": [1, 2.5, "é\"\n"], "m": null}),
        );
        retry.executions = 2;
        retry.scheduled_at = Some(Utc::now());
        retry.last_error = Some("E: boom".into());
        retry.checkpoint = Some(serde_json::json!({"page": 3}));
        let mut newer =
            serde_json::to_value(Envelope::new("X", "q", serde_json::json!(1))).unwrap();
        newer["format_version"] = 99.into();
        let activejob = br#"{"job_class":"Billing::SendInvoiceJob","job_id":"e7ce1f84-41de-4653-aaa2-b92d76f975ce","queue_name":"default","arguments":[42],"executions":0,"enqueued_at":"2026-11-22T06:00:00Z"}"#;
        let bodies: Vec<(Vec<u8>, HashMap<String, String>)> = vec![
            (retry.to_body(), retry.attributes()),
            (
                Envelope::new("X", "q", serde_json::json!(null)).to_body(),
                none.clone(),
            ),
            (activejob.to_vec(), none.clone()),
            (serde_json::to_vec(&newer).unwrap(), none.clone()),
            (b"".to_vec(), none.clone()),
            (b"[1]".to_vec(), none.clone()),
            (
                br#"{"format_version":1,"job_class":"X"}"#.to_vec(),
                none.clone(),
            ),
            (
                retry.to_body(),
                HashMap::from([(ATTR_JOB_CLASS.to_string(), "Y".to_string())]),
            ),
        ];
        for (body, attrs) in &bodies {
            let received = ReceivedEnvelope::decode_received(body, attrs);
            let text = String::from_utf8_lossy(body);
            if let Ok(r) = &received {
                if r.wire == Wire::PubsubJobs {
                    assert!(
                        text.contains(r.arguments.get()),
                        "the arguments as sent: {text}"
                    );
                }
            }
            assert_eq!(
                received.map(|r| r.into_parsed().unwrap()),
                Envelope::decode(body, attrs),
                "{text}"
            );
        }
        // JSON text no value holds: decoded (a job may ignore the field), and named when a value
        // of it is asked for.
        let body = br#"{"format_version":1,"job_class":"X","job_id":"0190c4c5-0000-7000-8000-000000000000","queue_name":"q","arguments":{"x":1e400},"executions":0,"enqueued_at":"2026-12-04T23:05:09Z"}"#;
        let r = ReceivedEnvelope::decode_received(body, &none).unwrap();
        assert_eq!(r.arguments.get(), r#"{"x":1e400}"#);
        let err = r.arguments_value().unwrap_err().to_string();
        assert!(err.contains("out of range"), "{err}");
    }
}
