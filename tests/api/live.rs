//! A running job, live: its progress in the job's resource (with the ETag moving), its log
//! lines, the server-sent event stream until it ends, and the dashboard's progress bar.

use super::*;

static GATES: OnceLock<Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>> = OnceLock::new();

/// The gate job `key` waits at between its steps: each permit lets one step through.
fn gate(key: &str) -> Arc<tokio::sync::Semaphore> {
    GATES
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(key.to_string())
        .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(0)))
        .clone()
}

/// Three steps, each reported and logged, each after a permit of its gate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LiveProbe {
    key: String,
}

impl Job for LiveProbe {
    const NAME: &'static str = "LiveProbe";
    async fn perform(&self, ctx: &JobContext) -> Result<(), JobError> {
        let gate = gate(&self.key);
        for step in 1..=3u64 {
            ctx.progress(step, 3, format!("step {step}: <b>"));
            ctx.log(format!("did step {step}"));
            gate.acquire().await.map_err(JobError::new)?.forget();
        }
        Ok(())
    }
}
register_job!(LiveProbe);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
pub(crate) async fn progress_logs_and_the_event_stream_follow_a_running_job() {
    let s = Setup::sqlite(true, &[]).await;
    let key = unique("live");
    let (code, job) = s
        .submit(json!({"job_class": "LiveProbe", "arguments": {"key": key}, "queue": s.queue}))
        .await;
    assert_eq!(code, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(job["links"]["stream"], format!("/v1/jobs/{id}/stream"));

    // The stream, read to its end in the background.
    let stream = s
        .http
        .get(s.url(&format!("/v1/jobs/{id}/stream")))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(
        stream.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let reader = tokio::spawn(async move {
        let mut stream = stream;
        let mut text = String::new();
        while let Ok(Some(chunk)) = stream.chunk().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        text
    });

    let step = |n: u64| move |j: &Value| j["progress"]["done"] == n;
    let (first, _) = s.poll(&id, step(1), Duration::from_secs(20)).await;
    assert_eq!(first["status"], "running");
    assert_eq!(first["progress"]["total"], 3);
    assert_eq!(first["progress"]["message"], "step 1: <b>");
    assert_eq!(first["progress"]["attempt"], 1);
    // The job's resource asked for with `If-None-Match: tag`: its status code and ETag.
    let get_if = |tag: String| {
        let req = s
            .http
            .get(s.url(&format!("/v1/jobs/{id}")))
            .header("if-none-match", tag);
        async move {
            let r = req.send().await.unwrap();
            let etag = r.headers()["etag"].to_str().unwrap().to_string();
            (r.status().as_u16(), etag)
        }
    };
    let (_, tag) = get_if(String::new()).await;
    assert_eq!(get_if(tag.clone()).await.0, 304, "nothing changed");
    gate(&key).add_permits(1);
    s.poll(&id, step(2), Duration::from_secs(20)).await;
    assert_eq!(get_if(tag).await.0, 200, "progress moves the ETag");

    let (code, logs) = s.get(&format!("/v1/jobs/{id}/logs")).await;
    assert_eq!(code, 200, "{logs}");
    let lines: Vec<&str> = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_str().unwrap())
        .collect();
    assert_eq!(lines, ["did step 1", "did step 2"]);
    assert_eq!(logs["next_after"], 1);
    let (_, after) = s.get(&format!("/v1/jobs/{id}/logs?after=0")).await;
    assert_eq!(after["logs"].as_array().unwrap().len(), 1);
    let (code, bad) = s.get(&format!("/v1/jobs/{id}/logs?after=x")).await;
    assert_eq!(code, 422, "{bad}");

    let page = s
        .http
        .get(s.url(&format!("/ui/jobs/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<progress id=\"progress\" value=\"2\" max=\"3\">"),
        "{page}"
    );
    assert!(page.contains("step 2: &lt;b&gt;"), "escaped: {page}");
    assert!(page.contains("[1] did step 2"), "{page}");

    gate(&key).add_permits(2);
    s.poll(&id, status_is("succeeded"), Duration::from_secs(20))
        .await;
    let text = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the stream ends once the job ends")
        .unwrap();
    let events: Vec<(&str, &str)> = text
        .split("\n\n")
        .filter_map(|e| {
            let kind = e.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = e
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or("");
            Some((kind, data))
        })
        .collect();
    let logged: Vec<String> = events
        .iter()
        .filter(|(k, _)| *k == "log")
        .map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["line"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(logged, ["did step 1", "did step 2", "did step 3"], "{text}");
    let progress: Vec<u64> = events
        .iter()
        .filter(|(k, _)| *k == "job")
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).unwrap()["progress"]["done"].as_u64())
        .collect();
    assert!(progress.contains(&1) && progress.contains(&2), "{text}");
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "in order: {progress:?}"
    );
    assert_eq!(events.last(), Some(&("end", "succeeded")), "{text}");
    s.stop().await;
}
