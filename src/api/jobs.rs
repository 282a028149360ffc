//! `/v1/jobs` and `/v1/queues`: submit, poll, history, list, cancel, counts.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ApiError, ApiState, ErrorBody};
use crate::admin;
use crate::envelope::Envelope;
use crate::store::CancelOutcome;
use crate::store::{
    Dedup, JobEvent, JobRecord, JobStatus, ListOrder, ListQuery, DEFAULT_DEDUP_WINDOW,
};

/// A job to run.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubmitRequest {
    /// A job class registered in the worker binary (`worker jobs` lists them).
    pub job_class: String,
    /// The job's arguments: its struct as JSON.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub arguments: serde_json::Value,
    /// The queue; the job's own queue when absent.
    pub queue: Option<String>,
    /// Run no earlier than this many seconds from now.
    pub wait_seconds: Option<f64>,
    /// Run no earlier than this time (RFC 3339).
    pub scheduled_at: Option<DateTime<Utc>>,
    /// At most one job per key within the window: a second submit returns the first job.
    pub dedup_key: Option<String>,
    /// The dedup window in seconds (default 300; 1 to 31,536,000).
    pub dedup_window_seconds: Option<u64>,
    /// String pairs the job carries to `ctx.metadata()` (a tenant, a request id), kept through
    /// its retries: at most 64, keys of 1-128 characters, values of at most 1,024. The API
    /// process's middleware may add to them.
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Refuse the job (409) unless a worker process runs its queue now (its heartbeat reached
    /// the store within the last 30 s): for a caller that must not leave a job waiting.
    #[serde(default)]
    pub require_worker: bool,
    /// Unique by its arguments: while a job of this class on this queue with equal arguments
    /// (all, or the fields named) was submitted less than the period ago, a submit returns that
    /// job (200). Not with `dedup_key`.
    pub unique: Option<UniqueRequest>,
}

/// What makes a submit unique (`"unique": {"arguments": ["object_id"], "period_seconds": 300}`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UniqueRequest {
    /// The top-level argument fields compared; absent: all the arguments.
    pub arguments: Option<Vec<String>>,
    /// How long a job holds its arguments, in seconds (default 300; 1 to 31,536,000).
    pub period_seconds: Option<u64>,
}

/// The most metadata pairs a submit may carry, and the longest key and value.
const MAX_METADATA: (usize, usize, usize) = (64, 128, 1024);

/// The longest dedup window a submit may ask for: a year.
const MAX_DEDUP_WINDOW_SECS: u64 = 365 * 24 * 3600;

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// Links from a job.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct JobLinks {
    /// This job.
    #[serde(rename = "self")]
    pub self_: String,
    /// Its history.
    pub events: String,
    /// Its log lines.
    pub logs: String,
    /// Its changes as server-sent events, until it ends.
    pub stream: String,
}

/// A job's status and result.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct JobResource {
    /// Bumped by every retry of the finished job.
    pub generation: u32,
    /// The job id.
    pub id: Uuid,
    /// The class.
    pub job_class: String,
    /// The queue.
    pub queue: String,
    /// The status.
    pub status: JobStatus,
    /// Executions started.
    pub attempts: u32,
    /// The arguments.
    #[schema(value_type = Object)]
    pub arguments: serde_json::Value,
    /// When it was enqueued.
    pub enqueued_at: DateTime<Utc>,
    /// When it is due, if later.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// When the last execution started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// The last error.
    pub last_error: Option<String>,
    /// What the job recorded as its result.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// The dedup key it was submitted with.
    pub dedup_key: Option<String>,
    /// The running execution's latest progress ([`JobContext::progress`](crate::JobContext::progress));
    /// absent before it reports any, and when a new execution starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<crate::store::Progress>,
    /// What middleware attached on enqueue (a tenant, a request id); absent when nothing.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub metadata: std::collections::BTreeMap<String, String>,
    /// In a list (`GET /v1/jobs`), the fields cut at 4,096 characters (`arguments`, `result`,
    /// `last_error`; each then a string ending in `…`): `GET /v1/jobs/{id}` has them in full.
    /// Absent when nothing was cut.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub truncated: Vec<String>,
    /// Links.
    pub links: JobLinks,
}

impl From<JobRecord> for JobResource {
    fn from(r: JobRecord) -> Self {
        Self {
            links: JobLinks {
                self_: format!("/v1/jobs/{}", r.id),
                events: format!("/v1/jobs/{}/events", r.id),
                logs: format!("/v1/jobs/{}/logs", r.id),
                stream: format!("/v1/jobs/{}/stream", r.id),
            },
            generation: r.generation,
            id: r.id,
            job_class: r.job_class,
            queue: r.queue,
            status: r.status,
            attempts: r.attempts,
            arguments: r.arguments,
            enqueued_at: r.enqueued_at,
            scheduled_at: r.scheduled_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            last_error: r.last_error,
            result: r.result,
            dedup_key: r.dedup_key,
            metadata: r.metadata,
            progress: r.progress,
            truncated: r.truncated,
        }
    }
}

/// A job's history.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct EventsResponse {
    /// The job id.
    pub job_id: Uuid,
    /// Oldest first.
    pub events: Vec<JobEvent>,
}

/// A page of jobs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct JobList {
    /// Newest first.
    pub jobs: Vec<JobResource>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// Counts of one queue.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct QueueCounts {
    /// The queue.
    pub queue: String,
    /// Jobs by status.
    pub counts: BTreeMap<String, u64>,
    /// All jobs.
    pub total: u64,
}

/// Counts per queue.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct QueuesResponse {
    /// The queues with jobs in the store.
    pub queues: Vec<QueueCounts>,
}

/// List filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// Only this status.
    pub status: Option<String>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this job class.
    pub class: Option<String>,
    /// Only jobs whose arguments or last error contain this text (case-insensitive; looks at
    /// the newest 20,000 jobs of the other filters per page, so a page may be short with a
    /// `next_cursor` that goes on).
    pub q: Option<String>,
    /// `newest` (the default) or `due`: soonest due first, for `status=scheduled` or
    /// `status=retrying` (with at most a `queue` filter).
    pub order: Option<String>,
    /// Page size, 1-500 (default 50).
    pub limit: Option<u32>,
    /// From `next_cursor`.
    pub cursor: Option<String>,
}

impl ListParams {
    /// The store query, or a 422 naming the bad parameter. Empty values mean no filter.
    pub(crate) fn to_query(&self) -> Result<ListQuery, ApiError> {
        fn given(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|v| !v.is_empty())
        }
        for (field, value) in [
            ("status", &self.status),
            ("queue", &self.queue),
            ("class", &self.class),
            ("q", &self.q),
            ("order", &self.order),
            ("cursor", &self.cursor),
        ] {
            if let Some(v) = value {
                super::plain_text(field, v)?;
            }
        }
        let status = given(&self.status)
            .map(str::parse::<JobStatus>)
            .transpose()
            .map_err(|m| ApiError::unprocessable(m).field("status"))?;
        let limit = self.limit.unwrap_or(50);
        if !(1..=500).contains(&limit) {
            return Err(
                ApiError::unprocessable(format!("limit must be 1-500, not {limit}")).field("limit"),
            );
        }
        let order = match given(&self.order) {
            None | Some("newest") => ListOrder::Newest,
            Some("due") => ListOrder::DueFirst,
            Some(o) => {
                return Err(ApiError::unprocessable(format!(
                    "order must be newest or due, not {o:?}"
                ))
                .field("order"))
            }
        };
        let cursor = given(&self.cursor).map(str::to_string);
        if let Some(c) = &cursor {
            let due_cursor = c
                .strip_prefix('d')
                .and_then(|c| c.split_once(':'))
                .is_some_and(|(a, s)| a.parse::<i64>().is_ok() && s.parse::<i64>().is_ok());
            if c.parse::<i64>().is_err() && !due_cursor {
                return Err(ApiError::unprocessable(format!(
                    "cursor {c:?} is not one this API returned"
                ))
                .field("cursor"));
            }
        }
        let text = given(&self.q).map(str::to_string);
        if text.as_ref().is_some_and(|t| t.chars().count() > 200) {
            return Err(ApiError::unprocessable("q must be at most 200 characters").field("q"));
        }
        let query = ListQuery {
            status,
            queue: given(&self.queue).map(str::to_string),
            job_class: given(&self.class).map(str::to_string),
            text,
            limit,
            cursor,
            order,
            cut_values_at: Some(crate::store::LIST_VALUE_CHARS),
        };
        // A cursor of the other order (`d...` pages soonest due first) is a 422 here, not a
        // store error later.
        if let Some(c) = &query.cursor {
            if c.starts_with('d') != query.is_due_order() {
                return Err(ApiError::unprocessable(format!(
                    "cursor {c:?} belongs to another order of this list: start again without it"
                ))
                .field("cursor"));
            }
        }
        Ok(query)
    }
}

pub(crate) fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    id.parse().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no job {id:?}: job ids are UUIDs"),
        )
    })
}

pub(crate) fn not_found(id: Uuid) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no job {id}"))
}

/// Submit a job.
#[utoipa::path(post, path = "/v1/jobs", request_body = SubmitRequest, responses(
    (status = 202, description = "Accepted: recorded in the store's outbox, published right after (or by a relay)", body = JobResource),
    (status = 200, description = "The dedup key is held: the existing job", body = JobResource),
    (status = 400, description = "Malformed JSON", body = ErrorBody),
    (status = 409, description = "require_worker, and no worker runs the queue", body = ErrorBody),
    (status = 413, description = "Body over 1 MiB", body = ErrorBody),
    (status = 415, description = "Not Content-Type: application/json", body = ErrorBody),
    (status = 422, description = "Unknown class, bad arguments or options; names the field", body = ErrorBody),
    (status = 503, description = "Pub/Sub or the store is unavailable", body = ErrorBody)))]
pub(crate) async fn submit(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // JSON only: a form a foreign page posts (no preflight) never gets this far.
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("POST /v1/jobs takes Content-Type: application/json, not {content_type:?}"),
        )
        .field("content-type"));
    }
    let body = body.map_err(|e| {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                format!("request body over {} bytes", super::MAX_BODY_BYTES),
            )
        } else {
            ApiError::new(status, e.body_text())
        }
    })?;
    let mut de = serde_json::Deserializer::from_slice(&body);
    let req: SubmitRequest = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() {
            let err = ApiError::unprocessable(format!("field `{path}`: {inner}"));
            if path == "." {
                err
            } else {
                err.field(path)
            }
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, format!("malformed JSON: {inner}"))
        }
    })?;
    de.end().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("malformed JSON: data after the job object: {e}"),
        )
    })?;
    let require_worker = req.require_worker;
    let (env, dedup) = prepare(&state, req)?;
    if require_worker
        && crate::admin::workers_of(state.store.as_ref(), &env.queue_name)
            .await?
            .is_empty()
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "no worker runs queue {:?}: none reported to the store in the last 30 s (start `worker --queue {}` with this store); nothing was enqueued",
                env.queue_name, env.queue_name
            ),
        )
        .field("queue"));
    }
    let submission = {
        let submit = state.client.submit(env, dedup);
        #[cfg(feature = "opentelemetry")]
        if state.client.traced() {
            use tracing::Instrument;
            submit.instrument(request_span(&headers)).await?
        } else {
            submit.await?
        }
        #[cfg(not(feature = "opentelemetry"))]
        submit.await?
    };
    let record = match submission.record {
        Some(r) => *r,
        None => state
            .store
            .get(submission.job_id)
            .await?
            .ok_or_else(|| not_found(submission.job_id))?,
    };
    let status = if submission.existing {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let location = format!("/v1/jobs/{}", record.id);
    let mut resp = (status, Json(JobResource::from(record))).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// The server span of a traced `POST /v1/jobs`: a child of the request's `traceparent` header
/// when it has one (the caller's trace goes on into the job's), else a new trace.
#[cfg(feature = "opentelemetry")]
fn request_span(headers: &HeaderMap) -> tracing::Span {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let span = tracing::info_span!("request", otel.name = "POST /v1/jobs", otel.kind = "server",);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let parent = crate::telemetry::from_headers(
        header(crate::telemetry::TRACEPARENT),
        header(crate::telemetry::TRACESTATE),
    );
    let _ = span.set_parent(parent.unwrap_or_default());
    span.set_attribute("http.request.method", "POST");
    span.set_attribute("http.route", "/v1/jobs");
    span
}

/// Checks a submit request as `POST /v1/jobs` and the dashboard's Enqueue form do: the class,
/// the arguments (decoded once), the queue, the due time and the dedup options. Returns the
/// envelope to submit, or a 422 naming the field.
pub(crate) fn prepare(
    state: &ApiState,
    req: SubmitRequest,
) -> Result<(Envelope, Option<Dedup>), ApiError> {
    // Decoded once: checks the class and arguments, and gives the job's own queue.
    let job = state
        .registry
        .decode(&req.job_class, req.arguments.clone())
        .map_err(ApiError::from)?;
    let queue = match &req.queue {
        Some(q) => q.clone(),
        None => job.queue_erased().to_string(),
    };
    state
        .client
        .validate_queue(&queue)
        .map_err(ApiError::from)?;
    let scheduled_at = match (req.wait_seconds, req.scheduled_at) {
        (Some(_), Some(_)) => {
            return Err(
                ApiError::unprocessable("give wait_seconds or scheduled_at, not both")
                    .field("wait_seconds"),
            )
        }
        (Some(w), None) => {
            if !(w.is_finite() && w >= 0.0) {
                return Err(ApiError::unprocessable(format!(
                    "wait_seconds must be a number of seconds >= 0, not {w}"
                ))
                .field("wait_seconds"));
            }
            (w > 0.0).then(|| crate::envelope::due_after(Duration::from_secs_f64(w.min(1e12))))
        }
        (None, at) => at,
    };
    let dedup = match (&req.dedup_key, req.dedup_window_seconds) {
        (Some(k), w) => {
            if k.is_empty() || k.len() > 512 {
                return Err(
                    ApiError::unprocessable("dedup_key must be 1-512 characters")
                        .field("dedup_key"),
                );
            }
            super::plain_text("dedup_key", k)?;
            if let Some(w) = w.filter(|w| !(1..=MAX_DEDUP_WINDOW_SECS).contains(w)) {
                return Err(ApiError::unprocessable(format!(
                    "dedup_window_seconds must be 1-{MAX_DEDUP_WINDOW_SECS} (a year), not {w}"
                ))
                .field("dedup_window_seconds"));
            }
            Some(Dedup {
                key: k.clone(),
                window: w.map(Duration::from_secs).unwrap_or(DEFAULT_DEDUP_WINDOW),
            })
        }
        (None, Some(_)) => {
            return Err(
                ApiError::unprocessable("dedup_window_seconds needs a dedup_key")
                    .field("dedup_window_seconds"),
            )
        }
        (None, None) => None,
    };
    let dedup = match (dedup, &req.unique) {
        (Some(_), Some(_)) => {
            return Err(
                ApiError::unprocessable("give dedup_key or unique, not both").field("unique"),
            )
        }
        (None, Some(u)) => {
            let window = match u.period_seconds {
                None => DEFAULT_DEDUP_WINDOW,
                Some(p) if (1..=MAX_DEDUP_WINDOW_SECS).contains(&p) => Duration::from_secs(p),
                Some(p) => {
                    return Err(ApiError::unprocessable(format!(
                        "unique.period_seconds must be 1-{MAX_DEDUP_WINDOW_SECS} (a year), not {p}"
                    ))
                    .field("unique.period_seconds"))
                }
            };
            if let Some(fields) = &u.arguments {
                if fields.is_empty() || fields.iter().any(|f| f.is_empty()) {
                    return Err(ApiError::unprocessable(
                        "unique.arguments names top-level argument fields: at least one, none empty",
                    )
                    .field("unique.arguments"));
                }
                if let Some(f) = fields
                    .iter()
                    .find(|f| req.arguments.get(f.as_str()).is_none())
                {
                    return Err(ApiError::unprocessable(format!(
                        "unique.arguments names {f:?}, which the arguments lack"
                    ))
                    .field("unique.arguments"));
                }
            }
            let dedup = Dedup::by_arguments(
                &req.job_class,
                &queue,
                &req.arguments,
                u.arguments.as_deref(),
                window,
            )
            .map_err(ApiError::from)?;
            Some(dedup)
        }
        (dedup, None) => dedup,
    };
    let (most, key_chars, value_chars) = MAX_METADATA;
    if req.metadata.len() > most {
        return Err(ApiError::unprocessable(format!(
            "metadata may hold at most {most} pairs, not {}",
            req.metadata.len()
        ))
        .field("metadata"));
    }
    for (k, v) in &req.metadata {
        let field = format!("metadata.{k}");
        super::plain_text(&field, v)?;
        if k.is_empty() || k.chars().count() > key_chars {
            return Err(ApiError::unprocessable(format!(
                "metadata keys must be 1-{key_chars} characters"
            ))
            .field("metadata"));
        }
        if v.chars().count() > value_chars {
            return Err(ApiError::unprocessable(format!(
                "metadata values must be at most {value_chars} characters"
            ))
            .field(field));
        }
        super::plain_text("metadata", k)?;
    }
    let mut env = Envelope::new(&req.job_class, &queue, req.arguments);
    env.scheduled_at = scheduled_at;
    env.metadata = req.metadata;
    Ok((env, dedup))
}

fn etag(r: &JobRecord) -> String {
    format!("\"{}-{}\"", r.id.simple(), r.version)
}

fn cache_control(state: &ApiState, status: JobStatus) -> HeaderValue {
    // Finished jobs change no more (short of a morgue retry): a cache in front may keep them.
    // Live ones are cached a second, which absorbs polling several times a second. With auth on,
    // only private caches may keep them.
    let scope = if state.config.tokens.is_empty() {
        "public"
    } else {
        "private"
    };
    let age = if status.is_finished() { 3600 } else { 1 };
    HeaderValue::from_str(&format!("{scope}, max-age={age}"))
        .unwrap_or(HeaderValue::from_static("no-cache"))
}

/// A job's status and result.
#[utoipa::path(get, path = "/v1/jobs/{id}", params(("id" = Uuid, Path, description = "The job id")), responses(
    (status = 200, description = "The job", body = JobResource),
    (status = 304, description = "Not modified since the ETag in If-None-Match"),
    (status = 404, description = "No such job", body = ErrorBody)))]
pub(crate) async fn get_job(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let rec = state.store.get(id).await?.ok_or_else(|| not_found(id))?;
    let tag = etag(&rec);
    let cache = cache_control(&state, rec.status);
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut resp = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Json(JobResource::from(rec)).into_response()
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, cache);
    Ok(resp)
}

/// A job's history.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", params(("id" = Uuid, Path, description = "The job id")), responses(
    (status = 200, description = "Events, oldest first", body = EventsResponse),
    (status = 404, description = "No such job", body = ErrorBody)))]
pub(crate) async fn events(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<EventsResponse>, ApiError> {
    let id = parse_id(&id)?;
    if state.store.get(id).await?.is_none() {
        return Err(not_found(id));
    }
    Ok(Json(EventsResponse {
        job_id: id,
        events: state.store.events(id).await?,
    }))
}

/// A page of jobs, newest first.
#[utoipa::path(get, path = "/v1/jobs", params(ListParams), responses(
    (status = 200, description = "A page", body = JobList),
    (status = 422, description = "A bad filter", body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<ApiState>,
    super::ApiQuery(p): super::ApiQuery<ListParams>,
) -> Result<Json<JobList>, ApiError> {
    let page = state.store.list(p.to_query()?).await?;
    Ok(Json(JobList {
        jobs: page.jobs.into_iter().map(JobResource::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Cancels a job that has not started, through the operator layer (shared with
/// `POST /v1/jobs/{id}/cancel` and the dashboard).
pub(crate) async fn cancel_one(state: &ApiState, id: Uuid) -> Result<JobRecord, ApiError> {
    match admin::jobs::cancel(&state.client, id).await? {
        CancelOutcome::Cancelled(rec) => Ok(*rec),
        CancelOutcome::TooLate(rec) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "job {id} is {}: only pending, scheduled or retrying jobs can be cancelled",
                rec.status
            ),
        )),
        CancelOutcome::NotFound => Err(not_found(id)),
    }
}

/// Cancel a job that has not started.
#[utoipa::path(delete, path = "/v1/jobs/{id}", params(("id" = Uuid, Path, description = "The job id")), responses(
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

/// The outbox: jobs recorded but not published yet.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct OutboxResponse {
    /// How many.
    pub unpublished: u64,
    /// Seconds since the oldest was enqueued; null when none.
    pub oldest_age_seconds: Option<f64>,
}

pub(crate) fn outbox_age(s: &crate::store::OutboxStatus) -> Option<f64> {
    s.oldest
        .map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
}

/// How many recorded jobs are not published yet, and the oldest one's age (the relay publishes
/// them after its grace period).
#[utoipa::path(get, path = "/v1/outbox", responses(
    (status = 200, description = "The outbox", body = OutboxResponse)))]
pub(crate) async fn outbox(
    State(state): State<ApiState>,
) -> Result<Json<OutboxResponse>, ApiError> {
    let s = state.store.outbox_status().await?;
    Ok(Json(OutboxResponse {
        unpublished: s.unpublished,
        oldest_age_seconds: outbox_age(&s),
    }))
}

/// Jobs by status per queue.
#[utoipa::path(get, path = "/v1/queues", responses(
    (status = 200, description = "Counts", body = QueuesResponse)))]
pub(crate) async fn queues(
    State(state): State<ApiState>,
) -> Result<Json<QueuesResponse>, ApiError> {
    Ok(Json(QueuesResponse {
        queues: queue_counts(&state).await?,
    }))
}

/// Counts by status per queue, from the store's aggregates, queues by name.
pub(crate) async fn queue_counts(state: &ApiState) -> Result<Vec<QueueCounts>, ApiError> {
    let mut by_queue: BTreeMap<String, QueueCounts> = BTreeMap::new();
    for c in state.store.queue_counts().await? {
        let q = by_queue
            .entry(c.queue.clone())
            .or_insert_with(|| QueueCounts {
                queue: c.queue.clone(),
                counts: JobStatus::ALL
                    .iter()
                    .map(|s| (s.as_str().to_string(), 0))
                    .collect(),
                total: 0,
            });
        q.counts.insert(c.status.as_str().to_string(), c.count);
        q.total += c.count;
    }
    Ok(by_queue.into_values().collect())
}
