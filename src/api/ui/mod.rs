//! The web dashboard at `/ui/`, served by `worker api` beside the JSON API: same port, same
//! store, same tokens. Pages are rendered on the server from the store (see
//! `docs/ARCHITECTURE.md`, "The dashboard: rendered on the server"); one stylesheet and one
//! small script (live refresh) are embedded in the binary, so it needs no CDN, no Node and no
//! internet.
//!
//! - `mod.rs` (this file): routes, and the guard every page passes (session, security headers).
//! - `session.rs`: sign-in sessions and the same-origin rule for state-changing requests.
//! - `html.rs`: escaping, layout, times, the chart.
//! - `pages.rs`: the pages and their forms.

mod html;
mod pages;
pub(crate) mod session;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use super::ApiState;

/// The Content-Security-Policy of every page: nothing but this origin's stylesheet, script,
/// images and form targets; no inline script or style; never framed.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

/// The dashboard's routes (under `/ui`), guarded.
pub(crate) fn router(state: ApiState) -> Router<ApiState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(pages::overview))
        .route("/ui/jobs", get(pages::jobs))
        .route("/ui/jobs/{id}", get(pages::job))
        .route("/ui/jobs/{id}/{action}", post(pages::job_action))
        .route("/ui/scheduled", get(pages::scheduled))
        .route("/ui/morgue", get(pages::morgue))
        .route("/ui/bulk", get(pages::bulk_confirm).post(pages::bulk_apply))
        .route("/ui/periodic", get(pages::periodic))
        .route("/ui/periodic/{name}/{action}", post(pages::periodic_action))
        .route("/ui/enqueue", get(pages::enqueue_form).post(pages::enqueue))
        .route("/ui/login", get(pages::login_form).post(pages::login))
        .route("/ui/logout", post(pages::logout))
        .route(
            "/ui/assets/app.css",
            get(|| async { asset("text/css; charset=utf-8", CSS) }),
        )
        .route(
            "/ui/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", JS) }),
        )
        .layer(axum::middleware::from_fn_with_state(state, guard))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// Every dashboard request: with tokens, a session (or a bearer token) is required but for the
/// sign-in page and the assets (a page redirects to sign-in, an action gets 401); every answer
/// carries the security headers.
async fn guard(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let open = path == "/ui/login" || path.starts_with("/ui/assets/") || path == "/";
    let allowed = state.config.tokens.is_empty()
        || open
        || super::has_bearer(&state, req.headers())
        || session::signed_in(req.headers(), &state.session_key, state.store.as_ref()).await;
    let mut resp = if allowed {
        next.run(req).await
    } else if req.method() == Method::GET || req.method() == Method::HEAD {
        let next_url = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/ui/".into());
        Redirect::to(&format!(
            "/ui/login{}",
            html::query(&[("next", Some(&next_url))])
        ))
        .into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "sign in first: this dashboard needs a session (GET /ui/login)",
        )
            .into_response()
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !path.starts_with("/ui/assets/") {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}
