//! `/v1/periodic` (`src/api/periodic.rs`): entries listed, paused, resumed and run now.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn periodic_entries_listed_paused_resumed_and_run_now() {
    use pubsub_jobs::periodic::{PeriodicEntry, Scheduler};
    let s = Setup::sqlite(true, &[]).await;
    let key = unique("periodic");
    let name = unique("yearly-report");
    let entry = PeriodicEntry::new(
        name.clone(),
        "0 0 0 1 1 *",
        &ApiProbe {
            key: key.clone(),
            sleep_ms: 0,
            fail_first: 0,
            nested: None,
        },
    )
    .unwrap()
    .timezone("Europe/Berlin")
    .unwrap()
    .queue(s.queue.clone());
    let scheduler = Scheduler::start(s.client.clone(), vec![entry]).unwrap();
    // The scheduler registers its entries in the store.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let (code, body) = s.get("/v1/periodic").await;
        assert_eq!(code, 200, "{body}");
        if let Some(e) = body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == json!(name))
        {
            break e.clone();
        }
        assert!(std::time::Instant::now() < deadline, "entry registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(listed["schedule"], "0 0 0 1 1 *");
    assert_eq!(listed["timezone"], "Europe/Berlin");
    assert_eq!(listed["job_class"], "ApiProbe");
    assert_eq!(listed["queue"], json!(s.queue));
    assert_eq!(listed["paused"], false);
    assert_eq!(listed["last_run_at"], Value::Null);
    // Midnight on 1 January in Berlin is 23:00 UTC on 31 December.
    let next = listed["next_run_at"].as_str().unwrap();
    assert!(next.contains("-12-31T23:00:00"), "{next}");

    let post = |path: String| {
        let http = s.http.clone();
        let url = s.url(&path);
        async move {
            let r = http.post(url).send().await.unwrap();
            let code = r.status().as_u16();
            (code, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (code, body) = post(format!("/v1/periodic/{name}/pause")).await;
    assert_eq!((code, &body["paused"]), (200, &json!(true)), "{body}");
    let (code, body) = post(format!("/v1/periodic/{name}/resume")).await;
    assert_eq!((code, &body["paused"]), (200, &json!(false)), "{body}");
    let (code, body) = post("/v1/periodic/no-such-entry/pause".into()).await;
    assert_eq!(code, 404, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no-such-entry"));

    // Run now: a job of the entry's class, arguments and queue, which the worker runs.
    let (code, job) = post(format!("/v1/periodic/{name}/run")).await;
    assert_eq!(code, 202, "{job}");
    assert_eq!(job["job_class"], "ApiProbe");
    assert_eq!(job["queue"], json!(s.queue));
    let id = job["id"].as_str().unwrap().to_string();
    s.poll(&id, status_is("succeeded"), Duration::from_secs(30))
        .await;
    assert_eq!(runs(&key), 1);
    scheduler.shutdown().await;
    s.stop().await;
}
