//! What operators do to jobs, and what the dashboard's overview reads: retry, delete and cancel
//! one job or every job a filter matches (the operator layer, [`crate::admin`], does them; this
//! file maps their outcomes to HTTP), counts, stats and the registered classes. The dashboard's
//! pages call the same functions, so every action it offers is in the JSON API too.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::jobs::{
    cancel_one, not_found, outbox_age, parse_id, JobResource, ListParams, OutboxResponse,
};
use super::{ApiError, ApiState, ErrorBody};
use crate::admin;
use crate::store::{
    DeleteOutcome, Histogram, JobCount, JobRecord, ListQuery, MinuteCount, ProcessInfo,
    RequeueOutcome, HEARTBEAT_INTERVAL,
};

pub(crate) use crate::admin::jobs::{BulkAction, BulkReport, BULK_LIMIT};

/// Retries a failed, morgued, discarded or cancelled job now (through the operator layer,
/// shared with the dashboard).
pub(crate) async fn retry_one(state: &ApiState, id: Uuid) -> Result<JobRecord, ApiError> {
    match admin::jobs::retry(&state.client, id).await? {
        RequeueOutcome::Requeued(r) => Ok(*r),
        RequeueOutcome::Conflict(r) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "job {id} is {}: only failed, morgued, discarded or cancelled jobs can be retried",
                r.status
            ),
        )),
        RequeueOutcome::NotFound => Err(not_found(id)),
    }
}

/// Deletes a finished job and its history (shared with the dashboard).
pub(crate) async fn delete_one(state: &ApiState, id: Uuid) -> Result<(), ApiError> {
    match admin::jobs::delete(&state.client, id).await? {
        DeleteOutcome::Deleted => Ok(()),
        DeleteOutcome::Conflict(r) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "job {id} is {}: only finished jobs can be deleted (cancel it first)",
                r.status
            ),
        )),
        DeleteOutcome::NotFound => Err(not_found(id)),
    }
}

/// Retry a failed, morgued, discarded or cancelled job now: it runs again under the same id, as
/// a new generation, from its first execution.
#[utoipa::path(post, path = "/v1/jobs/{id}/retry", params(("id" = Uuid, Path, description = "The job id")), responses(
    (status = 200, description = "Back to pending, published", body = JobResource),
    (status = 404, description = "No such job", body = ErrorBody),
    (status = 409, description = "Not failed, morgued, discarded or cancelled", body = ErrorBody)))]
pub(crate) async fn retry(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<JobResource>, ApiError> {
    let id = parse_id(&id)?;
    Ok(Json(JobResource::from(retry_one(&state, id).await?)))
}

/// What was deleted.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Deleted {
    /// The job id.
    pub id: Uuid,
    /// Always true.
    pub deleted: bool,
}

/// Delete a finished job and its history.
#[utoipa::path(post, path = "/v1/jobs/{id}/delete", params(("id" = Uuid, Path, description = "The job id")), responses(
    (status = 200, description = "Deleted", body = Deleted),
    (status = 404, description = "No such job", body = ErrorBody),
    (status = 409, description = "Not finished: cancel it first", body = ErrorBody)))]
pub(crate) async fn delete(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    let id = parse_id(&id)?;
    delete_one(&state, id).await?;
    Ok(Json(Deleted { id, deleted: true }))
}

/// Cancel a job that has not started (the same as `DELETE /v1/jobs/{id}`).
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", params(("id" = Uuid, Path, description = "The job id")), responses(
    (status = 200, description = "Cancelled: it will not run", body = JobResource),
    (status = 404, description = "No such job", body = ErrorBody),
    (status = 409, description = "Running or finished", body = ErrorBody)))]
pub(crate) async fn cancel(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<JobResource>, ApiError> {
    let id = parse_id(&id)?;
    Ok(Json(JobResource::from(cancel_one(&state, id).await?)))
}

/// Apply an action to every job a filter matches.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BulkRequest {
    /// retry, cancel or delete.
    pub action: BulkAction,
    /// Only this status.
    pub status: Option<String>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this class.
    pub class: Option<String>,
    /// Only jobs whose arguments or last error contain this text.
    pub q: Option<String>,
}

/// Applies `action` to the jobs `query` matches, newest first, at most [`BULK_LIMIT`] (shared
/// with the dashboard).
pub(crate) async fn bulk_apply(
    state: &ApiState,
    action: BulkAction,
    query: ListQuery,
) -> Result<BulkReport, ApiError> {
    // In a task of its own: a client that goes away mid-action (a closed tab, a timeout) drops
    // this request's future, not the action, which finishes and logs what it did.
    let client = state.client.clone();
    let task = tokio::spawn(async move { admin::jobs::bulk(&client, action, query).await });
    match task.await {
        Ok(report) => Ok(report?),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the bulk {} stopped: {e}", action.as_str()),
        )),
    }
}

/// Retry, cancel or delete every job a filter matches (at most 10,000 per call).
#[utoipa::path(post, path = "/v1/jobs/bulk", request_body = BulkRequest, responses(
    (status = 200, description = "Done", body = BulkReport),
    (status = 422, description = "A bad filter or action", body = ErrorBody)))]
pub(crate) async fn bulk(
    State(state): State<ApiState>,
    Json(req): Json<BulkRequest>,
) -> Result<Json<BulkReport>, ApiError> {
    let query = ListParams {
        status: req.status,
        queue: req.queue,
        class: req.class,
        q: req.q,
        order: None,
        limit: None,
        cursor: None,
    }
    .to_query()?;
    Ok(Json(bulk_apply(&state, req.action, query).await?))
}

/// How many jobs a filter matches.
#[utoipa::path(get, path = "/v1/jobs/count", params(ListParams), responses(
    (status = 200, description = "The count; exact false when only the newest 20,000 were looked at", body = JobCount),
    (status = 422, description = "A bad filter", body = ErrorBody)))]
pub(crate) async fn count(
    State(state): State<ApiState>,
    super::ApiQuery(p): super::ApiQuery<ListParams>,
) -> Result<Json<JobCount>, ApiError> {
    Ok(Json(state.store.count(&p.to_query()?).await?))
}

/// p50 and p99 of a histogram.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Percentiles {
    /// Observations.
    pub count: u64,
    /// Seconds: the upper bound of the bucket holding the median; null when none (300 stands
    /// for anything longer).
    pub p50_seconds: Option<f64>,
    /// Seconds, as p50, for the 99th percentile.
    pub p99_seconds: Option<f64>,
}

/// The upper bound of the histogram bucket holding quantile `q`; the last bound for the
/// overflow bucket; `None` without observations.
pub(crate) fn quantile(h: &Histogram, q: f64) -> Option<f64> {
    if h.count == 0 {
        return None;
    }
    let rank = ((h.count as f64) * q).ceil().max(1.0) as u64;
    h.buckets
        .iter()
        .find(|(_, cumulative)| *cumulative >= rank)
        .map(|(bound, _)| *bound)
        .or_else(|| h.buckets.last().map(|(b, _)| *b))
}

fn percentiles(h: &Histogram) -> Percentiles {
    Percentiles {
        count: h.count,
        p50_seconds: quantile(h, 0.5),
        p99_seconds: quantile(h, 0.99),
    }
}

/// The overview.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct StatsResponse {
    /// Counts by status per queue.
    pub queues: Vec<super::jobs::QueueCounts>,
    /// Executions finished per minute over the last hour, oldest first (minutes without any
    /// left out).
    pub throughput: Vec<MinuteCount>,
    /// From due to first start.
    pub queue_latency: Percentiles,
    /// Executions' run time.
    pub run_time: Percentiles,
    /// Jobs recorded but not published yet.
    pub outbox: OutboxResponse,
    /// Workers, API servers and relays seen in the last minute.
    pub processes: Vec<ProcessInfo>,
}

/// Everything the overview shows, read from the store's aggregates (no scans).
pub(crate) async fn stats_of(state: &ApiState) -> Result<StatsResponse, ApiError> {
    let now = Utc::now();
    let metrics = state.store.metrics().await?;
    let outbox = state.store.outbox_status().await?;
    let recent = chrono::Duration::from_std(HEARTBEAT_INTERVAL * 6).unwrap_or_default();
    Ok(StatsResponse {
        queues: super::jobs::queue_counts(state).await?,
        throughput: state
            .store
            .throughput(now - chrono::Duration::minutes(59))
            .await?,
        queue_latency: percentiles(&metrics.queue_latency),
        run_time: percentiles(&metrics.run_time),
        outbox: OutboxResponse {
            unpublished: outbox.unpublished,
            oldest_age_seconds: outbox_age(&outbox),
        },
        processes: state.store.processes(now - recent).await?,
    })
}

/// Queues, executions per minute over the last hour, latency and run-time percentiles, the
/// outbox and the processes using the store: the dashboard's overview as JSON.
#[utoipa::path(get, path = "/v1/stats", responses(
    (status = 200, description = "The overview", body = StatsResponse)))]
pub(crate) async fn stats(State(state): State<ApiState>) -> Result<Json<StatsResponse>, ApiError> {
    Ok(Json(stats_of(&state).await?))
}

/// A registered job class.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ClassInfo {
    /// The class name to submit.
    pub job_class: String,
}

/// The job classes this API accepts.
#[utoipa::path(get, path = "/v1/classes", responses(
    (status = 200, description = "Registered classes, by name", body = Vec<ClassInfo>)))]
pub(crate) async fn classes(State(state): State<ApiState>) -> Json<Vec<ClassInfo>> {
    Json(class_list(&state))
}

pub(crate) fn class_list(state: &ApiState) -> Vec<ClassInfo> {
    let mut out: Vec<ClassInfo> = state
        .registry
        .iter()
        .map(|r| ClassInfo {
            job_class: r.name().to_string(),
        })
        .collect();
    out.sort_by(|a, b| a.job_class.cmp(&b.job_class));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_bucket_upper_bounds() {
        let h = Histogram {
            buckets: vec![(0.1, 50), (1.0, 98), (10.0, 99)],
            count: 100,
            sum_seconds: 0.0,
        };
        assert_eq!(quantile(&h, 0.5), Some(0.1));
        assert_eq!(quantile(&h, 0.99), Some(10.0));
        // The overflow bucket reports the last bound.
        assert_eq!(quantile(&h, 1.0), Some(10.0));
        assert_eq!(quantile(&Histogram::default(), 0.5), None);
    }
}
