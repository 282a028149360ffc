//! Logging for the command line: human-readable lines, or one JSON object per line.
//!
//! In JSON every line is flat: `timestamp`, `level`, `target`, the event's fields (`event`,
//! `message`, ...) and the fields of the spans it happened in, at the top level. So a job's
//! lifecycle events carry `job_id`, `job_class`, `queue` and `attempt` from the job's one span
//! (opened by the worker's dispatch), exactly as if each event repeated them.

use std::fmt;
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use super::LogFormat;

/// Sets up tracing: text or JSON lines on stderr, level from `RUST_LOG` (else `default_level`);
/// and, when the `OTEL_*` variables ask for it, OpenTelemetry export of the library's spans and
/// metrics ([`telemetry`](super::telemetry)), whose providers it returns: call
/// [`Telemetry::shutdown`](super::telemetry::Telemetry::shutdown) before exiting. The error
/// names an `OTEL_*` setting this build cannot honour.
///
/// Lines go through [`pubsub_jobs::logging`]'s buffer: written in batches, warnings and errors
/// at once, and always before the acks of the jobs they report. Call
/// [`pubsub_jobs::logging::flush`] before exiting (`main_with` does).
pub fn init_logging(
    format: LogFormat,
    default_level: &str,
) -> anyhow::Result<Option<super::telemetry::Telemetry>> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // Colours only on a terminal: a log file or a collector gets plain text.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        pubsub_jobs::logging::flush();
        hook(info);
    }));
    let Some((telemetry, otel)) = super::telemetry::init::<Registry>()? else {
        // Without OpenTelemetry, tracing's own builder: one filter for the whole subscriber and
        // the formatter's type known (no layer behind a pointer on every job's events).
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(ansi)
            .with_writer(BufferedStderr(pubsub_jobs::logging::install_stderr()));
        let _ = match format {
            LogFormat::Text if ansi => builder.try_init(),
            LogFormat::Text => builder
                .fmt_fields(PlainFields)
                .event_format(PlainText)
                .try_init(),
            LogFormat::Json => builder
                .fmt_fields(JsonFields::new())
                .event_format(FlatJson)
                .try_init(),
        };
        return Ok(None);
    };
    // Spans go to OpenTelemetry at info whatever the log level (the exporter's own HTTP
    // client is left out), and the log lines keep theirs.
    let spans = EnvFilter::new(
        "info,h2=off,hyper=off,hyper_util=off,reqwest=off,tower=off,tonic=off,opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off,opentelemetry_http=off",
    );
    let _ = tracing_subscriber::registry()
        .with(otel.map(|layer| layer.with_filter(spans)))
        .with(fmt_layer(format, ansi).with_filter(filter))
        .try_init();
    Ok(Some(telemetry))
}

/// The log lines' layer beside OpenTelemetry's, in the shapes of the builder above: a human at a
/// terminal gets tracing's own coloured lines; a file or a collector gets the same shape from a
/// formatter that costs a fraction of it per line.
fn fmt_layer<S>(format: LogFormat, ansi: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(BufferedStderr(pubsub_jobs::logging::install_stderr()));
    match format {
        LogFormat::Text if ansi => layer.boxed(),
        LogFormat::Text => layer
            .fmt_fields(PlainFields)
            .event_format(PlainText)
            .boxed(),
        LogFormat::Json => layer
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .boxed(),
    }
}

/// Standard error through the log buffer; warnings and errors flush it.
struct BufferedStderr(&'static pubsub_jobs::logging::LogBuffer);

impl<'a> MakeWriter<'a> for BufferedStderr {
    type Writer = pubsub_jobs::logging::LineWriter<'static>;

    fn make_writer(&'a self) -> Self::Writer {
        self.0.writer(true)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        self.0.writer(*meta.level() <= Level::WARN)
    }
}

/// One flat JSON object per event: span fields, then the event's own (which win on a clash).
struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if let Some(done) = write_flat_json(ctx, &mut writer, event) {
            return done;
        }
        flat_json_merged(ctx, writer, event)
    }
}

/// The line of [`FlatJson`] written straight out, when no two of its keys clash (the common
/// case: one span with fields). `None` when some do: then the merging path decides.
fn write_flat_json<S, N>(
    ctx: &FmtContext<'_, S, N>,
    writer: &mut Writer<'_>,
    event: &Event<'_>,
) -> Option<fmt::Result>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let span = match ctx.event_scope() {
        None => None,
        Some(scope) => {
            let mut with_fields = None;
            for span in scope.from_root() {
                let has_fields = span
                    .extensions()
                    .get::<FormattedFields<N>>()
                    .is_some_and(|f| f.len() > 2);
                if has_fields {
                    if with_fields.is_some() {
                        return None;
                    }
                    with_fields = Some(span);
                }
            }
            with_fields
        }
    };
    let ext = span.as_ref().map(|s| s.extensions());
    let span_fields = ext
        .as_ref()
        .and_then(|e| e.get::<FormattedFields<N>>())
        .map(|f| f.fields.as_str())
        .unwrap_or("");
    const RESERVED: [&str; 3] = ["timestamp", "level", "target"];
    let clashes = |name: &str| RESERVED.contains(&name) || clashes_in(span_fields, name);
    if RESERVED.iter().any(|r| clashes_in(span_fields, r))
        || event.metadata().fields().iter().any(|f| clashes(f.name()))
    {
        return None;
    }
    Some((|| {
        writer.write_str("{\"timestamp\":\"")?;
        write_timestamp(writer)?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(event.metadata().level().as_str())?;
        writer.write_char('"')?;
        if span_fields.len() > 2 {
            writer.write_char(',')?;
            writer.write_str(&span_fields[1..span_fields.len() - 1])?;
        }
        let mut visitor = JsonVisitor {
            writer: &mut *writer,
            result: Ok(()),
        };
        event.record(&mut visitor);
        visitor.result?;
        writer.write_str(",\"target\":")?;
        write_json_str(writer, event.metadata().target())?;
        writer.write_str("}\n")
    })())
}

/// Whether the JSON object text `fields` has the key `name`.
fn clashes_in(fields: &str, name: &str) -> bool {
    fields
        .match_indices(name)
        .any(|(i, _)| fields[..i].ends_with('"') && fields[i + name.len()..].starts_with("\":"))
}

/// Writes `s` in double quotes when it needs no escaping (the common case, in JSON and in
/// `Debug` alike); `None` when it does, and then nothing is written.
fn write_quoted_as_is(writer: &mut Writer<'_>, s: &str) -> Option<fmt::Result> {
    if !s.chars().all(|c| c != '"' && c != '\\' && !c.is_control()) {
        return None;
    }
    Some((|| {
        writer.write_char('"')?;
        writer.write_str(s)?;
        writer.write_char('"')
    })())
}

/// A JSON string literal.
fn write_json_str(writer: &mut Writer<'_>, s: &str) -> fmt::Result {
    // Escaping a string cannot fail.
    write_quoted_as_is(writer, s)
        .unwrap_or_else(|| writer.write_str(&serde_json::to_string(s).unwrap_or_default()))
}

/// Writes an event's fields as `,"name":value` members.
struct JsonVisitor<'a, 'w> {
    writer: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl JsonVisitor<'_, '_> {
    fn member(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = (|| {
                self.writer.write_char(',')?;
                write_json_str(self.writer, field.name())?;
                self.writer.write_char(':')?;
                value(self.writer)
            })();
        }
    }
}

impl Visit for JsonVisitor<'_, '_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.member(field, |w| {
            if value.is_finite() {
                write!(w, "{}", serde_json::Value::from(value))
            } else {
                w.write_str("null")
            }
        });
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |w| write_u64(w, value.unsigned_abs(), value < 0));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |w| write_u64(w, value, false));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |w| w.write_str(if value { "true" } else { "false" }));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |w| write_json_str(w, value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |w| write_json_str(w, &format!("{value:?}")));
    }
}

/// [`FlatJson`]'s line built as a map, for lines whose keys clash: the event's fields win over
/// its spans', an inner span's over an outer one's.
fn flat_json_merged<S, N>(
    ctx: &FmtContext<'_, S, N>,
    mut writer: Writer<'_>,
    event: &Event<'_>,
) -> fmt::Result
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let mut line = serde_json::Map::new();
    line.insert(
        "timestamp".into(),
        chrono::Utc::now()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            .into(),
    );
    line.insert(
        "level".into(),
        event.metadata().level().as_str().to_string().into(),
    );
    if let Some(scope) = ctx.event_scope() {
        for span in scope.from_root() {
            let ext = span.extensions();
            if let Some(fields) = ext.get::<FormattedFields<N>>() {
                if let Ok(serde_json::Value::Object(o)) =
                    serde_json::from_str::<serde_json::Value>(fields)
                {
                    line.extend(o);
                }
            }
        }
    }
    event.record(&mut Fields(&mut line));
    line.insert("target".into(), event.metadata().target().into());
    writeln!(writer, "{}", serde_json::Value::Object(line))
}

/// Collects an event's fields into the JSON object.
struct Fields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

/// Plain text lines in the shape of tracing's default format, without colours:
/// `2026-12-03T12:00:00.123456Z  INFO job{job_id=.. queue=default}: target: message k=v`.
struct PlainText;

impl<S, N> FormatEvent<S, N> for PlainText
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write_timestamp(&mut writer)?;
        let meta = event.metadata();
        writer.write_str(match *meta.level() {
            Level::TRACE => " TRACE ",
            Level::DEBUG => " DEBUG ",
            Level::INFO => "  INFO ",
            Level::WARN => "  WARN ",
            Level::ERROR => " ERROR ",
        })?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                writer.write_str(span.name())?;
                let ext = span.extensions();
                match ext.get::<FormattedFields<N>>() {
                    Some(fields) if !fields.is_empty() => {
                        writer.write_char('{')?;
                        writer.write_str(fields)?;
                        writer.write_str("}:")?;
                    }
                    _ => writer.write_char(':')?,
                }
            }
            writer.write_char(' ')?;
        }
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        let mut visitor = PlainVisitor::new(&mut writer);
        event.record(&mut visitor);
        visitor.result?;
        writer.write_char('\n')
    }
}

/// Writes the current UTC time as RFC 3339 with microseconds; the part up to the second is
/// formatted once per second (per thread).
fn write_timestamp(writer: &mut Writer<'_>) -> fmt::Result {
    use std::cell::RefCell;
    thread_local! {
        static SECOND: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
    }
    let now = chrono::Utc::now();
    let secs = now.timestamp();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            cached.1 = now.format("%Y-%m-%dT%H:%M:%S").to_string();
            cached.0 = secs;
        }
        writer.write_str(&cached.1)
    })?;
    let mut fraction = *b".000000Z";
    let mut micros = now.timestamp_subsec_micros().min(999_999);
    for digit in fraction[1..7].iter_mut().rev() {
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    // Digits and ASCII punctuation only.
    writer.write_str(std::str::from_utf8(&fraction).map_err(|_| fmt::Error)?)
}

/// Writes an integer's decimal digits (what `write!("{n}")` writes, without the formatting
/// machinery: a line has several).
fn write_u64(writer: &mut Writer<'_>, n: u64, negative: bool) -> fmt::Result {
    let mut buf = [0u8; 21];
    let mut at = buf.len();
    let mut v = n;
    loop {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if negative {
        at -= 1;
        buf[at] = b'-';
    }
    // Digits and a sign only.
    writer.write_str(std::str::from_utf8(&buf[at..]).map_err(|_| fmt::Error)?)
}

/// Span fields as `k=v k=v`, in the same plain form as [`PlainText`]'s event fields.
struct PlainFields;

impl<'w> FormatFields<'w> for PlainFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: Writer<'w>,
        fields: R,
    ) -> fmt::Result {
        // Written whole into a scratch string first, so that the span's own string is
        // allocated once at its size instead of growing field by field.
        thread_local! {
            static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        SCRATCH.with(|cell| {
            let Ok(mut scratch) = cell.try_borrow_mut() else {
                // A field's `Display` that opens a span of its own: straight to the writer.
                let mut visitor = PlainVisitor::new(&mut writer);
                fields.record(&mut visitor);
                return visitor.result;
            };
            scratch.clear();
            let mut to_scratch = Writer::new(&mut *scratch);
            let mut visitor = PlainVisitor::new(&mut to_scratch);
            fields.record(&mut visitor);
            visitor.result?;
            writer.write_str(&scratch)
        })
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let started = !current.fields.is_empty();
        let mut writer = current.as_writer();
        let mut visitor = PlainVisitor::new(&mut writer);
        visitor.started = started;
        fields.record(&mut visitor);
        visitor.result
    }
}

/// Writes fields as `k=v` separated by spaces: strings quoted (as `Debug` does), numbers and
/// `%`-formatted values bare, an event's message without its name.
struct PlainVisitor<'a, 'w> {
    writer: &'a mut Writer<'w>,
    /// Whether something was written already (a space goes before the next field).
    started: bool,
    result: fmt::Result,
}

impl<'a, 'w> PlainVisitor<'a, 'w> {
    fn new(writer: &'a mut Writer<'w>) -> Self {
        Self {
            writer,
            started: false,
            result: Ok(()),
        }
    }

    fn name(&mut self, field: &Field) -> fmt::Result {
        if self.started {
            self.writer.write_char(' ')?;
        }
        self.started = true;
        if field.name() == "message" {
            return Ok(());
        }
        self.writer.write_str(field.name())?;
        self.writer.write_char('=')
    }

    fn record(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'w>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.name(field).and_then(|()| value(self.writer));
        }
    }
}

impl Visit for PlainVisitor<'_, '_> {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record(field, |w| write_u64(w, value.unsigned_abs(), value < 0));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record(field, |w| write_u64(w, value, false));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.record(field, |w| w.write_str(if value { "true" } else { "false" }));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        let message = field.name() == "message";
        self.record(field, |w| {
            if message {
                w.write_str(value)
            } else {
                write_quoted_as_is(w, value).unwrap_or_else(|| write!(w, "{value:?}"))
            }
        });
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record(field, |w| write!(w, "{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The same events as a worker logs them: a job span with fields set at creation and one
    /// recorded later, events with a message, strings, numbers and `%` values.
    fn emit() {
        let id = uuid::Uuid::nil();
        let span = tracing::info_span!(
            "job",
            job_id = %id,
            job_class = "MockJob",
            attempt = 2u32,
            late = tracing::field::Empty
        );
        let _in = span.enter();
        span.record("late", "yes \"quoted\"");
        tracing::info!(event = "job.started", "job started");
        tracing::warn!(event = "job.failed", error = %"boom: bad\tinput", retry_in_ms = 1500u64, ok = false, delta = -3i64, zero = 0u64, most = u64::MAX, least = i64::MIN, "job failed");
        drop(_in);
        tracing::error!("outside any span {}", 7);
    }

    fn lines(out: &Captured) -> Vec<String> {
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| {
                // Timestamps differ between the two runs; their form is checked below.
                let (ts, rest) = l.split_at(27);
                assert!(
                    chrono::DateTime::parse_from_rfc3339(ts).is_ok() && ts.ends_with('Z'),
                    "not an RFC 3339 UTC timestamp with microseconds: {ts:?}"
                );
                rest.to_string()
            })
            .collect()
    }

    /// What `f` logs, in our plain-text format.
    fn plain_text_of(f: impl FnOnce()) -> Captured {
        let ours = Captured::default();
        let out = ours.clone();
        let plain = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || out.clone())
            .fmt_fields(PlainFields)
            .event_format(PlainText)
            .finish();
        tracing::subscriber::with_default(plain, f);
        ours
    }

    #[test]
    fn plain_text_lines_match_tracings_own_format_without_colours() {
        let ours = plain_text_of(emit);
        let theirs = Captured::default();
        let out = theirs.clone();
        let full = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(full, emit);
        let ours = lines(&ours);
        assert_eq!(ours.len(), 3, "{ours:#?}");
        assert_eq!(ours, lines(&theirs));
    }

    /// A value whose `Display` opens a span of its own while the outer span's fields are
    /// being written.
    struct Nested;

    impl fmt::Display for Nested {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let inner = tracing::info_span!("inner", depth = 2u64);
            inner.in_scope(|| f.write_str("nested"))
        }
    }

    #[test]
    fn a_span_field_that_opens_a_span_while_it_is_written_keeps_both() {
        let ours = plain_text_of(|| {
            let outer = tracing::info_span!("outer", value = %Nested, n = 1u64);
            outer.in_scope(|| tracing::info!("inside"));
        });
        let lines = lines(&ours);
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(
            lines[0].contains("outer{value=nested n=1}: "),
            "{}",
            lines[0]
        );
    }

    struct MergedOnly;

    impl<S, N> FormatEvent<S, N> for MergedOnly
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
    {
        fn format_event(
            &self,
            ctx: &FmtContext<'_, S, N>,
            writer: Writer<'_>,
            event: &Event<'_>,
        ) -> fmt::Result {
            flat_json_merged(ctx, writer, event)
        }
    }

    fn json_lines(out: &Captured) -> Vec<serde_json::Value> {
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("not one JSON object ({e}): {l}"));
                let ts = v["timestamp"].take();
                let ts = ts.as_str().unwrap_or_default();
                assert!(
                    ts.len() == 27 && chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
                    "timestamp {ts:?}"
                );
                v
            })
            .collect()
    }

    #[test]
    fn flat_json_lines_written_straight_equal_the_merged_ones_and_the_event_wins_a_clash() {
        let emit_all = || {
            emit();
            let outer = tracing::info_span!("outer", queue = "default", job_class = "Outer");
            let _o = outer.enter();
            let inner = tracing::info_span!("job", job_class = "Inner");
            let _i = inner.enter();
            tracing::info!(job_class = "Event", "clash");
            tracing::info!(level = "mine", "reserved name");
        };
        let fast = Captured::default();
        let out = fast.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .finish();
        tracing::subscriber::with_default(subscriber, emit_all);
        let merged = Captured::default();
        let out = merged.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .fmt_fields(JsonFields::new())
            .event_format(MergedOnly)
            .finish();
        tracing::subscriber::with_default(subscriber, emit_all);
        let fast = json_lines(&fast);
        assert_eq!(fast.len(), 5, "{fast:#?}");
        assert_eq!(fast, json_lines(&merged));
        assert_eq!(fast[0]["job_class"], "MockJob");
        assert_eq!(fast[0]["attempt"], 2);
        assert_eq!(fast[0]["late"], "yes \"quoted\"");
        assert_eq!(fast[1]["error"], "boom: bad\tinput");
        assert_eq!(fast[1]["ok"], false);
        assert_eq!(fast[1]["level"], "WARN");
        assert_eq!(fast[3]["job_class"], "Event");
        assert_eq!(fast[3]["queue"], "default");
    }
}
