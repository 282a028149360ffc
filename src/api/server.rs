//! The HTTP server under the API and the dashboard: hyper's HTTP/1.1 with limits that an idle,
//! slow or greedy client cannot get around ([`ServerLimits`]): a request head must arrive within
//! the header timeout (counted from the connection's start, and on a kept-alive connection from
//! the end of the previous answer, so it is the idle timeout too), a body within the body
//! timeout, and at most `max_connections` connections are open at once (the next one waits in
//! the listen backlog until one closes).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{ApiError, MAX_BODY_BYTES};

/// Timeouts and the connection cap of the HTTP server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// A request's head (request line and headers) must arrive within this, counted from the
    /// connection's start or the end of the previous answer: slowloris and idle keep-alive
    /// connections are closed after it (default 10 s).
    pub header_read_timeout: Duration,
    /// A request's body must arrive within this once its head has; else `408` (default 30 s).
    pub body_read_timeout: Duration,
    /// Connections open at once, at most (default 1,024); more wait to be accepted.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

impl ServerLimits {
    /// The defaults, overridden by `PUBSUB_JOBS_API_HEADER_TIMEOUT` and
    /// `PUBSUB_JOBS_API_BODY_TIMEOUT` (seconds) and `PUBSUB_JOBS_API_MAX_CONNECTIONS`; a value
    /// that is not a positive number is an error naming the variable.
    pub fn from_env() -> crate::Result<Self> {
        let mut limits = Self::default();
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if let Some(v) = var("PUBSUB_JOBS_API_HEADER_TIMEOUT") {
            limits.header_read_timeout = parse_seconds("PUBSUB_JOBS_API_HEADER_TIMEOUT", &v)?;
        }
        if let Some(v) = var("PUBSUB_JOBS_API_BODY_TIMEOUT") {
            limits.body_read_timeout = parse_seconds("PUBSUB_JOBS_API_BODY_TIMEOUT", &v)?;
        }
        if let Some(v) = var("PUBSUB_JOBS_API_MAX_CONNECTIONS") {
            limits.max_connections = v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    crate::Error::Config(format!(
                        "PUBSUB_JOBS_API_MAX_CONNECTIONS={v:?} is not a positive whole number"
                    ))
                })?;
        }
        limits.check()?;
        Ok(limits)
    }

    /// Every limit is positive (a zero would refuse every request).
    pub fn check(&self) -> crate::Result<()> {
        if self.header_read_timeout.is_zero()
            || self.body_read_timeout.is_zero()
            || self.max_connections == 0
        {
            return Err(crate::Error::Config(format!(
                "HTTP server limits must be positive: {self:?}"
            )));
        }
        Ok(())
    }
}

/// Seconds (a positive number, fractions allowed) from a setting named `name`.
pub fn parse_seconds(name: &str, value: &str) -> crate::Result<Duration> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            crate::Error::Config(format!(
                "{name}={value:?} is not a number of seconds between 0 and 86400"
            ))
        })
}

/// Reads a request's body within the body timeout (and at most [`MAX_BODY_BYTES`]) before the
/// handler runs, so that a slow body ties up no handler and gets `408`.
pub(crate) async fn body_in_time(
    State(timeout): State<Duration>,
    req: Request,
    next: Next,
) -> Response {
    if axum::body::HttpBody::is_end_stream(req.body()) {
        // No body to wait for (a GET): nothing to buffer.
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body is over the limit of {MAX_BODY_BYTES} bytes"),
                )
                .into_response()
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("could not read the request body: {e}"),
                )
                .into_response()
            }
        }
        Err(_) => {
            tracing::warn!(event = "api.body_timeout", path = %parts.uri.path(), timeout_s = timeout.as_secs_f64(), "request body not received in time");
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {:.1} s (PUBSUB_JOBS_API_BODY_TIMEOUT)",
                    timeout.as_secs_f64()
                ),
            )
            .into_response()
        }
    }
}

/// Serves `app` on `listener` until `shutdown`; then stops accepting, lets the requests in
/// flight finish and closes idle connections.
pub(crate) async fn run(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: &ServerLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            p = open.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.cancelled() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors and the like: wait a little instead of spinning.
                tracing::error!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "HTTP connection closed with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
