//! `/metrics`, the OpenAPI document (`src/api/openapi.rs`) and `/healthz`.

use super::*;

#[tokio::test]
pub(crate) async fn metrics_openapi_and_health() {
    let s = Setup::sqlite(true, &[]).await;
    let (_, job) = s
        .submit(json!({"job_class": "ApiProbe", "arguments": {"key": unique("m"), "sleep_ms": 20}, "queue": s.queue}))
        .await;
    s.poll(
        job["id"].as_str().unwrap(),
        status_is("succeeded"),
        Duration::from_secs(30),
    )
    .await;
    let r = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    assert!(
        text.contains(&format!(
            "pubsub_jobs_jobs{{queue=\"{}\",status=\"succeeded\"}} 1",
            s.queue
        )),
        "{text}"
    );
    assert!(
        text.contains("pubsub_jobs_events_total{event=\"succeeded\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("pubsub_jobs_run_seconds_bucket{le=\"+Inf\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("pubsub_jobs_queue_latency_seconds_count 1"),
        "{text}"
    );
    let (code, spec) = s.get("/openapi.json").await;
    assert_eq!(code, 200);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for p in [
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/events",
        "/v1/queues",
        "/healthz",
        "/metrics",
    ] {
        assert!(
            spec["paths"][p].is_object(),
            "{p} missing from the OpenAPI document"
        );
    }
    assert!(spec["paths"]["/v1/jobs"]["post"]["responses"]["422"].is_object());
    assert!(spec["components"]["schemas"]["JobResource"].is_object());
    let (code, health) = s.get("/healthz").await;
    assert_eq!((code, health["status"].as_str()), (200, Some("ok")));
    s.stop().await;
}
