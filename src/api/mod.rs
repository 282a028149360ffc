//! The HTTP API: jobs from any language. Submit (`POST /v1/jobs`), poll status and result
//! (`GET /v1/jobs/{id}`, with ETag and Cache-Control for fast polling), history
//! (`/v1/jobs/{id}/events`), list, cancel (`DELETE`), counts per queue, periodic entries
//! (`/v1/periodic`: list, pause, resume, run now), `/healthz`, `/metrics`
//! (Prometheus) and `/openapi.json`. It publishes through a [`Client`] with a job store and reads
//! the store; workers with the same store record what happens. Served by `worker api`.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use pubsub_jobs::{api, store, Client};
//! let store = store::connect("sqlite://jobs.db").await?;
//! let client = Client::from_env().await?.with_store(store);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let state = api::ApiState::new(client, api::ApiConfig::from_env()?)?;
//! api::serve(listener, state, tokio_util::sync::CancellationToken::new()).await?;
//! # Ok(()) }
//! ```

mod actions;
mod host;
mod jobs;
mod live;
mod metrics;
mod openapi;
mod periodic;
mod server;
mod ui;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::registry::Registry;
use crate::store::JobStore;
use crate::Client;

pub use openapi::ApiDoc;
pub use server::{parse_seconds, ServerLimits};

/// The largest request body: 1 MiB.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// API settings.
#[derive(Clone, Debug, Default)]
pub struct ApiConfig {
    /// Bearer tokens; when not empty, every request but `/healthz` must carry one.
    pub tokens: Vec<String>,
    /// Host names served besides IP addresses and loopback names (`jobs.internal`, or
    /// `.example.com` for a domain and its subdomains); with tokens, the only ones served when
    /// set. A request naming another host gets 421 (against DNS rebinding; see the security
    /// notes in the API guide).
    pub allowed_hosts: Vec<String>,
    /// The HTTP server's timeouts and connection cap.
    pub limits: ServerLimits,
}

impl ApiConfig {
    /// From `PUBSUB_JOBS_API_TOKENS` and `PUBSUB_JOBS_API_ALLOWED_HOSTS` (comma-separated), and
    /// the server limits from theirs ([`ServerLimits::from_env`]); a bad limit is an error
    /// naming its variable.
    pub fn from_env() -> crate::Result<Self> {
        let list = |var: &str| parse_tokens(&std::env::var(var).unwrap_or_default());
        Ok(Self {
            tokens: list("PUBSUB_JOBS_API_TOKENS"),
            allowed_hosts: list("PUBSUB_JOBS_API_ALLOWED_HOSTS"),
            limits: ServerLimits::from_env()?,
        })
    }
}

/// Splits a comma-separated token list, dropping blanks.
pub fn parse_tokens(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    pub(crate) client: Client,
    pub(crate) store: Arc<dyn JobStore>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) config: Arc<ApiConfig>,
    /// Signs dashboard sessions (derived from the tokens).
    pub(crate) session_key: [u8; 32],
    /// Cancelled when the server stops: long answers (a job's event stream) end then.
    pub(crate) stopping: CancellationToken,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// The state for a client that has a job store.
    pub fn new(client: Client, config: ApiConfig) -> crate::Result<Self> {
        let store = client
            .store()
            .cloned()
            .ok_or_else(|| crate::Error::StoreRequired {
                what: "the HTTP API".into(),
            })?;
        Ok(Self {
            client,
            store,
            registry: Arc::new(Registry::from_inventory()?),
            session_key: ui::session::key(&config.tokens),
            config: Arc::new(config),
            stopping: CancellationToken::new(),
        })
    }

    /// Accepts the job classes of `registry` instead of those registered with
    /// [`register_job!`](crate::register_job) (the default).
    pub fn with_registry(mut self, registry: Registry) -> crate::Result<Self> {
        self.registry = Arc::new(registry.check()?);
        Ok(self)
    }
}

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/jobs", get(jobs::list).post(jobs::submit))
        .route("/v1/jobs/count", get(actions::count))
        .route("/v1/jobs/bulk", post(actions::bulk))
        .route("/v1/jobs/{id}", get(jobs::get_job).delete(jobs::cancel))
        .route("/v1/jobs/{id}/retry", post(actions::retry))
        .route("/v1/jobs/{id}/delete", post(actions::delete))
        .route("/v1/jobs/{id}/cancel", post(actions::cancel))
        .route("/v1/stats", get(actions::stats))
        .route("/v1/classes", get(actions::classes))
        .route("/v1/jobs/{id}/events", get(jobs::events))
        .route("/v1/jobs/{id}/logs", get(live::logs))
        .route("/v1/jobs/{id}/stream", get(live::stream))
        .route("/v1/queues", get(jobs::queues))
        .route("/v1/outbox", get(jobs::outbox))
        .route("/v1/periodic", get(periodic::list))
        .route("/v1/periodic/{name}/pause", post(periodic::pause))
        .route("/v1/periodic/{name}/resume", post(periodic::resume))
        .route("/v1/periodic/{name}/run", post(periodic::run_now))
        .route("/metrics", get(metrics::metrics))
        .route("/openapi.json", get(openapi::spec))
        .route("/healthz", get(healthz))
        .merge(ui::router(state.clone()))
        .layer(axum::middleware::from_fn_with_state(
            state.config.limits.body_read_timeout,
            server::body_in_time,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth))
        .layer(axum::middleware::from_fn(same_origin))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            known_host,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown`, then finishes requests in flight and the
/// publishes of jobs they submitted ([`Client::flush`]). The server's timeouts and connection
/// cap are the config's [`ServerLimits`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let limits = state.config.limits.clone();
    tracing::info!(
        addr = %listener.local_addr()?,
        auth = !state.config.tokens.is_empty(),
        header_timeout_s = limits.header_read_timeout.as_secs_f64(),
        body_timeout_s = limits.body_read_timeout.as_secs_f64(),
        max_connections = limits.max_connections,
        "HTTP API listening"
    );
    let client = state.client.clone();
    let mut state = state;
    state.stopping = shutdown.clone();
    let served = server::run(listener, router(state), &limits, shutdown).await;
    client.flush().await;
    served
}

/// A query string decoded as `T`, or a `422` in the JSON error shape naming the parameter
/// (axum's `Query` answers in plain text).
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S>
    for ApiQuery<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                let field = e.path().to_string();
                let err =
                    ApiError::unprocessable(format!("query parameter `{field}`: {}", e.inner()));
                if field == "." {
                    err
                } else {
                    err.field(field)
                }
            })
    }
}

/// Refuses a text parameter holding a control character (a NUL byte would fail in
/// PostgreSQL and match everything in SQLite's LIKE): `422` naming `field`.
pub(crate) fn plain_text(field: &str, value: &str) -> Result<(), ApiError> {
    if value.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(format!(
            "{field} must not contain control characters (such as NUL)"
        ))
        .field(field));
    }
    Ok(())
}

/// An error answer: `{"error": {"code", "message", "field"?}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

/// The body of an error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable code: bad_request, unauthorized, forbidden, not_found, conflict, payload_too_large,
    /// unprocessable, unavailable, misdirected, request_timeout, unsupported_media_type, internal.
    pub code: String,
    /// A message naming what is wrong.
    pub message: String,
    /// The field path, when one field is wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let code = match status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            StatusCode::MISDIRECTED_REQUEST => "misdirected",
            StatusCode::REQUEST_TIMEOUT => "request_timeout",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            _ => "internal",
        };
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub(crate) fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub(crate) fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), error = %self.message, "API request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                field: self.field,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        use crate::Error as E;
        let status = match &e {
            E::InvalidQueueName { .. }
            | E::PayloadTooLarge { .. }
            | E::DelayTooLong { .. }
            | E::UnknownJobClass { .. }
            | E::InvalidArguments { .. }
            | E::Serialize { .. }
            | E::QueueMissing { .. }
            | E::AttributeTooLong { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            E::Broker { .. } | E::Timeout { .. } | E::Connect { .. } | E::Store(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let field = match &e {
            E::InvalidQueueName { .. } | E::QueueMissing { .. } => Some("queue".to_string()),
            E::UnknownJobClass { .. } => Some("job_class".to_string()),
            E::InvalidArguments { path, .. } => Some(match path {
                Some(p) => format!("arguments.{p}"),
                None => "arguments".to_string(),
            }),
            _ => None,
        };
        let mut err = ApiError::new(status, e.to_string());
        err.field = field;
        err
    }
}

/// Refuses a request whose `Host` is not served (see `host.rs`) with 421, before anything else.
async fn known_host(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .map(|v| v.to_str().unwrap_or(""));
    if !host::allowed(
        host,
        !state.config.tokens.is_empty(),
        &state.config.allowed_hosts,
    ) {
        tracing::warn!(event = "api.host_refused", host = host.unwrap_or(""), path = %req.uri().path(), "request for a host this API does not serve refused");
        return ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "host {:?} is not served here: without tokens only IP addresses and localhost are; \
                 add it with --allowed-hosts (PUBSUB_JOBS_API_ALLOWED_HOSTS)",
                host.unwrap_or("")
            ),
        )
        .into_response();
    }
    next.run(req).await
}

/// Refuses state-changing requests from another origin (see `ui/session.rs`), for the JSON
/// API and the dashboard alike.
async fn same_origin(req: Request, next: Next) -> Response {
    if ui::session::cross_origin(req.method(), req.headers()) {
        tracing::warn!(event = "api.cross_origin_refused", method = %req.method(), path = %req.uri().path(), "cross-origin request refused");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "cross-origin request refused: state-changing requests must come from this origin",
        )
        .into_response();
    }
    next.run(req).await
}

/// True when the request carries one of the configured bearer tokens.
pub(crate) fn has_bearer(state: &ApiState, headers: &axum::http::HeaderMap) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    given.is_some_and(|g| {
        state
            .config
            .tokens
            .iter()
            .any(|t| constant_time_eq(t.as_bytes(), g.as_bytes()))
    })
}

/// Bearer-token check: on when tokens are configured; `/healthz` stays open for probes, and
/// the dashboard (`/ui`) checks its own sessions.
async fn auth(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if state.config.tokens.is_empty()
        || path == "/healthz"
        || path == "/"
        || path == "/ui"
        || path.starts_with("/ui/")
    {
        return next.run(req).await;
    }
    if has_bearer(&state, req.headers()) {
        next.run(req).await
    } else {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required (Authorization: Bearer TOKEN)",
        )
        .into_response()
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Health: 200 when the store answers, 503 otherwise.
#[utoipa::path(get, path = "/healthz", security(()), responses(
    (status = 200, description = "The API and its store are up"),
    (status = 503, description = "The store does not answer", body = ErrorBody)))]
pub(crate) async fn healthz(State(state): State<ApiState>) -> Result<Response, ApiError> {
    state.store.ping().await?;
    Ok(Json(serde_json::json!({ "status": "ok" })).into_response())
}
