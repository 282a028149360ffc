//! `/v1/periodic`: the periodic entries schedulers registered in the store, with their next
//! and last runs; pause, resume, and run one now.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::jobs::JobResource;
use super::{ApiError, ApiState};
use crate::envelope::Envelope;
use crate::store::PeriodicState;

/// A periodic entry.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct PeriodicResource {
    /// The entry's name.
    name: String,
    /// The cron expression.
    schedule: String,
    /// The IANA timezone it is read in.
    timezone: String,
    /// The job class it enqueues.
    job_class: String,
    /// The queue.
    queue: String,
    /// The job's arguments.
    #[schema(value_type = Object)]
    arguments: serde_json::Value,
    /// Paused entries enqueue nothing.
    paused: bool,
    /// The next tick.
    next_run_at: Option<DateTime<Utc>>,
    /// The last tick that enqueued a job.
    last_run_at: Option<DateTime<Utc>>,
    /// That job's id.
    last_job_id: Option<Uuid>,
    /// When a scheduler last registered the entry.
    registered_at: DateTime<Utc>,
}

impl From<PeriodicState> for PeriodicResource {
    fn from(s: PeriodicState) -> Self {
        let next_run_at = crate::periodic::next_run(&s.definition, Utc::now());
        let d = s.definition;
        Self {
            name: d.name,
            schedule: d.schedule,
            timezone: d.timezone,
            job_class: d.job_class,
            queue: d.queue,
            arguments: d.arguments,
            paused: s.paused,
            next_run_at,
            last_run_at: s.last_tick_at,
            last_job_id: s.last_job_id,
            registered_at: s.updated_at,
        }
    }
}

/// The periodic entries.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct PeriodicList {
    /// By name.
    entries: Vec<PeriodicResource>,
}

fn unknown(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no periodic entry {name:?}: no scheduler registered it (see GET /v1/periodic)"),
    )
}

/// Every periodic entry, with its next and last run.
#[utoipa::path(get, path = "/v1/periodic", responses(
    (status = 200, description = "The entries", body = PeriodicList)))]
pub(super) async fn list(State(state): State<ApiState>) -> Result<Json<PeriodicList>, ApiError> {
    let entries = state.store.periodic_entries().await?;
    Ok(Json(PeriodicList {
        entries: entries.into_iter().map(Into::into).collect(),
    }))
}

/// Pauses or resumes entry `name` (shared with the dashboard).
pub(crate) async fn set_paused_entry(
    state: &ApiState,
    name: &str,
    paused: bool,
) -> Result<PeriodicState, ApiError> {
    match state.store.set_periodic_paused(name, paused).await? {
        Some(s) => {
            tracing::info!(event = if paused { "periodic.paused_by_operator" } else { "periodic.resumed_by_operator" }, entry = %name, "periodic entry {}", if paused { "paused" } else { "resumed" });
            Ok(s)
        }
        None => Err(unknown(name)),
    }
}

async fn set_paused(state: &ApiState, name: &str, paused: bool) -> Result<Response, ApiError> {
    let s = set_paused_entry(state, name, paused).await?;
    Ok(Json(PeriodicResource::from(s)).into_response())
}

/// Pauses an entry: its ticks enqueue nothing until resumed.
#[utoipa::path(post, path = "/v1/periodic/{name}/pause", params(("name" = String, Path, description = "The entry")), responses(
    (status = 200, description = "The entry", body = PeriodicResource),
    (status = 404, description = "No such entry", body = super::ErrorBody)))]
pub(super) async fn pause(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    set_paused(&state, &name, true).await
}

/// Resumes a paused entry (ticks missed while paused are not enqueued).
#[utoipa::path(post, path = "/v1/periodic/{name}/resume", params(("name" = String, Path, description = "The entry")), responses(
    (status = 200, description = "The entry", body = PeriodicResource),
    (status = 404, description = "No such entry", body = super::ErrorBody)))]
pub(super) async fn resume(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    set_paused(&state, &name, false).await
}

/// Enqueues the entry's job now, outside its schedule (a new job id; the schedule is unchanged).
#[utoipa::path(post, path = "/v1/periodic/{name}/run", params(("name" = String, Path, description = "The entry")), responses(
    (status = 202, description = "The job enqueued", body = JobResource),
    (status = 404, description = "No such entry", body = super::ErrorBody),
    (status = 422, description = "The stored entry names a class or arguments this API does not know", body = super::ErrorBody)))]
pub(super) async fn run_now(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let record = run_entry(&state, &name).await?;
    Ok((StatusCode::ACCEPTED, Json(JobResource::from(record))).into_response())
}

/// Enqueues entry `name`'s job now (shared with the dashboard).
pub(crate) async fn run_entry(
    state: &ApiState,
    name: &str,
) -> Result<crate::store::JobRecord, ApiError> {
    let entry = state
        .store
        .periodic_entries()
        .await?
        .into_iter()
        .find(|e| e.definition.name == name)
        .ok_or_else(|| unknown(name))?;
    let d = entry.definition;
    state
        .registry
        .validate(&d.job_class, &d.arguments)
        .map_err(ApiError::from)?;
    let env = Envelope::new(&d.job_class, &d.queue, d.arguments);
    let submission = state.client.submit(env, None).await?;
    let record =
        match submission.record {
            Some(r) => *r,
            None => state.store.get(submission.job_id).await?.ok_or_else(|| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the job vanished")
            })?,
        };
    tracing::info!(event = "periodic.run_now", entry = %name, job_id = %record.id, "periodic entry run now");
    Ok(record)
}
