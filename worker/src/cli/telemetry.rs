//! OpenTelemetry for the command line: OTLP export of the library's spans and messaging metrics,
//! configured by the standard `OTEL_*` variables, and nothing at all when none is set.
//!
//! On when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` /
//! `_METRICS_ENDPOINT`) is set, or `OTEL_TRACES_EXPORTER` / `OTEL_METRICS_EXPORTER` is `otlp`;
//! off with `OTEL_SDK_DISABLED=true`, and per signal with `OTEL_TRACES_EXPORTER=none` /
//! `OTEL_METRICS_EXPORTER=none`. The exporter reads the rest itself: the protocol
//! (`OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf`, the default, or `http/json`), headers,
//! timeout; the SDK reads `OTEL_SERVICE_NAME` (default `pubsub-jobs`),
//! `OTEL_RESOURCE_ATTRIBUTES`, the sampler (`OTEL_TRACES_SAMPLER`) and the batch settings
//! (`OTEL_BSP_*`, `OTEL_METRIC_EXPORT_INTERVAL`).

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

/// Whether this process exports OpenTelemetry: every client the CLI makes is traced then.
static ON: AtomicBool = AtomicBool::new(false);

/// Whether OpenTelemetry is on in this process ([`init`] found it configured).
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// The providers set up by [`init`]; [`Telemetry::shutdown`] exports what is left.
#[derive(Debug)]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Telemetry {
    /// Exports the spans and metrics not yet sent, and stops the exporters. Call before exiting.
    pub fn shutdown(&self) {
        if let Some(t) = &self.tracer {
            if let Err(e) = t.shutdown() {
                eprintln!("opentelemetry: exporting the last spans failed: {e}");
            }
        }
        if let Some(m) = &self.meter {
            if let Err(e) = m.shutdown() {
                eprintln!("opentelemetry: exporting the last metrics failed: {e}");
            }
        }
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Whether one signal exports: `OTEL_<SIGNAL>_EXPORTER` says, else an endpoint being set.
fn signal_on(exporter_var: &str, endpoint_var: &str) -> anyhow::Result<bool> {
    match var(exporter_var).as_deref().map(str::trim) {
        Some("none") => Ok(false),
        Some("otlp") => Ok(true),
        Some(other) => bail!(
            "{exporter_var}={other:?} is not supported: this worker exports with \"otlp\" (or \"none\")"
        ),
        None => Ok(var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() || var(endpoint_var).is_some()),
    }
}

/// The layer that hands the `tracing` spans of a subscriber `S` to OpenTelemetry.
pub type SpanLayer<S> =
    tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>;

/// The protocol of a signal: its own variable, else `OTEL_EXPORTER_OTLP_PROTOCOL`, else
/// `http/protobuf` (the specification's default; the exporter would take JSON, being built
/// with both).
fn protocol(signal_var: &str) -> Protocol {
    match var(signal_var)
        .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .as_deref()
        .map(str::trim)
    {
        Some("http/json") => Protocol::HttpJson,
        _ => Protocol::HttpBinary,
    }
}

/// The `tracing` layer to add and the providers to shut down, when the `OTEL_*` variables ask
/// for export; `None` when they do not (nothing is set up, nothing costs).
pub fn init<S>() -> anyhow::Result<Option<(Telemetry, Option<SpanLayer<S>>)>>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let traces = signal_on("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")?;
    let metrics = signal_on(
        "OTEL_METRICS_EXPORTER",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    )?;
    if !traces && !metrics {
        return Ok(None);
    }
    for name in [
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    ] {
        if let Some(p) = var(name) {
            if !matches!(p.trim(), "http/protobuf" | "http/json") {
                bail!("{name}={p:?} is not supported: this worker exports OTLP over HTTP (\"http/protobuf\", the default, or \"http/json\"; a collector listens on port 4318)");
            }
        }
    }
    let named = var("OTEL_SERVICE_NAME").is_some()
        || var("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| a.contains("service.name="));
    let resource = if named {
        Resource::builder().build()
    } else {
        Resource::builder().with_service_name("pubsub-jobs").build()
    };
    let mut layer = None;
    let tracer = if traces {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(protocol("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
            .build()
            .context("opentelemetry: the OTLP span exporter (OTEL_EXPORTER_OTLP_*)")?;
        let provider = SdkTracerProvider::builder()
            .with_resource(resource.clone())
            .with_batch_exporter(exporter)
            .build();
        layer = Some(tracing_opentelemetry::layer().with_tracer(provider.tracer("pubsub-jobs")));
        opentelemetry::global::set_tracer_provider(provider.clone());
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        Some(provider)
    } else {
        None
    };
    let meter = if metrics {
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_protocol(protocol("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"))
            .build()
            .context("opentelemetry: the OTLP metric exporter (OTEL_EXPORTER_OTLP_*)")?;
        let provider = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_periodic_exporter(exporter)
            .build();
        opentelemetry::global::set_meter_provider(provider.clone());
        Some(provider)
    } else {
        None
    };
    ON.store(true, Ordering::Relaxed);
    Ok(Some((Telemetry { tracer, meter }, layer)))
}
