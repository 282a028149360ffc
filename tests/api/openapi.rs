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

#[tokio::test]
pub(crate) async fn the_openapi_document_declares_what_the_server_does() {
    let s = Setup::sqlite(false, &[]).await;
    let (code, spec) = s.get("/openapi.json").await;
    assert_eq!(code, 200);
    // Every request needs the bearer token when tokens are configured, but /healthz.
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(spec["security"], json!([{"bearer": []}]));
    assert_eq!(spec["paths"]["/healthz"]["get"]["security"], json!([{}]));
    let methods = ["get", "post", "delete", "put", "patch"];
    let mut operations = 0;
    for (path, item) in spec["paths"].as_object().expect("paths") {
        let templated: Vec<&str> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for method in methods {
            let Some(op) = item.get(method) else { continue };
            operations += 1;
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            // Path parameters are exactly the path's templated segments; the rest are queries.
            let in_path: Vec<&str> = params
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            assert_eq!(in_path, templated, "{method} {path}: path parameters");
            for p in &params {
                assert!(
                    p["in"] == "path" || p["in"] == "query",
                    "{method} {path}: {p}"
                );
                if p["in"] == "query" {
                    assert_ne!(p["required"], true, "{method} {path}: {p} is optional");
                }
            }
            // Every operation says how it fails.
            let answers = op["responses"].as_object().expect("responses");
            assert!(
                answers.keys().any(|c| c.starts_with('4')),
                "{method} {path} lists no 4xx answer"
            );
            if path != "/healthz" {
                assert!(answers.contains_key("401"), "{method} {path}: 401");
            }
            if method != "get" {
                assert!(answers.contains_key("403"), "{method} {path}: 403");
            }
        }
    }
    assert!(operations >= 20, "{operations} operations");
    let list: Vec<(String, String)> = spec["paths"]["/v1/jobs"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["in"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for name in ["status", "queue", "class", "q", "order", "limit", "cursor"] {
        assert!(
            list.contains(&(name.to_string(), "query".to_string())),
            "{name} is a query parameter of GET /v1/jobs: {list:?}"
        );
    }
    let submit = &spec["paths"]["/v1/jobs"]["post"]["responses"];
    for code in ["400", "413", "415", "422"] {
        assert!(submit[code].is_object(), "POST /v1/jobs documents {code}");
    }
    s.stop().await;
}
