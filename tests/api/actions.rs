//! Retry, delete, cancel, count, bulk and stats (`src/api/actions.rs`).

use super::*;

#[tokio::test]
pub(crate) async fn retry_delete_cancel_count_bulk_and_stats_through_the_json_api() {
    let s = Setup::sqlite(true, &[]).await;
    let dead = |key: &str| json!({"job_class": "ApiProbe", "queue": s.queue, "arguments": {"key": key, "fail_first": 99}});
    // A morgued job retried runs again from its first execution, as generation 1.
    let key = unique("retry");
    let (_, job) = s.submit(dead(&key)).await;
    let id = job["id"].as_str().unwrap().to_string();
    wait_runs(&s, &id, &key, 3, "morgued").await;
    let (code, back) = post(&s, &format!("/v1/jobs/{id}/retry"), json!({})).await;
    assert_eq!(code, 200, "{back}");
    assert_eq!(
        (back["status"].as_str(), back["generation"].as_u64()),
        (Some("pending"), Some(1))
    );
    wait_runs(&s, &id, &key, 6, "morgued").await;
    let kinds = s.event_kinds(&id).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "enqueued").count(),
        2,
        "{kinds:?}"
    );

    // A job that succeeded is not retried; a scheduled one is not deleted until cancelled.
    let ok = unique("ok");
    let (_, job) = s
        .submit(json!({"job_class": "ApiProbe", "queue": s.queue, "arguments": {"key": ok}}))
        .await;
    let ok_id = job["id"].as_str().unwrap().to_string();
    s.poll(&ok_id, status_is("succeeded"), Duration::from_secs(30))
        .await;
    let (code, err) = post(&s, &format!("/v1/jobs/{ok_id}/retry"), json!({})).await;
    assert_eq!(
        (code, err["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{err}"
    );
    let (_, later) = s
        .submit(json!({"job_class": "ApiProbe", "queue": s.queue, "wait_seconds": 3600, "arguments": {"key": unique("later")}}))
        .await;
    let later = later["id"].as_str().unwrap().to_string();
    let (code, _) = post(&s, &format!("/v1/jobs/{later}/delete"), json!({})).await;
    assert_eq!(code, 409);
    let (code, c) = post(&s, &format!("/v1/jobs/{later}/cancel"), json!({})).await;
    assert_eq!((code, c["status"].as_str()), (200, Some("cancelled")));
    let (code, d) = post(&s, &format!("/v1/jobs/{later}/delete"), json!({})).await;
    assert_eq!((code, d["deleted"].as_bool()), (200, Some(true)));
    assert_eq!(s.get(&format!("/v1/jobs/{later}")).await.0, 404);
    assert_eq!(
        post(&s, &format!("/v1/jobs/{later}/delete"), json!({}))
            .await
            .0,
        404
    );

    // Bulk: three more morgued jobs; count them, retry them all (each runs once more per
    // attempt), then delete them all.
    let mut dead_jobs = vec![(id.clone(), key.clone(), 6)];
    for n in 0..3 {
        let key = unique(&format!("bulk{n}"));
        let (_, job) = s.submit(dead(&key)).await;
        dead_jobs.push((job["id"].as_str().unwrap().to_string(), key, 3));
    }
    for (id, key, n) in &dead_jobs {
        wait_runs(&s, id, key, *n, "morgued").await;
    }
    let q = &s.queue;
    let (_, count) = s
        .get(&format!("/v1/jobs/count?queue={q}&status=morgued"))
        .await;
    assert_eq!(
        (count["count"].as_u64(), count["exact"].as_bool()),
        (Some(4), Some(true))
    );
    let (_, count) = s
        .get(&format!(
            "/v1/jobs/count?queue={q}&class=ApiProbe&q=fail_first"
        ))
        .await;
    assert_eq!(count["count"], 4, "class and text: {count}");
    let (code, out) = post(
        &s,
        "/v1/jobs/bulk",
        json!({"action": "retry", "queue": q, "status": "morgued"}),
    )
    .await;
    assert_eq!(code, 200, "{out}");
    assert_eq!(
        (
            out["matched"].as_u64(),
            out["done"].as_u64(),
            out["skipped"].as_u64()
        ),
        (Some(4), Some(4), Some(0))
    );
    for (id, key, n) in &dead_jobs {
        wait_runs(&s, id, key, n + 3, "morgued").await;
    }
    let (code, out) = post(
        &s,
        "/v1/jobs/bulk",
        json!({"action": "delete", "queue": q, "status": "morgued"}),
    )
    .await;
    assert_eq!((code, out["done"].as_u64()), (200, Some(4)), "{out}");
    let (_, count) = s
        .get(&format!("/v1/jobs/count?queue={q}&status=morgued"))
        .await;
    assert_eq!(count["count"], 0);
    let (code, err) = post(
        &s,
        "/v1/jobs/bulk",
        json!({"action": "retry", "status": "dead"}),
    )
    .await;
    assert_eq!(
        (code, err["error"]["field"].as_str()),
        (422, Some("status")),
        "{err}"
    );

    // Stats: the queue's counts, this hour's executions, percentiles, processes.
    let (code, stats) = s.get("/v1/stats").await;
    assert_eq!(code, 200, "{stats}");
    let mine = stats["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["queue"] == s.queue.as_str())
        .cloned()
        .unwrap();
    assert_eq!(mine["counts"]["succeeded"], 1, "{mine}");
    let failed: u64 = stats["throughput"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["failed"].as_u64().unwrap())
        .sum();
    assert!(failed >= 21, "at least the 21 failures here: {stats}");
    assert!(stats["run_time"]["count"].as_u64().unwrap() >= 22);
    assert!(stats["queue_latency"]["p50_seconds"].as_f64().is_some());
    let (_, classes) = s.get("/v1/classes").await;
    assert!(
        classes
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["job_class"] == "ApiProbe"),
        "{classes}"
    );
    s.stop().await;
}
