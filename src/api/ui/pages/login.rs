//! Sign in and out.

use super::*;

/// The sign-in form's fields.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct LoginForm {
    token: Option<String>,
    next: Option<String>,
}

pub(super) fn login_page(next: &str, error: bool) -> Response {
    let err = if error {
        "<p class=\"error\" id=\"token-error\" role=\"alert\">That token is not one of this API's.</p>"
    } else {
        ""
    };
    let invalid = if error {
        " aria-invalid=\"true\" aria-describedby=\"token-error\""
    } else {
        ""
    };
    let body = format!(
        "<form class=\"stack\" method=\"post\" action=\"/ui/login\">\
         <label for=\"token\">API token</label><input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus{invalid}>{err}\
         <input type=\"hidden\" name=\"next\" value=\"{}\"><div><button type=\"submit\" class=\"primary\">Sign in</button></div></form>",
        esc(next)
    );
    let l = Layout {
        title: "Sign in",
        nav: "",
        signed_in: false,
        live: false,
        flash: None,
    };
    let status = if error {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    (status, Html(page(l, &body))).into_response()
}

/// `GET /ui/login`.
pub(crate) async fn login_form(
    State(state): State<ApiState>,
    Query(f): Query<LoginForm>,
) -> Response {
    if state.config.tokens.is_empty() {
        return Redirect::to("/ui/").into_response();
    }
    login_page(&safe_back(f.next.as_deref(), "/ui/"), false)
}

/// `POST /ui/login`: a valid token starts a session and returns to the page asked for.
pub(crate) async fn login(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = safe_back(f.next.as_deref(), "/ui/");
    if state.config.tokens.is_empty() {
        return Redirect::to(&next).into_response();
    }
    let given = f.token.as_deref().unwrap_or("").trim().to_string();
    let ok = state
        .config
        .tokens
        .iter()
        .any(|t| crate::api::constant_time_eq(t.as_bytes(), given.as_bytes()));
    if !ok {
        tracing::warn!(
            event = "ui.sign_in_refused",
            "dashboard sign-in with a wrong token"
        );
        return login_page(&next, true);
    }
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let cookie = session::set_cookie(
        &session::issue(&state.session_key, Utc::now().timestamp()),
        secure,
    );
    let mut resp = Redirect::to(&next).into_response();
    if let Ok(v) = cookie.parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// `POST /ui/logout`: the session is revoked in the store (dead on every server sharing it)
/// and its cookie cleared.
pub(crate) async fn logout(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Some(s) = session::session(&headers, &state.session_key) {
        let expires = chrono::DateTime::from_timestamp(s.expires, 0).unwrap_or_else(Utc::now);
        match state.store.revoke_session(&s.id, expires).await {
            Ok(()) => tracing::info!(event = "ui.signed_out", "dashboard session signed out"),
            Err(e) => tracing::warn!(
                error = %e,
                "could not revoke the dashboard session in the store; only its cookie is cleared"
            ),
        }
    }
    let mut resp = Redirect::to("/ui/login").into_response();
    if let Ok(v) = session::clear_cookie().parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}
