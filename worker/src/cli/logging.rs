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
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use super::LogFormat;

/// Sets up tracing: text or JSON lines on stderr, level from `RUST_LOG` (else `default_level`).
///
/// Lines go through [`pubsub_jobs::logging`]'s buffer: written in batches, warnings and errors
/// at once, and always before the acks of the jobs they report. Call
/// [`pubsub_jobs::logging::flush`] before exiting (`main_with` does).
pub fn init_logging(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only on a terminal: a log file or a collector gets plain text.
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_writer(BufferedStderr(pubsub_jobs::logging::install_stderr()));
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        pubsub_jobs::logging::flush();
        hook(info);
    }));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .try_init(),
    };
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
