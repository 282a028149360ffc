//! Bearer tokens (`src/api/mod.rs`): everything but `/healthz` needs one.

use super::*;

#[tokio::test]
pub(crate) async fn bearer_tokens_guard_everything_but_healthz() {
    let s = Setup::sqlite(false, &["s3cret", "other"]).await;
    assert_eq!(s.get("/healthz").await.0, 200);
    let r = s.http.get(s.url("/v1/queues")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = s
        .http
        .get(s.url("/v1/queues"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = s
        .http
        .post(s.url("/v1/jobs"))
        .json(&json!({"job_class": "ApiProbe", "arguments": {"key": "x"}, "queue": s.queue}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        401,
        "unauthenticated submits are refused"
    );
    for t in ["s3cret", "other"] {
        let r = s
            .http
            .get(s.url("/v1/queues"))
            .bearer_auth(t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let r = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    s.stop().await;
}

/// DNS rebinding: without tokens, a request naming another host (a page that pointed its own
/// name at 127.0.0.1) is refused with 421 before anything runs, even when the browser calls it
/// same-origin; IP addresses and localhost are served. With tokens, any name is served (the
/// token is the guard) unless an allowlist is set.
#[tokio::test]
pub(crate) async fn without_tokens_only_local_hosts_are_served() {
    let s = Setup::sqlite(false, &[]).await;
    let port = s.base.rsplit(':').next().unwrap().to_string();
    let evil = format!("rebind.evil.example:{port}");
    let submit =
        json!({"job_class": "ApiProbe", "arguments": {"key": unique("rebind")}, "queue": s.queue});
    for (method, path) in [
        ("POST", "/v1/jobs"),
        ("GET", "/v1/jobs"),
        ("GET", "/ui/"),
        ("GET", "/healthz"),
    ] {
        let req = match method {
            "POST" => s.http.post(s.url(path)).json(&submit),
            _ => s.http.get(s.url(path)),
        };
        let r = req
            .header("host", &evil)
            .header("origin", format!("http://{evil}"))
            .header("sec-fetch-site", "same-origin")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 421, "{method} {path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "misdirected", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("rebind.evil.example"),
            "{body}"
        );
    }
    // Nothing was submitted.
    let (code, count) = s.get(&format!("/v1/jobs/count?queue={}", s.queue)).await;
    assert_eq!((code, count["count"].as_u64()), (200, Some(0)), "{count}");
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let r = s
            .http
            .get(s.url("/v1/queues"))
            .header("host", &host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{host}");
    }
    s.stop().await;

    let s = Setup::sqlite(false, &["s3cret"]).await;
    let r = s
        .http
        .get(s.url("/v1/queues"))
        .header("host", "jobs.example.com")
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "with tokens any name is served");
    s.stop().await;
}
