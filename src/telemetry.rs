//! OpenTelemetry across the queue (feature `opentelemetry`): one trace from the request that
//! enqueues a job to the job's run, in Rust and in every language Google's Pub/Sub clients
//! speak.
//!
//! Turn it on with [`Client::with_opentelemetry`](crate::Client::with_opentelemetry) (the
//! `worker` binary does when an `OTEL_*` exporter variable is set) and install
//! [`tracing-opentelemetry`](https://docs.rs/tracing-opentelemetry)'s layer in the process's
//! subscriber: the library's spans are `tracing` spans, so a job's own `tracing` spans and
//! events join its trace. Without it nothing here runs: a client not told costs one branch per
//! job.
//!
//! # What travels
//!
//! Each enqueued job gets a `create {queue}` span (kind producer), and its W3C trace context
//! goes into the job's [metadata](crate::envelope::Envelope::metadata) as `traceparent` (and
//! `tracestate`), mirrored into the message attribute `googclient_traceparent`, where Google's
//! client libraries (Python, Go, Java, Node.js with OpenTelemetry on) read and write it. Each
//! publish request gets a `send {queue}` span (kind client): a child of the enqueue when it
//! runs inside one, and a relay's publish of rows left in the outbox a child of the one job it
//! publishes, or a new trace linked to each job's creation when it publishes several.
//!
//! A worker runs each job inside a `process {queue}` span (kind consumer), the job's one
//! `tracing` span, with `messaging.system = gcp_pubsub`, the queue, the Pub/Sub message id and
//! `pubsub_jobs.job.id`, `.class` and `.attempt`:
//! - the **first execution** of a job due at once is a child of its creation (the enqueue's
//!   span, or a Google client's `create` span when another language published it);
//! - a **retry**, a **resumption** and a **delayed** job start a new trace with a link back to
//!   their creation (a retry's creation is a child of the failed execution): a retry hours
//!   later does not stretch one trace over hours, nor inherit a sampling decision taken then.
//!
//! `POST /v1/jobs` continues an incoming `traceparent` header.
//!
//! # Metrics
//!
//! Through the global meter provider (`opentelemetry::global`), named after the messaging
//! conventions: `messaging.process.duration` (seconds, a histogram, with `error.type` on a
//! failure), `messaging.client.consumed.messages` and `messaging.client.sent.messages`, each
//! with `messaging.system`, `messaging.destination.name` and `messaging.operation.name`.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::metrics::{Counter, Histogram};
use opentelemetry::trace::{
    SpanContext, SpanId, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Context, KeyValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::envelope::{Envelope, Metadata};

/// The metadata key (and HTTP header) of a job's W3C trace context.
pub const TRACEPARENT: &str = crate::client::prepare::TRACEPARENT;

/// The metadata key (and HTTP header) of the W3C vendor trace state that goes with it.
pub const TRACESTATE: &str = "tracestate";

/// The message attribute Google's Pub/Sub client libraries carry the W3C trace context in.
pub const GOOGLE_TRACEPARENT: &str = crate::client::prepare::GOOGLE_TRACEPARENT;

/// `messaging.system` for Pub/Sub, after the OpenTelemetry messaging conventions.
const SYSTEM: &str = "gcp_pubsub";

/// The span context a W3C `traceparent` value names (version `00`; a later version is read by
/// its first four fields, as the specification asks), or `None` when it is not one.
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    remote_context(value, None)
}

/// The remote span context of a `traceparent` value and the `tracestate` that goes with it (a
/// malformed state is left out; the parent still holds).
fn remote_context(traceparent: &str, tracestate: Option<&str>) -> Option<SpanContext> {
    let mut parts = traceparent.trim().split('-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let span_id = parts.next()?;
    let flags = parts.next()?;
    let rest = parts.next();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !hex(version, 2) || version == "ff" || (version == "00" && rest.is_some()) {
        return None;
    }
    if !hex(trace_id, 32) || !hex(span_id, 16) || !hex(flags, 2) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace_id).ok()?;
    let span_id = SpanId::from_hex(span_id).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let state = tracestate
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    let cx = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
        true,
        state,
    );
    cx.is_valid().then_some(cx)
}

/// The W3C `traceparent` value of `cx`.
pub fn format_traceparent(cx: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        cx.trace_id(),
        cx.span_id(),
        (cx.trace_flags() & TraceFlags::SAMPLED).to_u8()
    )
}

/// The creation context a job carries: its metadata's `traceparent` (with `tracestate`), else
/// the `googclient_traceparent` attribute of its message (a Google client published it).
pub(crate) fn carried(
    metadata: &Metadata,
    attributes: &HashMap<String, String>,
) -> Option<SpanContext> {
    let state = metadata.get(TRACESTATE).map(String::as_str);
    metadata
        .get(TRACEPARENT)
        .and_then(|v| remote_context(v, state))
        .or_else(|| {
            attributes
                .get(GOOGLE_TRACEPARENT)
                .and_then(|v| remote_context(v, None))
        })
}

/// The span context of `span`, when it is recorded by an OpenTelemetry layer.
fn span_context(span: &tracing::Span) -> Option<SpanContext> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// Writes `cx` into `metadata` as `traceparent` (and `tracestate`, or its absence).
fn inject(metadata: &mut Metadata, cx: &SpanContext) {
    metadata.insert(TRACEPARENT.to_string(), format_traceparent(cx));
    let state = cx.trace_state().header();
    if state.is_empty() {
        metadata.remove(TRACESTATE);
    } else {
        metadata.insert(TRACESTATE.to_string(), state);
    }
}

/// The enqueue of one job: a `create {queue}` span, a child of the current span (or, outside
/// any, of the trace context the job already carries), whose context goes into the job's
/// metadata. Called once per message, where every enqueue is prepared.
pub(crate) fn create<A>(env: &mut Envelope<A>) {
    let span = tracing::info_span!(
        "create",
        otel.name = %format_args!("create {}", env.queue_name),
        otel.kind = "producer",
    );
    let current = span_context(&tracing::Span::current());
    if current.is_none() {
        if let Some(carried) = carried(&env.metadata, &HashMap::new()) {
            let _ = span.set_parent(Context::new().with_remote_span_context(carried));
        }
    }
    messaging_attributes(&span, "create", &env.queue_name);
    job_attributes(
        &span,
        &env.job_id.to_string(),
        &env.job_class,
        env.attempt(),
    );
    if let Some(cx) = span_context(&span) {
        inject(&mut env.metadata, &cx);
    }
}

/// The span of one publish request of `jobs` messages to `queue`, whose creation contexts are
/// `created`: a child of the current span inside an enqueue; else (a relay) a child of the one
/// job's creation, or a new trace linked to each.
pub(crate) fn send(queue: &str, created: &[SpanContext]) -> tracing::Span {
    let span = tracing::info_span!(
        "send",
        otel.name = %format_args!("send {queue}"),
        otel.kind = "client",
    );
    let inside = span_context(&tracing::Span::current()).is_some();
    if !inside {
        let parent = match created {
            [one] => Context::new().with_remote_span_context(one.clone()),
            _ => Context::new(),
        };
        let _ = span.set_parent(parent);
    }
    if inside || created.len() > 1 {
        for cx in created {
            span.add_link(cx.clone());
        }
    }
    messaging_attributes(&span, "send", queue);
    span.set_attribute("messaging.batch.message_count", created.len() as i64);
    span
}

/// The creation contexts of the messages of one publish request, from their attributes.
pub(crate) fn created<'a>(
    attributes: impl Iterator<Item = &'a HashMap<String, String>>,
) -> Vec<SpanContext> {
    attributes
        .filter_map(|a| a.get(GOOGLE_TRACEPARENT).and_then(|v| parse_traceparent(v)))
        .collect()
}

/// The job's one span (the fields of the worker's, plus `otel.name` and `otel.kind`) as the
/// `process {queue}` span of an execution: a child of the job's creation on its first, immediate
/// execution; otherwise the root of a new trace with a link to it. `env` is `None` for a
/// message that is no job (the morgue path fills in the job's fields).
pub(crate) fn process_span<A>(
    queue: &str,
    message_id: &str,
    attributes: &HashMap<String, String>,
    env: Option<&Envelope<A>>,
) -> tracing::Span {
    let span = match env {
        Some(env) => tracing::info_span!(
            "job",
            job_id = %env.job_id,
            job_class = env.job_class.as_str(),
            queue = %queue,
            attempt = env.attempt(),
            otel.name = %format_args!("process {queue}"),
            otel.kind = "consumer",
        ),
        None => tracing::info_span!(
            "job",
            job_id = tracing::field::Empty,
            job_class = tracing::field::Empty,
            queue = %queue,
            attempt = tracing::field::Empty,
            otel.name = %format_args!("process {queue}"),
            otel.kind = "consumer",
        ),
    };
    let carried = env.and_then(|e| carried(&e.metadata, attributes));
    let first_run =
        env.is_some_and(|e| e.attempt() <= 1 && e.resumptions == 0 && e.scheduled_at.is_none());
    let parent = match &carried {
        Some(cx) if first_run => Context::new().with_remote_span_context(cx.clone()),
        // Never the worker's own span: each job is its own trace unless its creation says.
        _ => Context::new(),
    };
    let _ = span.set_parent(parent);
    if let (Some(cx), false) = (carried, first_run) {
        span.add_link(cx);
    }
    messaging_attributes(&span, "process", queue);
    span.set_attribute("messaging.message.id", message_id.to_string());
    if let Some(e) = env {
        job_attributes(&span, &e.job_id.to_string(), &e.job_class, e.attempt());
    }
    span
}

fn messaging_attributes(span: &tracing::Span, operation: &'static str, queue: &str) {
    span.set_attribute("messaging.system", SYSTEM);
    span.set_attribute("messaging.operation.name", operation);
    span.set_attribute("messaging.operation.type", operation);
    span.set_attribute("messaging.destination.name", queue.to_string());
}

fn job_attributes(span: &tracing::Span, id: &str, class: &str, attempt: u32) {
    span.set_attribute("pubsub_jobs.job.id", id.to_string());
    span.set_attribute("pubsub_jobs.job.class", class.to_string());
    span.set_attribute("pubsub_jobs.job.attempt", i64::from(attempt));
}

/// The span context an HTTP request's `traceparent` (and `tracestate`) headers carry, as an
/// OpenTelemetry parent context.
#[cfg(feature = "api")]
pub(crate) fn from_headers(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<Context> {
    let cx = remote_context(traceparent?, tracestate)?;
    Some(Context::new().with_remote_span_context(cx))
}

struct Instruments {
    process_duration: Histogram<f64>,
    consumed: Counter<u64>,
    sent: Counter<u64>,
}

fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let meter = opentelemetry::global::meter("pubsub-jobs");
        Instruments {
            process_duration: meter
                .f64_histogram("messaging.process.duration")
                .with_unit("s")
                .with_description("Duration of processing operation.")
                .build(),
            consumed: meter
                .u64_counter("messaging.client.consumed.messages")
                .with_unit("{message}")
                .with_description("Number of messages that were delivered to the application.")
                .build(),
            sent: meter
                .u64_counter("messaging.client.sent.messages")
                .with_unit("{message}")
                .with_description("Number of messages producer attempted to send to the broker.")
                .build(),
        }
    })
}

fn metric_attributes(operation: &'static str, queue: &str) -> Vec<KeyValue> {
    vec![
        KeyValue::new("messaging.system", SYSTEM),
        KeyValue::new("messaging.operation.name", operation),
        KeyValue::new("messaging.destination.name", queue.to_string()),
    ]
}

/// One message delivered to the worker of `queue`.
pub(crate) fn consumed(queue: &str) {
    instruments()
        .consumed
        .add(1, &metric_attributes("process", queue));
}

/// One execution of a job of `queue` took `elapsed` and failed with `error`, if any: recorded
/// in `messaging.process.duration`, and the failure in the current (`process`) span's status.
pub(crate) fn processed(queue: &str, elapsed: Duration, error: Option<&crate::JobError>) {
    let mut attributes = metric_attributes("process", queue);
    if let Some(e) = error {
        attributes.push(KeyValue::new("error.type", e.type_name()));
        tracing::Span::current().set_status(Status::error(e.to_string()));
    }
    instruments()
        .process_duration
        .record(elapsed.as_secs_f64(), &attributes);
}

/// `n` messages sent to `queue`.
pub(crate) fn sent(queue: &str, n: usize) {
    instruments()
        .sent
        .add(n as u64, &metric_attributes("send", queue));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_refuses_what_is_not_one() {
        let v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = parse_traceparent(v).expect("valid");
        assert!(cx.is_sampled() && cx.is_remote());
        assert_eq!(format_traceparent(&cx), v);
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(!parse_traceparent(unsampled).expect("valid").is_sampled());
        // A later version with more fields is read by its first four.
        assert!(
            parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
                .is_some()
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(
                parse_traceparent(bad).is_none(),
                "{bad:?} is no traceparent"
            );
        }
    }

    #[test]
    fn the_metadata_wins_over_the_google_attribute() {
        let ours = "00-11111111111111111111111111111111-2222222222222222-01";
        let google = "00-33333333333333333333333333333333-4444444444444444-01";
        let attributes = HashMap::from([(GOOGLE_TRACEPARENT.to_string(), google.to_string())]);
        let mut metadata = Metadata::new();
        assert_eq!(
            carried(&metadata, &attributes).map(|c| c.trace_id().to_string()),
            Some("33333333333333333333333333333333".to_string())
        );
        metadata.insert(TRACEPARENT.into(), ours.into());
        metadata.insert(TRACESTATE.into(), "vendor=1".into());
        let cx = carried(&metadata, &attributes).expect("carried");
        assert_eq!(
            cx.trace_id().to_string(),
            "11111111111111111111111111111111"
        );
        assert_eq!(cx.trace_state().get("vendor"), Some("1"));
    }
}
