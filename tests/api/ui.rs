//! The dashboard over HTTP (`src/api/ui/`): security headers, the same-origin rule, sessions, the Periodic page. The browser tests are `worker/tests/ui.rs`.

use super::*;

#[tokio::test]
pub(crate) async fn the_dashboard_sends_security_headers_and_refuses_other_origins() {
    let s = Setup::sqlite(false, &[]).await;
    let r = s.http.get(s.url("/ui/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'")
            && csp.contains("script-src 'self'")
            && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-store");
    let body = r.text().await.unwrap();
    assert!(body.contains("<h1>Overview</h1>"));

    // Another origin may not change state, on the JSON API or the dashboard.
    let job = json!({"job_class": "ApiProbe", "queue": s.queue, "arguments": {"key": unique("o")}});
    for (name, value) in [
        ("origin", "http://evil.example"),
        ("sec-fetch-site", "cross-site"),
        ("origin", "null"),
    ] {
        let r = s
            .http
            .post(s.url("/v1/jobs"))
            .header(name, value)
            .json(&job)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{name}: {value}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], "forbidden");
        let r = s
            .http
            .post(s.url("/ui/enqueue"))
            .header(name, value)
            .form(&[("job_class", "ApiProbe")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "dashboard, {name}: {value}");
    }
    let host = s.base.trim_start_matches("http://").to_string();
    let r = s
        .http
        .post(s.url("/v1/jobs"))
        .header("origin", format!("http://{host}"))
        .header("sec-fetch-site", "same-origin")
        .json(&job)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "same origin passes");
    let (count, _) = (
        s.get(&format!("/v1/jobs/count?queue={}", s.queue)).await.1,
        (),
    );
    assert_eq!(count["count"], 1, "only the same-origin submit landed");

    // Whatever a path holds is escaped on the error page.
    let r = s
        .http
        .get(s.url("/ui/jobs/%3Cscript%3Ealert(1)%3C%2Fscript%3E"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body = r.text().await.unwrap();
    assert!(!body.contains("<script>alert"), "{body}");
    assert!(
        body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{body}"
    );
    s.stop().await;
}

#[tokio::test]
pub(crate) async fn dashboard_sessions_need_a_token_and_cannot_be_forged() {
    let s = Setup::sqlite(false, &["tok-one", "tok-two"]).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .get(s.url("/ui/jobs?status=morgued"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "/ui/login?next=%2Fui%2Fjobs%3Fstatus%3Dmorgued"
    );
    assert_eq!(
        http.get(s.url("/ui/login")).send().await.unwrap().status(),
        200,
        "the sign-in page is open"
    );
    // A wrong token: 401, no cookie.
    let r = http
        .post(s.url("/ui/login"))
        .form(&[("token", "nope"), ("next", "/ui/jobs")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    // The right one: a session, and never a redirect off the site.
    let r = http
        .post(s.url("/ui/login"))
        .form(&[("token", "tok-two"), ("next", "//evil.example/x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/ui/");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let r = http
        .get(s.url("/ui/jobs"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A forged or tampered session is refused.
    let (value, mac) = pair.split_once('.').unwrap();
    let forged = format!("{}9.{mac}", value);
    for c in [forged.as_str(), "pj_session=1999999999.00"] {
        let r = http
            .get(s.url("/ui/jobs"))
            .header("cookie", c)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{c}");
    }
    let r = http
        .post(s.url(&format!("/ui/jobs/{}/retry", uuid::Uuid::new_v4())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "an action without a session");
    // A bearer token works on the dashboard too (scripts, curl).
    let r = http
        .get(s.url("/ui/"))
        .bearer_auth("tok-one")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Signing out revokes the session itself: the same cookie, replayed, no longer works
    // (here, or on another `worker api` sharing the store).
    let r = http
        .post(s.url("/ui/logout"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let r = http
        .get(s.url("/ui/jobs"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "a signed-out session is refused");
    let r = http
        .post(s.url(&format!("/ui/jobs/{}/retry", uuid::Uuid::new_v4())))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a signed-out session cannot act");
    // A new sign-in still works.
    let r = http
        .post(s.url("/ui/login"))
        .form(&[("token", "tok-one"), ("next", "/ui/")])
        .send()
        .await
        .unwrap();
    let again = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let again = again.split(';').next().unwrap().to_string();
    assert_ne!(again, pair);
    let r = http
        .get(s.url("/ui/jobs"))
        .header("cookie", &again)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.stop().await;
}

#[tokio::test]
pub(crate) async fn the_periodic_page_pauses_resumes_and_runs_an_entry() {
    let s = Setup::sqlite(false, &[]).await;
    let store = s.client.store().unwrap().clone();
    let name = unique("nightly <b>report</b>");
    store
        .register_periodic(&[pubsub_jobs::store::PeriodicDefinition {
            name: name.clone(),
            schedule: "0 3 * * *".into(),
            timezone: "Europe/Paris".into(),
            job_class: "ApiProbe".into(),
            queue: s.queue.clone(),
            arguments: json!({"key": unique("nightly")}),
        }])
        .await
        .unwrap();
    let page = s
        .http
        .get(s.url("/ui/periodic"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("0 3 * * *") && page.contains("Europe/Paris"),
        "{page}"
    );
    assert!(!page.contains("<b>report</b>") && page.contains("&lt;b&gt;report&lt;/b&gt;"));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let path = |action: &str| {
        let enc: String = name
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'-' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        s.url(&format!("/ui/periodic/{enc}/{action}"))
    };
    let paused = |st: &Vec<pubsub_jobs::store::PeriodicState>| {
        st.iter()
            .find(|e| e.definition.name == name)
            .unwrap()
            .paused
    };
    let r = http.post(path("pause")).send().await.unwrap();
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["location"].to_str().unwrap()
        ),
        (303, "/ui/periodic?done=paused")
    );
    assert!(paused(&store.periodic_entries().await.unwrap()));
    http.post(path("resume")).send().await.unwrap();
    assert!(!paused(&store.periodic_entries().await.unwrap()));
    let r = http.post(path("run")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let job_page = r.headers()["location"].to_str().unwrap().to_string();
    let id = job_page
        .trim_start_matches("/ui/jobs/")
        .trim_end_matches("?done=ran");
    let (code, job) = s.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(
        (code, job["job_class"].as_str(), job["queue"].as_str()),
        (200, Some("ApiProbe"), Some(s.queue.as_str()))
    );
    assert_eq!(
        http.post(s.url("/ui/periodic/no-such-entry/pause"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    s.stop().await;
}
