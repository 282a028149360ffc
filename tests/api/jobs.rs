//! Submit, poll, list and cancel (`src/api/jobs.rs`): statuses, results, events, ETags, retries, bad input, cursors, dedup, PostgreSQL.

use super::*;

#[tokio::test]
pub(crate) async fn a_job_polled_from_pending_to_succeeded_with_result_events_etag() {
    let s = Setup::sqlite(false, &[]).await;
    let key = unique("ok");
    let (code, job) = s
        .submit(json!({"job_class": "ApiProbe", "arguments": {"key": key, "sleep_ms": 300}, "queue": s.queue}))
        .await;
    assert_eq!(code, 202, "{job}");
    assert_eq!(job["status"], "pending");
    assert_eq!(job["queue"], s.queue.as_str());
    assert_eq!(job["attempts"], 0);
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(job["links"]["self"], format!("/v1/jobs/{id}"));
    let (_, pending) = s.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(
        pending["status"], "pending",
        "nothing runs without a worker"
    );

    let mut s = s;
    s.start_worker();
    let (done, seen) = s
        .poll(&id, status_is("succeeded"), Duration::from_secs(30))
        .await;
    assert_eq!(seen.first().map(String::as_str), Some("pending"));
    assert!(
        seen.contains(&"running".to_string()),
        "a 300 ms job is seen running when polled every 25 ms: {seen:?}"
    );
    assert_eq!(done["attempts"], 1);
    assert_eq!(
        done["result"],
        json!({"greeting": format!("hello {key}"), "attempt": 1})
    );
    assert!(done["finished_at"].is_string() && done["started_at"].is_string());
    assert_eq!(runs(&key), 1);

    let kinds = s.event_kinds(&id).await;
    assert_eq!(kinds, ["enqueued", "started", "succeeded"]);

    // ETag / If-None-Match, Cache-Control long for a finished job.
    let r = s
        .http
        .get(s.url(&format!("/v1/jobs/{id}")))
        .send()
        .await
        .unwrap();
    let tag = r.headers()["etag"].to_str().unwrap().to_string();
    assert!(r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age=3600"));
    let r = s
        .http
        .get(s.url(&format!("/v1/jobs/{id}")))
        .header("if-none-match", &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 304);
    let r = s
        .http
        .get(s.url(&format!("/v1/jobs/{id}")))
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    s.stop().await;
}

#[tokio::test]
pub(crate) async fn retries_show_as_retrying_then_succeeded_with_failed_events() {
    let s = Setup::sqlite(true, &[]).await;
    let key = unique("retry");
    let (code, job) = s
        .submit(json!({"job_class": "ApiProbe", "arguments": {"key": key, "fail_first": 1}, "queue": s.queue}))
        .await;
    assert_eq!(code, 202);
    let id = job["id"].as_str().unwrap().to_string();
    let (done, seen) = s
        .poll(&id, status_is("succeeded"), Duration::from_secs(30))
        .await;
    assert!(seen.contains(&"retrying".to_string()), "{seen:?}");
    assert_eq!(done["attempts"], 2);
    assert!(done["last_error"]
        .as_str()
        .unwrap()
        .contains("fails on purpose"));
    let kinds = s.event_kinds(&id).await;
    assert_eq!(
        kinds,
        [
            "enqueued",
            "started",
            "failed",
            "retry_scheduled",
            "started",
            "succeeded"
        ]
    );
    s.stop().await;
}

#[tokio::test]
pub(crate) async fn bad_submits_are_rejected_naming_what_is_wrong_and_publish_nothing() {
    let s = Setup::sqlite(false, &[]).await;
    let q = s.queue.clone();
    let cases = [
        (
            json!({"job_class": "NoSuchJob", "arguments": {}, "queue": q}),
            422,
            Some("job_class"),
            "NoSuchJob",
        ),
        (
            json!({"job_class": "ApiProbe", "arguments": {"key": "k", "nested": {"count": "x"}}, "queue": q}),
            422,
            Some("arguments.nested.count"),
            "nested.count",
        ),
        (
            json!({"job_class": "ApiProbe", "arguments": {"sleep_ms": 1}, "queue": q}),
            422,
            Some("arguments"),
            "key",
        ),
        (
            json!({"job_class": "ApiProbe", "arguments": {"key": "k"}, "queue": "bad queue!"}),
            422,
            Some("queue"),
            "bad queue!",
        ),
        (
            json!({"job_class": "ApiProbe", "arguments": {"key": "k"}, "queue": q, "wait_seconds": 5, "scheduled_at": "2030-01-01T00:00:00Z"}),
            422,
            Some("wait_seconds"),
            "not both",
        ),
        (
            json!({"job_class": "ApiProbe", "arguments": {"key": "k"}, "queue": q, "wait_seconds": -1}),
            422,
            Some("wait_seconds"),
            ">= 0",
        ),
        (json!({"job_class": 7}), 422, Some("job_class"), "job_class"),
        (
            json!({"job_class": "ApiProbe", "arguments": {"key": "k"}, "queue": q, "colour": "red"}),
            422,
            None,
            "colour",
        ),
        (
            json!({"job_class": "HttpRequestJob", "arguments": {"steps": [{"name": "a", "url": "ftp://example.com/x"}]}, "queue": q}),
            422,
            Some("arguments.steps[0].url"),
            "only http and https",
        ),
        (
            json!({"job_class": "HttpRequestJob", "arguments": {"steps": []}, "queue": q}),
            422,
            Some("arguments.steps"),
            "at least one step",
        ),
        (
            json!({"job_class": "ApiProbe", "arguments": {"key": "k"}, "queue": s.client.morgue_queue()}),
            422,
            Some("queue"),
            "morgue queue",
        ),
        (
            json!({"job_class": "ApiProbe", "arguments": {"key": "k"}, "queue": q, "dedup_key": "d", "dedup_window_seconds": 18446744073709551000u64}),
            422,
            Some("dedup_window_seconds"),
            "dedup_window_seconds must be 1-31536000",
        ),
        (
            json!({"job_class": "ApiProbe", "arguments": {"key": "k"}, "queue": q, "dedup_key": "d", "dedup_window_seconds": 0}),
            422,
            Some("dedup_window_seconds"),
            "not 0",
        ),
        (
            json!({"job_class": "ApiProbe", "arguments": {"key": "k"}, "queue": q, "dedup_key": "a\u{0}b"}),
            422,
            Some("dedup_key"),
            "control characters",
        ),
    ];
    for (body, code, field, needle) in cases {
        let (got, err) = s.submit(body.clone()).await;
        assert_eq!(got, code, "{body} -> {err}");
        if let Some(f) = field {
            assert_eq!(err["error"]["field"], f, "{body} -> {err}");
        }
        assert!(
            err["error"]["message"].as_str().unwrap().contains(needle),
            "{body} -> {err}"
        );
    }
    // Malformed JSON: 400.
    let r = s
        .http
        .post(s.url("/v1/jobs"))
        .header("content-type", "application/json")
        .body("{\"job_class\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let err: Value = r.json().await.unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("malformed JSON"),
        "{err}"
    );
    // Over 1 MiB: 413.
    let big =
        json!({"job_class": "ApiProbe", "arguments": {"key": "x".repeat(1_100_000)}, "queue": q});
    let (code, err) = s.submit(big).await;
    assert_eq!(code, 413, "{err}");
    assert_eq!(err["error"]["code"], "payload_too_large");

    // Nothing recorded, nothing published.
    let (_, page) = s.get(&format!("/v1/jobs?queue={q}")).await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 0, "{page}");
    let broker = raw_broker().await;
    let got = broker
        .pull(&s.client.resource_name(&q), 10, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        got.is_empty(),
        "a rejected submit published {} message(s)",
        got.len()
    );
    s.stop().await;
}

#[tokio::test]
pub(crate) async fn unknown_ids_list_pages_with_cursor_and_queue_counts() {
    let s = Setup::sqlite(false, &[]).await;
    let (code, err) = s.get(&format!("/v1/jobs/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(code, 404, "{err}");
    assert_eq!(s.get("/v1/jobs/not-a-uuid").await.0, 404);
    assert_eq!(
        s.get(&format!("/v1/jobs/{}/events", uuid::Uuid::new_v4()))
            .await
            .0,
        404
    );
    let mut ids = Vec::new();
    for i in 0..5 {
        let (code, job) = s
            .submit(json!({"job_class": "ApiProbe", "arguments": {"key": format!("l{i}")}, "queue": s.queue, "wait_seconds": 600}))
            .await;
        assert_eq!(code, 202);
        assert_eq!(job["status"], "scheduled");
        assert!(job["scheduled_at"].is_string());
        ids.push(job["id"].as_str().unwrap().to_string());
    }
    let (_, due) = s
        .submit(json!({"job_class": "ApiProbe", "arguments": {"key": "due"}, "queue": s.queue}))
        .await;
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/v1/jobs?queue={}&status=scheduled&limit=2", s.queue);
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (code, page) = s.get(&path).await;
        assert_eq!(code, 200, "{page}");
        pages += 1;
        for j in page["jobs"].as_array().unwrap() {
            assert_eq!(j["status"], "scheduled");
            listed.push(j["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    ids.reverse();
    assert_eq!(listed, ids, "newest first, each once");
    let (_, all) = s.get(&format!("/v1/jobs?queue={}", s.queue)).await;
    assert_eq!(all["jobs"].as_array().unwrap().len(), 6);
    assert_eq!(all["jobs"][0]["id"], due["id"]);
    let (code, err) = s.get("/v1/jobs?status=sleeping").await;
    assert_eq!(
        (code, err["error"]["field"].as_str()),
        (422, Some("status"))
    );
    assert_eq!(s.get("/v1/jobs?limit=0").await.0, 422);
    assert_eq!(s.get("/v1/jobs?cursor=zzz").await.0, 422);

    let (code, queues) = s.get("/v1/queues").await;
    assert_eq!(code, 200);
    let mine = queues["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == s.queue.as_str())
        .unwrap();
    assert_eq!(mine["counts"]["scheduled"], 5);
    assert_eq!(mine["counts"]["pending"], 1);
    assert_eq!(mine["total"], 6);
    s.stop().await;
}

#[tokio::test]
pub(crate) async fn cancel_before_start_never_runs_and_late_cancels_conflict() {
    let mut s = Setup::sqlite(false, &[]).await;
    let key = unique("cancel");
    let (_, job) = s
        .submit(json!({"job_class": "ApiProbe", "arguments": {"key": key}, "queue": s.queue}))
        .await;
    let id = job["id"].as_str().unwrap().to_string();
    let (code, body) = s.delete(&id).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "cancelled");
    // Again: DELETE is idempotent, a cancelled job stays cancelled.
    let (code, body) = s.delete(&id).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(s.delete(&uuid::Uuid::new_v4().to_string()).await.0, 404);

    // The worker receives it and acks it without running it.
    let long_key = unique("running");
    s.start_worker();
    let stats = s.worker.as_ref().unwrap().stats.clone();
    assert!(
        wait_until(Duration::from_secs(20), || stats.summary().processed >= 1).await,
        "the cancelled job was never received"
    );
    assert_eq!(runs(&key), 0, "a cancelled job ran");
    let kinds = s.event_kinds(&id).await;
    assert_eq!(kinds, ["enqueued", "cancelled"]);

    // A running job cannot be cancelled; nor a finished one.
    let (_, job) = s
        .submit(json!({"job_class": "ApiProbe", "arguments": {"key": long_key, "sleep_ms": 2000}, "queue": s.queue}))
        .await;
    let id = job["id"].as_str().unwrap().to_string();
    s.poll(&id, status_is("running"), Duration::from_secs(20))
        .await;
    let (code, body) = s.delete(&id).await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("running"),
        "{body}"
    );
    s.poll(&id, status_is("succeeded"), Duration::from_secs(20))
        .await;
    assert_eq!(s.delete(&id).await.0, 409);
    assert_eq!(runs(&long_key), 1);
    s.stop().await;
}

/// Submits `bodies` all at once; the count of each status code and the ids answered.
async fn submit_at_once(
    s: &Setup,
    bodies: Vec<Value>,
) -> (HashMap<u16, usize>, std::collections::HashSet<String>) {
    let mut tasks = Vec::new();
    for body in bodies {
        let (http, url) = (s.http.clone(), s.url("/v1/jobs"));
        tasks.push(tokio::spawn(async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            let code = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            (code, v["id"].as_str().unwrap_or_default().to_string())
        }));
    }
    let mut codes = HashMap::new();
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (code, id) = t.await.unwrap();
        *codes.entry(code).or_insert(0) += 1;
        ids.insert(id);
    }
    (codes, ids)
}

pub(crate) async fn dedup_under_concurrent_submits(s: &Setup) {
    let key = unique("dedup");
    let dedup_key = unique("order-42");
    let body = json!({"job_class": "ApiProbe", "arguments": {"key": key}, "queue": s.queue, "dedup_key": dedup_key});
    let (codes, ids) = submit_at_once(s, vec![body; 20]).await;
    assert_eq!(codes.get(&202), Some(&1), "{codes:?}");
    assert_eq!(codes.get(&200), Some(&19), "{codes:?}");
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id = ids.into_iter().next().unwrap();
    s.poll(&id, status_is("succeeded"), Duration::from_secs(30))
        .await;
    let (_, page) = s.get(&format!("/v1/jobs?queue={}", s.queue)).await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(runs(&key), 1);

    // From code, the same key returns the same job.
    let job = ApiProbe {
        key: key.clone(),
        sleep_ms: 0,
        fail_first: 0,
        nested: None,
    };
    let again = job
        .set()
        .queue(&s.queue)
        .dedup_key(&dedup_key)
        .perform_later(&s.client)
        .await
        .unwrap();
    assert_eq!(again.to_string(), id);
    // Another key makes another job.
    let other = job
        .set()
        .queue(&s.queue)
        .dedup_key(unique("other"))
        .perform_later(&s.client)
        .await
        .unwrap();
    assert_ne!(other.to_string(), id);
}

#[tokio::test]
pub(crate) async fn dedup_20_concurrent_submits_yield_one_job_sqlite() {
    let s = Setup::sqlite(true, &[]).await;
    dedup_under_concurrent_submits(&s).await;
    s.stop().await;
}

#[tokio::test]
pub(crate) async fn dedup_20_concurrent_submits_yield_one_job_postgres() {
    let s = Setup::with_store(&postgres_url(), true, &[]).await;
    dedup_under_concurrent_submits(&s).await;
    s.stop().await;
}

/// 50 concurrent submits unique by the argument `key` (the other arguments differing, their
/// keys in either order) make one job; from code, `unique_by` finds it too; by all arguments,
/// other arguments make another job; a field the arguments lack is named.
pub(crate) async fn unique_by_arguments_under_concurrent_submits(s: &Setup) {
    let key = unique("uniq");
    let bodies = (0..50u64)
        .map(|i| {
            if i % 2 == 0 {
                json!({"job_class": "ApiProbe", "arguments": {"key": key, "sleep_ms": i % 3}, "queue": s.queue,
                       "unique": {"arguments": ["key"], "period_seconds": 120}})
            } else {
                json!({"job_class": "ApiProbe", "queue": s.queue, "arguments": {"sleep_ms": i % 3, "key": key},
                       "unique": {"arguments": ["key"]}})
            }
        })
        .collect();
    let (codes, ids) = submit_at_once(s, bodies).await;
    assert_eq!(codes.get(&202), Some(&1), "{codes:?}");
    assert_eq!(codes.get(&200), Some(&49), "{codes:?}");
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id = ids.into_iter().next().unwrap();
    s.poll(&id, status_is("succeeded"), Duration::from_secs(30))
        .await;
    assert_eq!(runs(&key), 1);

    let job = ApiProbe {
        key: key.clone(),
        sleep_ms: 5,
        fail_first: 0,
        nested: None,
    };
    let window = Duration::from_secs(120);
    let again = job
        .set()
        .queue(&s.queue)
        .unique_by(&["key"], window)
        .perform_later(&s.client)
        .await
        .unwrap();
    assert_eq!(again.to_string(), id, "the same key from code");
    // By all the arguments: these differ from the API's, so another job, then that one again.
    let whole = job
        .set()
        .queue(&s.queue)
        .unique_within(window)
        .perform_later(&s.client)
        .await
        .unwrap();
    assert_ne!(whole.to_string(), id);
    let whole_again = job
        .set()
        .queue(&s.queue)
        .unique_within(window)
        .perform_later(&s.client)
        .await
        .unwrap();
    assert_eq!(whole_again, whole);

    let (code, err) = post(
        s,
        "/v1/jobs",
        json!({"job_class": "ApiProbe", "arguments": {"key": key}, "queue": s.queue,
               "unique": {"arguments": ["object_id"]}}),
    )
    .await;
    assert_eq!(code, 422, "{err}");
    assert_eq!(err["error"]["field"], "unique.arguments", "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("object_id"),
        "{err}"
    );
    let (code, err) = post(
        s,
        "/v1/jobs",
        json!({"job_class": "ApiProbe", "arguments": {"key": key}, "queue": s.queue,
               "dedup_key": "k", "unique": {}}),
    )
    .await;
    assert_eq!(
        (code, err["error"]["field"].as_str()),
        (422, Some("unique")),
        "{err}"
    );

    // The period ends: a second job with the same arguments, then that one again.
    let short = unique("uniq-short");
    let body = json!({"job_class": "ApiProbe", "arguments": {"key": short}, "queue": s.queue,
                      "unique": {"arguments": ["key"], "period_seconds": 1}});
    let (code, first) = post(s, "/v1/jobs", body.clone()).await;
    assert_eq!(code, 202, "{first}");
    let (code, same) = post(s, "/v1/jobs", body.clone()).await;
    assert_eq!(
        (code, &same["id"]),
        (200, &first["id"]),
        "within the period"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let second = loop {
        let (code, v) = post(s, "/v1/jobs", body.clone()).await;
        if code == 202 {
            break v;
        }
        assert_eq!((code, &v["id"]), (200, &first["id"]), "{v}");
        assert!(
            std::time::Instant::now() < deadline,
            "the 1 s period never ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(second["id"], first["id"]);
    let (code, again) = post(s, "/v1/jobs", body).await;
    assert_eq!((code, &again["id"]), (200, &second["id"]));
}

#[tokio::test]
pub(crate) async fn unique_by_arguments_50_concurrent_submits_yield_one_job_sqlite() {
    let s = Setup::sqlite(true, &[]).await;
    unique_by_arguments_under_concurrent_submits(&s).await;
    s.stop().await;
}

#[tokio::test]
pub(crate) async fn unique_by_arguments_50_concurrent_submits_yield_one_job_postgres() {
    let s = Setup::with_store(&postgres_url(), true, &[]).await;
    unique_by_arguments_under_concurrent_submits(&s).await;
    s.stop().await;
}

/// `require_worker`: accepted once the queue's worker has reported itself, refused (409, naming
/// the queue, nothing enqueued) on a queue no worker runs.
#[tokio::test]
pub(crate) async fn require_worker_refuses_a_queue_no_worker_runs() {
    let s = Setup::sqlite(true, &[]).await;
    let key = unique("req-worker");
    let body = json!({"job_class": "ApiProbe", "arguments": {"key": key}, "queue": s.queue, "require_worker": true});
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let job = loop {
        let (code, v) = s.submit(body.clone()).await;
        if code == 202 {
            break v;
        }
        assert_eq!(code, 409, "{v}");
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never reported itself: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    s.poll(
        job["id"].as_str().unwrap(),
        status_is("succeeded"),
        Duration::from_secs(30),
    )
    .await;

    let lonely = unique("lonely");
    let (code, err) = s
        .submit(json!({"job_class": "ApiProbe", "arguments": {"key": key}, "queue": lonely, "require_worker": true}))
        .await;
    assert_eq!(code, 409, "{err}");
    assert_eq!(err["error"]["field"], "queue", "{err}");
    assert!(
        err["error"]["message"].as_str().unwrap().contains(&lonely),
        "{err}"
    );
    let (_, page) = s.get(&format!("/v1/jobs?queue={lonely}")).await;
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(0), "{page}");
    // Without it, the job is accepted and waits for a worker.
    let (code, _) = s
        .submit(json!({"job_class": "ApiProbe", "arguments": {"key": key}, "queue": lonely}))
        .await;
    assert_eq!(code, 202);
    s.stop().await;
}

#[tokio::test]
pub(crate) async fn postgres_store_polls_to_succeeded_and_cancels() {
    let s = Setup::with_store(&postgres_url(), true, &[]).await;
    let key = unique("pg");
    let (code, job) = s
        .submit(json!({"job_class": "ApiProbe", "arguments": {"key": key, "fail_first": 1}, "queue": s.queue}))
        .await;
    assert_eq!(code, 202);
    let id = job["id"].as_str().unwrap().to_string();
    let (done, _) = s
        .poll(&id, status_is("succeeded"), Duration::from_secs(30))
        .await;
    assert_eq!(done["attempts"], 2);
    assert_eq!(done["result"]["attempt"], 2);
    let (_, scheduled) = s
        .submit(json!({"job_class": "ApiProbe", "arguments": {"key": unique("pgc")}, "queue": s.queue, "wait_seconds": 300}))
        .await;
    let (code, body) = s.delete(scheduled["id"].as_str().unwrap()).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("cancelled")));
    s.stop().await;
}

/// Records `n` pending ApiProbe jobs on the setup's queue straight in its store (nothing
/// published, no worker), `per_call` to a submit; returns them.
async fn record_jobs(
    s: &Setup,
    n: usize,
    per_call: usize,
    arguments: impl Fn(usize) -> Value,
) -> Vec<pubsub_jobs::store::NewJob> {
    let store = s.client.store().expect("a store").clone();
    let jobs: Vec<pubsub_jobs::store::NewJob> = (0..n)
        .map(|i| pubsub_jobs::store::NewJob {
            id: uuid::Uuid::now_v7(),
            job_class: "ApiProbe".into(),
            queue: s.queue.clone(),
            arguments: arguments(i),
            metadata: Default::default(),
            enqueued_at: chrono::Utc::now(),
            scheduled_at: None,
            dedup: None,
            message: None,
        })
        .collect();
    for chunk in jobs.chunks(per_call) {
        store.submit_many(chunk.to_vec()).await.unwrap();
    }
    jobs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
pub(crate) async fn lists_of_jobs_with_1_mib_arguments_stay_small_and_healthz_stays_fast() {
    let s = Setup::sqlite(false, &[]).await;
    let blob = "x".repeat(1 << 20);
    let jobs = record_jobs(
        &s,
        200,
        20,
        |n| json!({"key": format!("big-{n}"), "blob": blob}),
    )
    .await;
    let (http, base) = (s.http.clone(), s.url(""));
    let get = move |path: String| {
        let (http, url) = (http.clone(), format!("{base}{path}"));
        async move {
            let resp = http.get(url).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.bytes().await.unwrap()
        }
    };
    // The list: 200 jobs, each with its arguments cut at 4,096 characters.
    let body = get(format!("/v1/jobs?queue={}&limit=200", s.queue)).await;
    assert!(
        body.len() < 3 << 20,
        "a list of 200 jobs is {} bytes",
        body.len()
    );
    let list: Value = serde_json::from_slice(&body).unwrap();
    let listed = list["jobs"].as_array().unwrap();
    assert_eq!(listed.len(), 200);
    for j in listed {
        assert_eq!(j["truncated"], json!(["arguments"]), "{}", j["id"]);
        let args = j["arguments"].as_str().expect("cut arguments are text");
        assert!(args.ends_with('…') && args.chars().count() == 4097);
    }
    // The job itself, in full.
    let one: Value =
        serde_json::from_slice(&get(format!("/v1/jobs/{}", jobs[0].id)).await).unwrap();
    assert_eq!(
        one["arguments"]["blob"].as_str().map(str::len),
        Some(1 << 20)
    );
    assert!(one.get("truncated").is_none());
    // The dashboard's table of the same jobs.
    let page = get(format!("/ui/jobs?queue={}", s.queue)).await;
    assert!(
        page.len() < 3 << 20,
        "the Jobs page is {} bytes",
        page.len()
    );
    // Four lists at once, again and again: /healthz still answers at once.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut listers = Vec::new();
    for _ in 0..4 {
        let (stop, get) = (stop.clone(), get.clone());
        let path = format!("/v1/jobs?queue={}&limit=200", s.queue);
        listers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                get(path.clone()).await;
                n += 1;
            }
            n
        }));
    }
    for _ in 0..10 {
        let asked = std::time::Instant::now();
        get("/healthz".into()).await;
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "/healthz took {:?} while four lists ran",
            asked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for l in listers {
        assert!(l.await.unwrap() > 0, "each lister listed");
    }
}

#[tokio::test]
pub(crate) async fn a_submit_must_be_one_json_object_and_list_filters_are_checked_as_json_errors() {
    let s = Setup::sqlite(false, &[]).await;
    let job =
        json!({"job_class": "ApiProbe", "arguments": {"key": "k"}, "queue": s.queue}).to_string();
    let send = |content_type: Option<&'static str>, body: String| {
        let mut r = s.http.post(s.url("/v1/jobs")).body(body);
        if let Some(ct) = content_type {
            r = r.header("content-type", ct);
        }
        async move {
            let r = r.send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    // A form (what a foreign page can post without a preflight), or no type: 415.
    for ct in [
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
        None,
    ] {
        let (code, err) = send(ct, job.clone()).await;
        assert_eq!(code, 415, "{ct:?}: {err}");
        assert_eq!(err["error"]["code"], "unsupported_media_type");
        assert_eq!(err["error"]["field"], "content-type");
    }
    // Data after the object: 400, nothing recorded.
    let (code, err) = send(Some("application/json"), format!("{job} {{\"more\": 1}}")).await;
    assert_eq!(code, 400, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("data after the job object"),
        "{err}"
    );
    let count: Value = s
        .http
        .get(s.url(&format!("/v1/jobs/count?queue={}", s.queue)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(count["count"], 0, "nothing recorded by a refused submit");
    let (code, _) = send(Some("application/json; charset=utf-8"), job.clone()).await;
    assert_eq!(code, 202, "JSON with a charset is JSON");

    // List filters: a NUL byte, a bad number, a cursor of the other order: 422 in the JSON
    // error shape, naming the parameter.
    for (query, field) in [
        ("q=%00", "q"),
        ("queue=a%00b", "queue"),
        ("class=%00", "class"),
        ("limit=ten", "limit"),
        ("limit=0", "limit"),
        ("cursor=d1:2", "cursor"),
        ("status=scheduled&order=due&cursor=12", "cursor"),
    ] {
        for path in ["/v1/jobs", "/v1/jobs/count"] {
            let r = s
                .http
                .get(s.url(&format!("{path}?{query}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 422, "{path}?{query}");
            let err: Value = r.json().await.expect("a JSON error");
            assert_eq!(err["error"]["field"], field, "{path}?{query}: {err}");
        }
    }
    // The bulk action refuses the same filter before acting on anything.
    let (code, err) = post(
        &s,
        "/v1/jobs/bulk",
        json!({"action": "cancel", "q": "\u{0}"}),
    )
    .await;
    assert_eq!(code, 422, "{err}");
    assert_eq!(err["error"]["field"], "q");
    let (code, job) = s.get(&format!("/v1/jobs?queue={}", s.queue)).await;
    assert_eq!(code, 200);
    assert_eq!(job["jobs"][0]["status"], "pending", "nothing was cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn a_bulk_action_finishes_when_its_client_goes_away() {
    let s = Setup::sqlite(false, &[]).await;
    record_jobs(&s, 1500, 1500, |n| json!({"key": format!("bulk-{n}")})).await;
    // The client gives up long before 1,500 cancels are done.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let gave_up = impatient
        .post(s.url("/v1/jobs/bulk"))
        .json(&json!({"action": "cancel", "queue": s.queue}))
        .send()
        .await;
    assert!(gave_up.is_err(), "the client was meant to time out");
    let count = |status: &'static str| {
        let (http, url) = (
            s.http.clone(),
            s.url(&format!("/v1/jobs/count?queue={}&status={status}", s.queue)),
        );
        async move {
            let v: Value = http.get(url).send().await.unwrap().json().await.unwrap();
            v["count"].as_u64().unwrap_or(0)
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while count("cancelled").await < 1500 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count("cancelled").await, 1500, "every job cancelled");
    assert_eq!(count("pending").await, 0);
}

#[tokio::test]
pub(crate) async fn a_jobs_metadata_shows_in_the_api_and_on_its_page() {
    let s = Setup::sqlite(false, &[]).await;
    let env = pubsub_jobs::envelope::Envelope::new(
        "ApiProbe",
        &s.queue,
        json!({"key": unique("meta"), "sleep_ms": 0}),
    );
    let tagged = s
        .client
        .clone()
        .with_middleware(Tag("tenant", Some("<acme>")));
    let id = tagged.submit(env, None).await.unwrap().job_id;
    tagged.flush().await;
    let (code, job) = s.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(code, 200, "{job}");
    assert_eq!(job["metadata"], json!({"tenant": "<acme>"}));
    // A job without any has no such key.
    let (_, plain) = s
        .submit(json!({"job_class": "ApiProbe", "arguments": {"key": unique("plain")}, "queue": s.queue}))
        .await;
    assert!(plain.get("metadata").is_none(), "{plain}");
    // A submit may carry its own, checked.
    let (code, given) = s
        .submit(
            json!({"job_class": "ApiProbe", "arguments": {"key": unique("given")}, "queue": s.queue,
                       "metadata": {"request_id": "r-42"}}),
        )
        .await;
    assert_eq!(code, 202, "{given}");
    assert_eq!(given["metadata"], json!({"request_id": "r-42"}));
    for (bad, field) in [
        (json!({"": "x"}), "metadata"),
        (json!({"k": "x".repeat(1025)}), "metadata.k"),
        (json!({"k": "a\u{0}b"}), "metadata.k"),
        (json!({"k": 7}), "metadata.k"),
    ] {
        let (code, err) = s
            .submit(json!({"job_class": "ApiProbe", "arguments": {"key": "k"}, "queue": s.queue, "metadata": bad}))
            .await;
        assert_eq!(code, 422, "{bad}: {err}");
        if field != "metadata.k" || bad["k"].is_string() {
            assert_eq!(err["error"]["field"], field, "{bad}: {err}");
        }
    }
    let page = s
        .http
        .get(s.url(&format!("/ui/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<dt>tenant</dt><dd><code>&lt;acme&gt;</code></dd>"),
        "{html}"
    );
    s.stop().await;
}
