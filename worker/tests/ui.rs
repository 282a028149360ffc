//! The dashboard in a real browser: Debian's chromium driven through chromedriver (WebDriver,
//! via fantoccini), against a real `worker api` and a real worker process on the emulator, with
//! a SQLite store. Every page loads; a job submitted from the Enqueue page reaches succeeded on
//! its Job page under live refresh; a morgued job is retried and a scheduled one cancelled from
//! the UI, checked in the store; a `<script>` in arguments stays text; a cross-origin form post
//! is refused; with tokens, nothing works without signing in.
//!
//! Needs `chromium` and `chromedriver` on PATH (Debian: chromium, chromium-driver; `.ci/run`
//! installs them); without them each test says so in one line and passes, unless
//! `PUBSUB_JOBS_TEST_REQUIRE_ALL=1`.

mod common;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// A headless chromium under chromedriver.
struct Browser {
    driver: Child,
    client: Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    async fn start_with(extra: &[&str]) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = free_port();
        let driver = Command::new(tools::chromedriver_path())
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver) on PATH");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        let mut options = json!({ "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--window-size=1280,900",
            format!("--user-data-dir={}", profile.path().display()),
        ]});
        for a in extra {
            options["args"].as_array_mut().unwrap().push(json!(a));
        }
        if std::path::Path::new("/usr/bin/chromium").exists() {
            options["binary"] = json!("/usr/bin/chromium");
        }
        caps.insert("goog:chromeOptions".into(), options);
        let client = ClientBuilder::rustls()
            .expect("rustls")
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a chromium session");
        Self {
            driver,
            client,
            _profile: profile,
        }
    }

    async fn close(self) {
        let _ = self.client.clone().close().await;
        // Drop stops chromedriver.
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    /// Waits until the current page's path starts with `prefix`.
    async fn wait_path(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let url = self.client.current_url().await.unwrap();
            let ready = self.js("return document.readyState;").await;
            if url.path().starts_with(prefix) && ready == json!("complete") {
                return url.to_string();
            }
            assert!(Instant::now() < deadline, "not on {prefix}: {url}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks the element `locator` finds.
    async fn click(&self, locator: Locator<'_>) {
        self.client
            .find(locator)
            .await
            .unwrap_or_else(|e| panic!("nothing to click: {e}"))
            .click()
            .await
            .unwrap();
    }

    async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.expect(script)
    }

    /// Waits until `css`'s text contains `want`.
    async fn wait_text(&self, css: &str, want: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await {
                if e.text().await.unwrap_or_default().contains(want) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{css} did not show {want:?} within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Browser {
    /// Stops chromedriver (and its chromium) even when a test fails before `close`.
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url)
        .send()
        .await
        .expect(url)
        .json()
        .await
        .unwrap_or(Value::Null)
}

/// Waits until job `id`'s JSON satisfies `pred`.
async fn wait_job(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&Value, &[Value]) -> bool,
) -> (Value, Vec<Value>) {
    let deadline = Instant::now() + timeout;
    loop {
        let job = get_json(http, &format!("{base}/v1/jobs/{id}")).await;
        let events = get_json(http, &format!("{base}/v1/jobs/{id}/events")).await["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if pred(&job, &events) {
            return (job, events);
        }
        assert!(
            Instant::now() < deadline,
            "job {id}: not {what} within {timeout:?}: {job} {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| e["kind"].as_str().map(str::to_string))
        .collect()
}

fn starts(events: &[Value]) -> usize {
    kinds(events).iter().filter(|k| *k == "started").count()
}

async fn submit(http: &reqwest::Client, base: &str, body: Value) -> String {
    let r = http
        .post(format!("{base}/v1/jobs"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "submit");
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Serves one page on another origin (another port) until the test ends.
fn other_origin(page: String) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().map_while(Result::ok) {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                page.len(),
                page
            );
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_pages_actions_and_live_refresh_in_a_browser() {
    if !tools::chromium("dashboard_pages_actions_and_live_refresh_in_a_browser") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("ui.db").display());
    let queue = unique("ui");
    let api = Api::start(emulator_host(), &store, &[]).await;
    let base = api.base.clone();
    let mut worker = Running::start(
        &queue,
        &[("MOCK_JOB_RETRY_WAIT", "0")],
        &["--store", &store, "--concurrency", "4"],
    );
    worker.wait_for("worker started", Duration::from_secs(60), |v| {
        v["message"] == "worker started"
    });
    let http = reqwest::Client::new();
    let b = Browser::start().await;

    // Every page loads, with its heading.
    for (path, h1) in [
        ("/ui/", "Overview"),
        ("/ui/jobs", "Jobs"),
        ("/ui/scheduled", "Scheduled and retrying"),
        ("/ui/morgue", "Morgue"),
        ("/ui/periodic", "Periodic"),
        ("/ui/enqueue", "Enqueue a job"),
    ] {
        b.client.goto(&format!("{base}{path}")).await.unwrap();
        assert_eq!(b.text("h1").await, h1, "{path}");
    }

    // Enqueue: bad arguments are shown at their field, and nothing is enqueued.
    b.client.goto(&format!("{base}/ui/enqueue")).await.unwrap();
    b.client
        .find(Locator::Id("job_class"))
        .await
        .unwrap()
        .select_by_value("MockJob")
        .await
        .unwrap();
    let form_queue = b.client.find(Locator::Id("queue")).await.unwrap();
    form_queue.send_keys(&queue).await.unwrap();
    let args = b.client.find(Locator::Id("arguments")).await.unwrap();
    args.clear().await.unwrap();
    args.send_keys(r#"{"sleep_duration": "slow", "raise_error": false}"#)
        .await
        .unwrap();
    b.click(Locator::Id("submit")).await;
    b.wait_text(
        "#arguments-error",
        "sleep_duration",
        Duration::from_secs(15),
    )
    .await;
    let args = b.client.find(Locator::Id("arguments")).await.unwrap();
    assert_eq!(
        args.attr("aria-invalid").await.unwrap().as_deref(),
        Some("true")
    );
    assert!(
        b.text("#arguments-error").await.contains("sleep_duration"),
        "the error names the field"
    );
    let counted = get_json(&http, &format!("{base}/v1/jobs/count?queue={queue}")).await;
    assert_eq!(counted["count"], 0, "nothing enqueued: {counted}");

    // Fixed, it lands on the Job page; with live refresh on, it shows succeeded without a
    // navigation (a marker set on the page survives).
    args.clear().await.unwrap();
    args.send_keys(r#"{"sleep_duration": 5, "raise_error": false}"#)
        .await
        .unwrap();
    b.click(Locator::Id("submit")).await;
    let url = b.wait_path("/ui/jobs/").await;
    let status = b.text("#status").await;
    assert!(
        ["pending", "running"].iter().any(|s| status.contains(s)),
        "not finished yet: {status}"
    );
    b.js("window.__marker = 42; return null;").await;
    b.client
        .find(Locator::Id("refresh"))
        .await
        .unwrap()
        .select_by_value("1")
        .await
        .unwrap();
    b.click(Locator::Css("h1")).await; // focus leaves the select
    b.wait_text("#status", "succeeded", Duration::from_secs(60))
        .await;
    assert_eq!(
        b.js("return window.__marker;").await,
        json!(42),
        "no navigation"
    );
    assert_eq!(b.client.current_url().await.unwrap().to_string(), url);
    // The choice is remembered.
    b.client.refresh().await.unwrap();
    let chosen = b
        .client
        .find(Locator::Id("refresh"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(chosen.as_deref(), Some("1"));

    // A morgued job whose arguments hold markup shows it as text.
    let evil = "<script>window.__xss = 1</script><img src=x onerror=\"window.__xss = 2\">";
    let dead = submit(
        &http,
        &base,
        json!({"job_class": "MockJob", "queue": queue,
               "arguments": {"sleep_duration": 0, "raise_error": true, "note": evil}}),
    )
    .await;
    wait_job(
        &http,
        &base,
        &dead,
        "morgued",
        Duration::from_secs(60),
        |j, _| j["status"] == "morgued",
    )
    .await;
    // The overview lists this worker, and the API, from their heartbeats.
    b.client.goto(&format!("{base}/ui/")).await.unwrap();
    let overview = b.text("#live").await;
    assert!(overview.contains(&queue), "the worker's queue: {overview}");
    let kinds_listed = b
        .js("return [...document.querySelectorAll('#live td')].map(td => td.textContent);")
        .await;
    for kind in ["api", "worker"] {
        assert!(
            kinds_listed.as_array().unwrap().iter().any(|k| k == kind),
            "the {kind} process: {kinds_listed}"
        );
    }

    b.client
        .goto(&format!("{base}/ui/morgue?queue={queue}"))
        .await
        .unwrap();
    assert!(b.text("#live").await.contains(&dead[dead.len() - 8..]));
    for (path, title) in [
        (format!("/ui/jobs?queue={queue}&status=morgued"), "Jobs"),
        (format!("/ui/jobs/{dead}"), "MockJob"),
    ] {
        b.client.goto(&format!("{base}{path}")).await.unwrap();
        let live = b.text("#live").await;
        assert!(
            live.contains("<script>window.__xss = 1</script>"),
            "{path}: the markup shows as text: {live}"
        );
        assert_eq!(
            b.js("return window.__xss === undefined;").await,
            json!(true)
        );
        assert_eq!(
            b.js("return document.querySelectorAll('#live script, #live img').length;")
                .await,
            json!(0),
            "{path}: no element injected"
        );
        let shown = b.js("return document.title;").await;
        assert!(
            shown.as_str().unwrap().starts_with(title),
            "{path}: {shown}"
        );
    }

    // A cross-origin form post is refused, and the job is untouched.
    let other = other_origin(format!(
        "<!doctype html><form id=f method=post action=\"{base}/ui/jobs/{dead}/retry\"></form>\
         <script>document.getElementById('f').submit()</script>"
    ));
    b.client
        .goto(&format!("http://127.0.0.1:{other}/"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.client.source().await.unwrap().contains("cross-origin") {
        assert!(Instant::now() < deadline, "no refusal page");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (job, events) = wait_job(
        &http,
        &base,
        &dead,
        "still morgued",
        Duration::from_secs(5),
        |_, _| true,
    )
    .await;
    assert_eq!(job["status"], "morgued");
    assert_eq!(starts(&events), 3);

    // Retry from the Morgue page: the store shows it enqueued again, and it runs again.
    b.client
        .goto(&format!("{base}/ui/morgue?queue={queue}"))
        .await
        .unwrap();
    b.click(Locator::Css(&format!(
        "form[action='/ui/jobs/{dead}/retry'] button"
    )))
    .await;
    b.wait_text(".flash", "Retried", Duration::from_secs(15))
        .await;
    let (job, events) = wait_job(
        &http,
        &base,
        &dead,
        "run again",
        Duration::from_secs(60),
        |j, e| j["status"] == "morgued" && starts(e) == 6,
    )
    .await;
    let k = kinds(&events);
    let first_morgue = k.iter().position(|k| k == "morgued").unwrap();
    assert_eq!(k[first_morgue + 1], "enqueued", "{k:?}");
    assert_eq!(job["generation"], 1);

    // Cancel a scheduled job from the Scheduled page.
    let later = submit(
        &http,
        &base,
        json!({"job_class": "MockJob", "queue": queue, "wait_seconds": 3600,
               "arguments": {"sleep_duration": 0, "raise_error": false}}),
    )
    .await;
    b.client
        .goto(&format!("{base}/ui/scheduled?queue={queue}"))
        .await
        .unwrap();
    b.click(Locator::Css(&format!(
        "form[action='/ui/jobs/{later}/cancel'] button"
    )))
    .await;
    b.wait_text(".flash", "Cancelled", Duration::from_secs(15))
        .await;
    let (job, events) = wait_job(
        &http,
        &base,
        &later,
        "cancelled",
        Duration::from_secs(10),
        |j, _| j["status"] == "cancelled",
    )
    .await;
    assert_eq!(job["status"], "cancelled");
    assert_eq!(kinds(&events), ["scheduled", "cancelled"]);

    // Bulk: retry all morgued jobs of the queue, after a confirmation.
    b.client
        .goto(&format!("{base}/ui/morgue?queue={queue}"))
        .await
        .unwrap();
    b.click(Locator::LinkText("Retry all matching")).await;
    b.wait_text("h1", "Confirm", Duration::from_secs(15)).await;
    b.click(Locator::Id("confirm")).await;
    b.wait_text(".flash", "Retried 1 jobs", Duration::from_secs(30))
        .await;
    wait_job(
        &http,
        &base,
        &dead,
        "run a third time",
        Duration::from_secs(60),
        |j, e| j["status"] == "morgued" && starts(e) == 9,
    )
    .await;

    b.close().await;
    drop(worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tokens_the_dashboard_needs_a_session() {
    if !tools::chromium("with_tokens_the_dashboard_needs_a_session") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("ui.db").display());
    let api = Api::start(
        emulator_host(),
        &store,
        &[("PUBSUB_JOBS_API_TOKENS", "first-token,second-token")],
    )
    .await;
    let base = api.base.clone();
    let b = Browser::start().await;

    // Asked for a token, then back to the page asked for.
    b.client.goto(&format!("{base}/ui/morgue")).await.unwrap();
    b.wait_text("h1", "Sign in", Duration::from_secs(15)).await;
    let token = b.client.find(Locator::Id("token")).await.unwrap();
    token.send_keys("wrong").await.unwrap();
    b.click(Locator::Css("form button[type=submit]")).await;
    b.wait_text("#token-error", "not one of", Duration::from_secs(15))
        .await;
    let token = b.client.find(Locator::Id("token")).await.unwrap();
    token.send_keys("second-token").await.unwrap();
    b.click(Locator::Css("main form button[type=submit]")).await;
    b.wait_text("h1", "Morgue", Duration::from_secs(15)).await;
    let cookie = b.client.get_named_cookie("pj_session").await.unwrap();
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");
    assert_eq!(
        b.js("return document.cookie.includes('pj_session');").await,
        json!(false),
        "scripts cannot read the session"
    );

    // Without the session: pages redirect to sign-in, actions get 401.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.get(format!("{base}/ui/jobs")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/ui/login?next="));
    let r = http
        .post(format!("{base}/ui/jobs/{}/cancel", uuid::Uuid::new_v4()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http.get(format!("{base}/v1/jobs")).send().await.unwrap();
    assert_eq!(r.status(), 401, "the JSON API still needs a bearer token");

    // Sign out: the session is gone.
    b.click(Locator::Css("header form button")).await;
    b.wait_text("h1", "Sign in", Duration::from_secs(15)).await;
    b.client.goto(&format!("{base}/ui/")).await.unwrap();
    b.wait_text("h1", "Sign in", Duration::from_secs(15)).await;
    b.close().await;
}

/// Saves a screenshot of each page at a realistic state into docs/screenshots (run by hand:
/// `cargo test -p pubsub-jobs-cli --test ui -- --ignored screenshots`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/screenshots; run by hand"]
async fn screenshots_for_the_docs() {
    if !tools::chromium("screenshots_for_the_docs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("ui.db").display());
    let api = Api::start(emulator_host(), &store, &[]).await;
    let base = api.base.clone();
    let mut workers = Vec::new();
    for queue in ["default", "mailers"] {
        let w = Running::start(
            queue,
            &[("MOCK_JOB_RETRY_WAIT", "4")],
            &["--store", &store, "--concurrency", "8"],
        );
        workers.push(w);
    }
    for w in &mut workers {
        w.wait_for("worker started", Duration::from_secs(60), |v| {
            v["message"] == "worker started"
        });
    }
    let http = reqwest::Client::new();
    let mut retried = String::new();
    for n in 0..60u32 {
        let queue = if n % 3 == 0 { "mailers" } else { "default" };
        let mut args = json!({"sleep_duration": (n % 7) as f64 * 0.15, "raise_error": false,
                              "customer_id": 1000 + n, "plan": if n % 2 == 0 { "pro" } else { "team" }});
        let mut body = json!({"job_class": "MockJob", "queue": queue});
        if n % 10 == 3 {
            args["raise_error"] = json!(true);
        } else if n % 10 == 5 {
            args["fail_attempts"] = json!(1);
        } else if n % 10 == 7 {
            body["wait_seconds"] = json!(600 + n * 30);
        }
        body["arguments"] = args;
        let id = submit(&http, &base, body).await;
        if n == 5 {
            retried = id;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    wait_job(
        &http,
        &base,
        &retried,
        "succeeded",
        Duration::from_secs(60),
        |j, _| j["status"] == "succeeded",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(12)).await; // the morgue fills
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    std::fs::create_dir_all(&out).unwrap();
    let b = Browser::start().await;
    let shots = [
        ("overview", "/ui/".to_string()),
        ("jobs", "/ui/jobs".to_string()),
        ("job", format!("/ui/jobs/{retried}")),
        ("morgue", "/ui/morgue".to_string()),
        ("scheduled", "/ui/scheduled".to_string()),
    ];
    for (name, path) in &shots {
        b.client.goto(&format!("{base}{path}")).await.unwrap();
        std::fs::write(
            out.join(format!("{name}.png")),
            b.client.screenshot().await.unwrap(),
        )
        .unwrap();
    }
    b.client.goto(&format!("{base}/ui/enqueue")).await.unwrap();
    let args = b.client.find(Locator::Id("arguments")).await.unwrap();
    args.clear().await.unwrap();
    args.send_keys(r#"{"sleep_duration": "soon"}"#)
        .await
        .unwrap();
    b.click(Locator::Id("submit")).await;
    b.wait_text("h1", "Enqueue", Duration::from_secs(10)).await;
    std::fs::write(
        out.join("enqueue.png"),
        b.client.screenshot().await.unwrap(),
    )
    .unwrap();
    b.client.set_window_size(390, 844).await.unwrap();
    b.client.goto(&format!("{base}/ui/")).await.unwrap();
    std::fs::write(out.join("phone.png"), b.client.screenshot().await.unwrap()).unwrap();
    b.close().await;
    let dark = Browser::start_with(&[
        "--force-dark-mode",
        "--blink-settings=preferredColorScheme=0",
    ])
    .await;
    dark.client.goto(&format!("{base}/ui/jobs")).await.unwrap();
    std::fs::write(
        out.join("dark.png"),
        dark.client.screenshot().await.unwrap(),
    )
    .unwrap();
    dark.close().await;
    drop(workers);
}
