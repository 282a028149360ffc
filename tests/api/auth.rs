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
