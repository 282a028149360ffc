//! Dashboard sessions and request origin checks.
//!
//! With API tokens configured, an operator signs in once with a token; the dashboard then keeps
//! a session cookie `pj_session=EXPIRES.ID.MAC`: MAC is HMAC-SHA256 of the expiry and the
//! session's random id under a key derived from the tokens, so every `worker api` with the same
//! tokens accepts it, and changing the tokens signs everyone out. An expiry further out than
//! [`SESSION_SECONDS`] is refused. Signing out records the id in the store
//! (`pj_revoked_sessions`), which every `worker api` on that store checks: the cookie is dead
//! everywhere, even if it was copied before. The cookie is `HttpOnly` (scripts cannot read it)
//! and `SameSite=Strict` (other sites' requests do not carry it).
//!
//! State-changing requests (anything but GET, HEAD, OPTIONS) from another origin are refused
//! on the dashboard and the JSON API alike, as Sidekiq 8 does: `Sec-Fetch-Site` must be
//! `same-origin` or `none` when the browser sends it, else `Origin` must match `Host`.
//! Clients that send neither (curl, SDKs) are not browsers and pass.

use axum::http::{header, HeaderMap, Method};
use chrono::Utc;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The cookie's name.
pub(crate) const COOKIE: &str = "pj_session";

/// How long a session lasts.
pub(crate) const SESSION_SECONDS: i64 = 12 * 3600;

/// The key sessions are signed with: derived from every configured token.
pub(crate) fn key(tokens: &[String]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"pubsub-jobs dashboard session v1");
    for t in tokens {
        h.update((t.len() as u64).to_be_bytes());
        h.update(t.as_bytes());
    }
    h.finalize().into()
}

fn mac(key: &[u8; 32], expires: i64, id: &str) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(format!("session|{expires}|{id}").as_bytes());
    m.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A session a cookie holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Session {
    /// Its random id (what sign-out revokes).
    pub id: String,
    /// When it ends, epoch seconds.
    pub expires: i64,
}

/// A new session's cookie value, valid for [`SESSION_SECONDS`] from `now` (epoch seconds).
pub(crate) fn issue(key: &[u8; 32], now: i64) -> String {
    let expires = now + SESSION_SECONDS;
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{expires}.{id}.{}", mac(key, expires, &id))
}

/// The session `value` holds if this key signed it and it is live at `now`: not expired, and
/// not ending further out than a session lasts.
pub(crate) fn parse(key: &[u8; 32], value: &str, now: i64) -> Option<Session> {
    let mut parts = value.splitn(3, '.');
    let expires = parts.next()?.parse::<i64>().ok()?;
    let id = parts.next()?;
    let given = parts.next()?;
    let live = expires > now && expires <= now.saturating_add(SESSION_SECONDS);
    let signed = super::super::constant_time_eq(mac(key, expires, id).as_bytes(), given.as_bytes());
    (live && signed && !id.is_empty()).then(|| Session {
        id: id.to_string(),
        expires,
    })
}

/// True when `value` is a live session this key signed (revocation aside: see [`signed_in`]).
#[cfg(test)]
pub(crate) fn valid(key: &[u8; 32], value: &str, now: i64) -> bool {
    parse(key, value, now).is_some()
}

/// The session cookie's value in the request, if any.
pub(crate) fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// The request's session, if it carries a live one this key signed.
pub(crate) fn session(headers: &HeaderMap, key: &[u8; 32]) -> Option<Session> {
    cookie(headers).and_then(|c| parse(key, &c, Utc::now().timestamp()))
}

/// True when the request carries a live session that was not signed out (checked in the
/// store, so a sign-out holds on every server sharing it; a store that cannot answer counts
/// as signed out).
pub(crate) async fn signed_in(
    headers: &HeaderMap,
    key: &[u8; 32],
    store: &dyn crate::store::JobStore,
) -> bool {
    let Some(s) = session(headers, key) else {
        return false;
    };
    match store.session_revoked(&s.id).await {
        Ok(revoked) => !revoked,
        Err(e) => {
            tracing::warn!(error = %e, "could not check the dashboard session; treated as signed out");
            false
        }
    }
}

/// The `Set-Cookie` value of a new session (`Secure` when the request came over https).
pub(crate) fn set_cookie(value: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; Path=/; Max-Age={SESSION_SECONDS}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends the session.
pub(crate) fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict")
}

/// True when a state-changing request comes from another origin (see the module docs).
pub(crate) fn cross_origin(method: &Method, headers: &HeaderMap) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return false;
    }
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    match (get("origin"), get("host")) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => {
            let origin_host = origin
                .split_once("://")
                .map_or(origin, |(_, rest)| rest)
                .trim_end_matches('/');
            !origin_host.eq_ignore_ascii_case(host)
        }
        (Some(_), None) => true,
        (None, _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn sessions_expire_and_cannot_be_forged() {
        let k = key(&["secret".into()]);
        let now = 1_700_000_000;
        let s = issue(&k, now);
        assert!(valid(&k, &s, now));
        assert!(valid(&k, &s, now + SESSION_SECONDS - 1));
        assert!(!valid(&k, &s, now + SESSION_SECONDS), "expired");
        let (exp, rest) = s.split_once('.').unwrap();
        let later = exp.parse::<i64>().unwrap() + 86_400;
        assert!(!valid(&k, &format!("{later}.{rest}"), now), "expiry moved");
        let (id, m) = rest.split_once('.').unwrap();
        assert!(!valid(&k, &format!("{exp}.{id}x.{m}"), now), "id changed");
        // A session signed with an expiry years ahead (a leaked key, an old build) is refused.
        let far = now + 10 * 365 * 86_400;
        let id = "0123456789abcdef";
        assert!(
            !valid(&k, &format!("{far}.{id}.{}", mac(&k, far, id)), now),
            "too long"
        );
        assert!(valid(
            &k,
            &format!("{}.{id}.{}", now + 60, mac(&k, now + 60, id)),
            now
        ));
        assert!(!valid(&k, "garbage", now));
        assert!(!valid(&key(&["other".into()]), &s, now), "other tokens");
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; pj_session=123.abc; b=2")]);
        assert_eq!(cookie(&h).as_deref(), Some("123.abc"));
        assert_eq!(cookie(&headers(&[("cookie", "a=1")])), None);
    }

    #[test]
    fn only_same_origin_browsers_may_change_state() {
        let post = Method::POST;
        assert!(!cross_origin(
            &Method::GET,
            &headers(&[("sec-fetch-site", "cross-site")])
        ));
        assert!(cross_origin(
            &post,
            &headers(&[("sec-fetch-site", "cross-site")])
        ));
        assert!(cross_origin(
            &post,
            &headers(&[("sec-fetch-site", "same-site")])
        ));
        assert!(!cross_origin(
            &post,
            &headers(&[("sec-fetch-site", "same-origin")])
        ));
        assert!(!cross_origin(
            &post,
            &headers(&[("sec-fetch-site", "none")])
        ));
        assert!(!cross_origin(
            &post,
            &headers(&[
                ("origin", "http://127.0.0.1:8080"),
                ("host", "127.0.0.1:8080")
            ])
        ));
        assert!(cross_origin(
            &post,
            &headers(&[
                ("origin", "http://evil.example"),
                ("host", "127.0.0.1:8080")
            ])
        ));
        assert!(cross_origin(
            &post,
            &headers(&[("origin", "null"), ("host", "x")])
        ));
        assert!(!cross_origin(&post, &headers(&[])), "curl sends neither");
    }
}
