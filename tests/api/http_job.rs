//! HttpRequestJob through the API (`src/http_job.rs`): the SSRF guard, and resuming at the failed step.

use super::*;

/// A local server for HttpRequestJob: /a counts, /b fails (500) on its first call, /c counts.
pub(crate) async fn step_server() -> (String, Arc<[AtomicU32; 3]>) {
    use axum::routing::any;
    let hits: Arc<[AtomicU32; 3]> = Arc::new(Default::default());
    let (h1, h2, h3) = (hits.clone(), hits.clone(), hits.clone());
    let app = axum::Router::new()
        .route(
            "/a",
            any(move || async move {
                h1[0].fetch_add(1, Ordering::SeqCst);
                "a"
            }),
        )
        .route(
            "/b",
            any(move || async move {
                let n = h2[1].fetch_add(1, Ordering::SeqCst);
                if n == 0 {
                    (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "not yet")
                } else {
                    (axum::http::StatusCode::CREATED, "b")
                }
            }),
        )
        .route(
            "/c",
            any(move || async move {
                h3[2].fetch_add(1, Ordering::SeqCst);
                "c"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, hits)
}

#[tokio::test]
pub(crate) async fn http_request_job_refuses_loopback_then_resumes_at_the_failed_step() {
    let s = Setup::sqlite(true, &[]).await;
    let (base, hits) = step_server().await;
    let steps = json!([
        {"name": "a", "url": format!("{base}/a")},
        {"name": "b", "method": "POST", "url": format!("{base}/b"), "body": {"x": 1}, "headers": {"x-test": "1"}},
        {"name": "c", "url": format!("{base}/c")},
    ]);

    // By default loopback is refused: straight to the morgue with the reason, nothing sent.
    pubsub_jobs::http_job::set_policy(pubsub_jobs::http_job::HttpPolicy::default());
    let (code, job) = s
        .submit(
            json!({"job_class": "HttpRequestJob", "arguments": {"steps": steps}, "queue": s.queue}),
        )
        .await;
    assert_eq!(code, 202, "{job}");
    let (refused, _) = s
        .poll(
            job["id"].as_str().unwrap(),
            status_is("morgued"),
            Duration::from_secs(30),
        )
        .await;
    assert!(
        refused["last_error"]
            .as_str()
            .unwrap()
            .contains("internal address 127.0.0.1"),
        "{refused}"
    );
    assert_eq!(hits[0].load(Ordering::SeqCst), 0);

    pubsub_jobs::http_job::set_policy(pubsub_jobs::http_job::HttpPolicy {
        allow_private: true,
        ..Default::default()
    });
    let (code, job) = s.submit(json!({"job_class": "HttpRequestJob", "arguments": {"steps": steps, "timeout_seconds": 5}, "queue": s.queue})).await;
    assert_eq!(code, 202);
    let (done, seen) = s
        .poll(
            job["id"].as_str().unwrap(),
            status_is("succeeded"),
            Duration::from_secs(40),
        )
        .await;
    assert!(seen.contains(&"retrying".to_string()), "{seen:?}");
    let counts: Vec<u32> = hits.iter().map(|h| h.load(Ordering::SeqCst)).collect();
    assert_eq!(counts, [1, 2, 1], "step a ran once: the retry resumed at b");
    let steps = done["result"]["steps"].as_array().unwrap();
    let summary: Vec<(String, u64, u64)> = steps
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["status"].as_u64().unwrap(),
                s["attempt"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("a".into(), 200, 1),
            ("b".into(), 201, 2),
            ("c".into(), 200, 2)
        ]
    );
    assert!(steps.iter().all(|s| s["duration_ms"].is_u64()));
    assert!(
        done["last_error"].as_str().unwrap().contains("HTTP 500"),
        "{done}"
    );
    // Its progress, step by step: the last report of the execution that finished.
    assert_eq!(done["progress"]["message"], "3 of 3: done", "{done}");
    assert_eq!(
        (&done["progress"]["done"], &done["progress"]["attempt"]),
        (&json!(3), &json!(2))
    );
    let id = job["id"].as_str().unwrap();
    let (_, logs) = s.get(&format!("/v1/jobs/{id}/logs")).await;
    let lines: Vec<(u64, String)> = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let line = l["line"].as_str().unwrap();
            (
                l["attempt"].as_u64().unwrap(),
                line.split(' ').take(2).collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            (1, "a: 200".to_string()),
            (1, "b: step".to_string()),
            (2, "b: 201".to_string()),
            (2, "c: 200".to_string())
        ],
        "{logs}"
    );
    s.stop().await;
}
