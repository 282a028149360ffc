//! A running job, live: its log lines (`GET /v1/jobs/{id}/logs`) and a stream of its changes
//! as server-sent events (`GET /v1/jobs/{id}/stream`) until it ends. Progress itself is part of
//! the job's resource (`GET /v1/jobs/{id}`, with its ETag).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures::Stream;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::jobs::{not_found, parse_id, JobResource};
use super::{ApiError, ApiQuery, ApiState};
use crate::store::JobLog;

/// How often a stream looks at its job.
const STREAM_EVERY: Duration = Duration::from_millis(500);

/// The most lines one read returns.
const MAX_LOG_PAGE: u32 = 1000;

/// Which lines.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogParams {
    /// Only lines numbered above this (the `next_after` of the previous page).
    pub after: Option<u64>,
    /// At most this many (default 200, at most 1,000).
    pub limit: Option<u32>,
}

/// A page of a job's log lines.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct LogsResponse {
    /// The job id.
    pub job_id: Uuid,
    /// Oldest first.
    pub logs: Vec<JobLog>,
    /// Pass as `after` for the lines after these (absent when there are none).
    pub next_after: Option<u64>,
}

/// A job's log lines ([`JobContext::log`](crate::JobContext::log)), oldest first: the first
/// 1,000 of each job are kept.
#[utoipa::path(get, path = "/v1/jobs/{id}/logs", params(("id" = Uuid, Path, description = "The job id"), LogParams), responses(
    (status = 200, description = "Lines, oldest first", body = LogsResponse),
    (status = 404, description = "No such job", body = super::ErrorBody),
    (status = 422, description = "A bad parameter", body = super::ErrorBody)))]
pub(crate) async fn logs(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<LogParams>,
) -> Result<Json<LogsResponse>, ApiError> {
    let id = parse_id(&id)?;
    if state.store.get(id).await?.is_none() {
        return Err(not_found(id));
    }
    let limit = p.limit.unwrap_or(200).clamp(1, MAX_LOG_PAGE);
    let logs = state.store.logs(id, p.after, limit).await?;
    Ok(Json(LogsResponse {
        job_id: id,
        next_after: logs.last().map(|l| l.n),
        logs,
    }))
}

/// Where a stream is.
struct Cursor {
    state: ApiState,
    id: Uuid,
    version: Option<i64>,
    after: Option<u64>,
    /// Nothing sent yet: the first look is at once.
    first: bool,
    ended: bool,
}

/// The job's changes as server-sent events, until it ends (or the server stops): `job` (its
/// resource, as `GET /v1/jobs/{id}` has it, whenever it changes: status, progress, result),
/// `log` (each new line), and `end` once it finished. Looked at every 500 ms; a comment every
/// 15 s keeps an idle connection open.
#[utoipa::path(get, path = "/v1/jobs/{id}/stream", params(("id" = Uuid, Path, description = "The job id")), responses(
    (status = 200, description = "text/event-stream: events `job` (a JobResource), `log` (a JobLog), `end`", content_type = "text/event-stream"),
    (status = 404, description = "No such job", body = super::ErrorBody)))]
pub(crate) async fn stream(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>>, ApiError> {
    let id = parse_id(&id)?;
    if state.store.get(id).await?.is_none() {
        return Err(not_found(id));
    }
    let cursor = Cursor {
        state,
        id,
        version: None,
        after: None,
        first: true,
        ended: false,
    };
    let events = futures::stream::unfold(cursor, |mut c| async move {
        if c.ended {
            return None;
        }
        if !std::mem::take(&mut c.first) {
            let stopping = c.state.stopping.clone();
            tokio::select! {
                _ = tokio::time::sleep(STREAM_EVERY) => {}
                _ = stopping.cancelled() => return None,
            }
        }
        let batch = next_events(&mut c).await;
        Some((futures::stream::iter(batch), c))
    });
    use futures::StreamExt;
    Ok(Sse::new(events.flatten()).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// What changed since the cursor: the job's resource if its version moved, its new lines, and
/// `end` once it finished (or is gone).
async fn next_events(c: &mut Cursor) -> Vec<Result<Event, std::convert::Infallible>> {
    let mut out = Vec::new();
    let rec = match c.state.store.get(c.id).await {
        Ok(Some(rec)) => rec,
        Ok(None) => {
            c.ended = true;
            out.push(Ok(Event::default().event("end").data("deleted")));
            return out;
        }
        Err(e) => {
            // The store did not answer: try again next time.
            tracing::debug!(error = %e, job_id = %c.id, "job stream: the store did not answer");
            return out;
        }
    };
    let finished = rec.status.is_finished();
    let status = rec.status;
    if c.version != Some(rec.version) {
        c.version = Some(rec.version);
        if let Ok(json) = serde_json::to_string(&JobResource::from(rec)) {
            out.push(Ok(Event::default().event("job").data(json)));
        }
    }
    if let Ok(lines) = c.state.store.logs(c.id, c.after, MAX_LOG_PAGE).await {
        for l in lines {
            c.after = Some(l.n);
            if let Ok(json) = serde_json::to_string(&l) {
                out.push(Ok(Event::default()
                    .event("log")
                    .id(l.n.to_string())
                    .data(json)));
            }
        }
    }
    if finished {
        c.ended = true;
        out.push(Ok(Event::default().event("end").data(status.as_str())));
    }
    out
}
