//! The binary's tests' harness: the `worker` binary as a process, its JSON log lines as events;
//! with what every test binary shares (`tests/support/shared.rs`, `tools.rs`, `fault_proxy.rs`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

// One harness for `tests/` and `worker/tests/`: the shared parts live in `tests/support/`.
#[path = "../../../tests/support/fault_proxy.rs"]
pub(crate) mod fault_proxy;
pub(crate) mod iam_proxy;
#[path = "../../../tests/support/shared.rs"]
mod shared;
#[path = "../../../tests/support/tools.rs"]
pub(crate) mod tools;

pub(crate) use shared::*;

/// How many times the store shows job `id` started.
pub(crate) async fn starts(
    store: &std::sync::Arc<dyn pubsub_jobs::store::JobStore>,
    id: uuid::Uuid,
) -> usize {
    store
        .events(id)
        .await
        .expect("events")
        .iter()
        .filter(|e| e.kind == pubsub_jobs::store::EventKind::Started)
        .count()
}

pub(crate) fn worker() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_worker"));
    c.env("PUBSUB_EMULATOR_HOST", emulator_host())
        .env("PUBSUB_PROJECT_ID", "cli-tests")
        .env_remove("QUEUE_NAME")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

/// Runs a command to completion; returns (exit code, stdout, stderr).
pub(crate) fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = worker();
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.args(args).output().expect("run worker");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn enqueue(queue: &str, args: &str, extra: &[&str]) -> String {
    enqueue_with(queue, args, extra, &[])
}

/// [`enqueue`] with environment variables (another emulator host, a morgue, ...).
pub(crate) fn enqueue_with(
    queue: &str,
    args: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> String {
    let mut cmd = worker();
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .args(["enqueue", "MockJob", args, "--queue", queue])
        .args(extra)
        .output()
        .expect("run worker enqueue");
    assert!(
        out.status.success(),
        "enqueue failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A worker process whose JSON log lines arrive on a channel.
pub(crate) struct Running {
    pub child: Child,
    lines: Receiver<serde_json::Value>,
    pub seen: Vec<serde_json::Value>,
}

impl Running {
    pub(crate) fn start(queue: &str, env: &[(&str, &str)], extra: &[&str]) -> Self {
        let mut cmd = worker();
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .args(["--queue", queue, "--log-format", "json"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start worker");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let v: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a log line matching `pred`.
    pub(crate) fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(_) => panic!(
                    "no log line for {what} within {timeout:?}; saw {:#?}",
                    self.seen
                ),
            }
        }
    }

    /// Reads log lines until `cond` holds over everything seen so far.
    pub(crate) fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&[serde_json::Value]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !cond(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => self.seen.push(v),
                Err(_) => panic!("{what}: not within {timeout:?}"),
            }
        }
    }

    /// Reads whatever log lines arrive within `d`.
    pub(crate) fn read_for(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Ok(v) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(v);
        }
    }

    /// Ids of the jobs with a `name` event so far.
    pub(crate) fn job_ids(&self, name: &str) -> std::collections::HashSet<String> {
        self.seen
            .iter()
            .filter(|v| v["event"] == name)
            .filter_map(|v| v["job_id"].as_str().map(str::to_string))
            .collect()
    }

    /// Ids of the jobs of every `name` event so far, repeats kept.
    pub(crate) fn job_ids_all(&self, name: &str) -> Vec<String> {
        self.seen
            .iter()
            .filter(|v| v["event"] == name)
            .filter_map(|v| v["job_id"].as_str().map(str::to_string))
            .collect()
    }

    pub(crate) fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} failed");
    }

    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("worker did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    /// Stops the worker gracefully (a SIGKILLed worker leaves the emulator dispatching to its dead
    /// streams until their leases lapse, which would slow the next test step).
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn event<'a>(
    name: &'a str,
    job_id: &'a str,
) -> impl Fn(&serde_json::Value) -> bool + 'a {
    move |v| v["event"] == name && v["job_id"] == job_id
}

/// A TCP port free on loopback now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `worker api` process on Pub/Sub at `pubsub_host`.
pub(crate) struct Api {
    pub child: Child,
    pub base: String,
}

impl Api {
    pub(crate) async fn start(pubsub_host: &str, store: &str, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut cmd = worker();
        cmd.env("PUBSUB_EMULATOR_HOST", pubsub_host);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .args([
                "api",
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--store",
                store,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start worker api");
        let api = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{}/healthz", api.base)).send().await {
                if r.status().is_success() {
                    return api;
                }
            }
            assert!(Instant::now() < deadline, "worker api did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.kill();
    }
}
