//! `/metrics`: Prometheus text exposition of what the job store knows: jobs by status and
//! queue, events by kind (outcomes), run time and queue latency histograms.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiState};
use crate::store::Histogram;

fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (bound, count) in &h.buckets {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum {}", h.sum_seconds);
    let _ = writeln!(out, "{name}_count {}", h.count);
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Metrics in Prometheus text format.
#[utoipa::path(get, path = "/metrics", responses(
    (status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain")))]
pub(crate) async fn metrics(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let counts = state.store.queue_counts().await?;
    let snap = state.store.metrics().await?;
    let outbox = state.store.outbox_status().await?;
    let mut out = String::new();
    let _ = writeln!(out, "# HELP pubsub_jobs_outbox_unpublished Jobs recorded in the store but not published yet (the relay publishes them).");
    let _ = writeln!(out, "# TYPE pubsub_jobs_outbox_unpublished gauge");
    let _ = writeln!(out, "pubsub_jobs_outbox_unpublished {}", outbox.unpublished);
    let _ = writeln!(out, "# HELP pubsub_jobs_outbox_oldest_age_seconds Age of the oldest unpublished job (0 when none).");
    let _ = writeln!(out, "# TYPE pubsub_jobs_outbox_oldest_age_seconds gauge");
    let _ = writeln!(
        out,
        "pubsub_jobs_outbox_oldest_age_seconds {}",
        super::jobs::outbox_age(&outbox).unwrap_or(0.0)
    );
    let _ = writeln!(
        out,
        "# HELP pubsub_jobs_jobs Jobs in the store by queue and status."
    );
    let _ = writeln!(out, "# TYPE pubsub_jobs_jobs gauge");
    for c in &counts {
        let _ = writeln!(
            out,
            "pubsub_jobs_jobs{{queue=\"{}\",status=\"{}\"}} {}",
            label(&c.queue),
            c.status,
            c.count
        );
    }
    let _ = writeln!(out, "# HELP pubsub_jobs_events_total Job events by kind (outcomes: succeeded, failed, retry_scheduled, morgued, discarded, cancelled, interrupted).");
    let _ = writeln!(out, "# TYPE pubsub_jobs_events_total counter");
    for (kind, n) in &snap.events {
        let _ = writeln!(
            out,
            "pubsub_jobs_events_total{{event=\"{}\"}} {n}",
            kind.as_str()
        );
    }
    histogram(
        &mut out,
        "pubsub_jobs_run_seconds",
        "Run time of each job's last execution.",
        &snap.run_time,
    );
    histogram(
        &mut out,
        "pubsub_jobs_queue_latency_seconds",
        "Time from a job being due to its first start.",
        &snap.queue_latency,
    );
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}
