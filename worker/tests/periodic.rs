//! Periodic jobs with real processes: three `worker --cron FILE` processes sharing a store (on
//! PostgreSQL, and on SQLite shared by processes on one machine), an every-second entry, one
//! process SIGKILLed midway: every tick of a 20 s window enqueued exactly once, each job run
//! once. And bad files refused at start, naming the entry and the field.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::*;
use pubsub_jobs::periodic::tick_job_id;
use pubsub_jobs::store::{JobStatus, JobStore};

fn write_cron(dir: &Path, name: &str, queue: &str) -> String {
    let path = dir.join("cron.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[[periodic]]
name = "{name}"
schedule = "* * * * * *"
job_class = "MockJob"
arguments = {{ sleep_duration = 0, raise_error = false }}
queue = "{queue}"
"#
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// Waits until the entry's newest claimed tick is at or past `t`.
async fn wait_for_tick(store: &Arc<dyn JobStore>, name: &str, t: DateTime<Utc>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let newest = store.periodic_ticks(name, 1).await.unwrap();
        if newest.first().is_some_and(|r| r.tick_at >= t) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no tick reached {t} in time: {newest:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn three_schedulers_enqueue_each_tick_once(store_url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let queue = unique("cronjobs");
    let name = unique("every-second");
    let file = write_cron(dir.path(), &name, &queue);
    let store = pubsub_jobs::store::connect(store_url).await.expect("store");
    let env = [
        ("PUBSUB_JOBS_STORE", store_url),
        ("PUBSUB_JOBS_RELAY_GRACE", "1"),
    ];
    // The schedulers run beside idle queues; one more worker, never killed, runs the jobs.
    let mut schedulers: Vec<Running> = (0..3)
        .map(|i| Running::start(&unique(&format!("cronidle{i}")), &env, &["--cron", &file]))
        .collect();
    let mut consumer = Running::start(&queue, &env, &[]);
    for s in &mut schedulers {
        s.wait_for("periodic.started", Duration::from_secs(30), |v| {
            v["event"] == "periodic.started"
        });
    }
    consumer.wait_for("worker started", Duration::from_secs(30), |v| {
        v["message"] == "worker started"
    });
    let t0 = Utc::now();
    let window_start = t0 + chrono::Duration::seconds(1);
    let window_end = window_start + chrono::Duration::seconds(20);

    wait_for_tick(&store, &name, t0 + chrono::Duration::seconds(10)).await;
    schedulers[0].child.kill().unwrap(); // SIGKILL, mid-window
    let _ = schedulers[0].child.wait();
    wait_for_tick(&store, &name, window_end).await;

    let ticks: Vec<_> = store
        .periodic_ticks(&name, 500)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.tick_at > window_start && t.tick_at <= window_end)
        .collect();
    let seconds: HashSet<i64> = ticks.iter().map(|t| t.tick_at.timestamp()).collect();
    let want: HashSet<i64> = (window_start.timestamp() + 1..=window_end.timestamp()).collect();
    assert_eq!(
        seconds, want,
        "every second of the window has its tick, none missing"
    );
    assert_eq!(ticks.len(), 20, "20 ticks in 20 s, each claimed once");
    for t in &ticks {
        assert_eq!(t.outcome, "enqueued");
        assert_eq!(
            t.job_id,
            Some(tick_job_id(&name, t.tick_at)),
            "the tick's job id"
        );
    }

    // Each tick's job runs exactly once.
    let deadline = Instant::now() + Duration::from_secs(60);
    for t in &ticks {
        let id = t.job_id.unwrap();
        loop {
            let status = store.get(id).await.unwrap().map(|r| r.status);
            if status == Some(JobStatus::Succeeded) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "tick {} job {id}: {status:?}",
                t.tick_at
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let starts = starts(&store, id).await;
        assert_eq!(starts, 1, "tick {} ran once", t.tick_at);
    }
    // And no scheduler logged enqueuing a tick another one enqueued.
    let mut enqueued = Vec::new();
    for s in &mut schedulers {
        s.read_for(Duration::from_millis(300));
        enqueued.extend(s.job_ids_all("periodic.enqueued"));
    }
    let unique_ids: HashSet<_> = enqueued.iter().collect();
    assert_eq!(
        unique_ids.len(),
        enqueued.len(),
        "each tick enqueued by one scheduler"
    );

    // The operator's view: `worker cron list`, then pause (ticks claimed, nothing enqueued)
    // and resume.
    let store_arg = ["--store", store_url];
    let (code, out, err) = run(&[&store_arg[..], &["cron", "list", "--json"]].concat(), &[]);
    assert_eq!(code, 0, "{err}");
    let listed: serde_json::Value = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["name"] == serde_json::json!(name))
        .expect("the entry is listed");
    assert_eq!(listed["paused"], false);
    assert!(listed["last_job_id"].is_string(), "{listed}");
    let (code, _, err) = run(&[&store_arg[..], &["cron", "pause", &name]].concat(), &[]);
    assert_eq!(code, 0, "{err}");
    let paused_at = Utc::now();
    wait_for_outcome(&store, &name, "paused", paused_at).await;
    let (code, _, err) = run(&[&store_arg[..], &["cron", "resume", &name]].concat(), &[]);
    assert_eq!(code, 0, "{err}");
    wait_for_outcome(&store, &name, "enqueued", Utc::now()).await;
    let (code, _, err) = run(
        &[&store_arg[..], &["cron", "pause", "no-such-entry"]].concat(),
        &[],
    );
    assert_eq!(code, 1);
    assert!(err.contains("no periodic entry \"no-such-entry\""), "{err}");
}

/// Waits until the entry's newest tick after `after` has `outcome`.
async fn wait_for_outcome(
    store: &Arc<dyn JobStore>,
    name: &str,
    outcome: &str,
    after: DateTime<Utc>,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let newest = store.periodic_ticks(name, 1).await.unwrap();
        if newest
            .first()
            .is_some_and(|t| t.outcome == outcome && t.tick_at > after)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {outcome} tick after {after}: {newest:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_schedulers_on_postgres_enqueue_each_tick_once_despite_a_kill() {
    three_schedulers_enqueue_each_tick_once(&postgres_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_schedulers_on_sqlite_enqueue_each_tick_once_despite_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    three_schedulers_enqueue_each_tick_once(&url).await;
}

#[test]
fn a_bad_cron_file_is_refused_at_start_naming_the_entry_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("jobs.db").display());
    let cases = [
        (
            "schedule = \"0 61 * * *\"\njob_class = \"MockJob\"\narguments = { sleep_duration = 0, raise_error = false }",
            "periodic entry \"report\": schedule: hour field",
        ),
        (
            "schedule = \"0 3 * * *\"\njob_class = \"Nope\"",
            "periodic entry \"report\": job_class: unknown job class \"Nope\"",
        ),
        (
            "schedule = \"0 3 * * *\"\njob_class = \"MockJob\"\narguments = { sleep_duration = \"soon\", raise_error = false }",
            "periodic entry \"report\": arguments: field `sleep_duration`",
        ),
        (
            "schedule = \"0 3 * * *\"\njob_class = \"MockJob\"\narguments = { sleep_duration = 0, raise_error = false }\ntimezone = \"Europe/Atlantis\"",
            "periodic entry \"report\": timezone: \"Europe/Atlantis\" is not an IANA timezone",
        ),
        (
            "schedul = \"0 3 * * *\"\njob_class = \"MockJob\"",
            "unknown field `schedul`",
        ),
    ];
    for (body, want) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, format!("[[periodic]]\nname = \"report\"\n{body}\n")).unwrap();
        let file = path.display().to_string();
        let (code, _, stderr) = run(
            &["--queue", "cronbad", "--store", &store, "--cron", &file],
            &[],
        );
        assert_eq!(code, 1, "refused: {stderr}");
        assert!(stderr.contains(want), "{want:?} in: {stderr}");
        assert!(stderr.contains(&file), "names the file: {stderr}");
    }
    // Without a store there is nowhere to claim ticks.
    std::fs::write(
        dir.path().join("ok.toml"),
        "[[periodic]]\nname = \"report\"\nschedule = \"@daily\"\njob_class = \"MockJob\"\narguments = { sleep_duration = 0, raise_error = false }\n",
    )
    .unwrap();
    let ok = dir.path().join("ok.toml").display().to_string();
    let (code, _, stderr) = run(
        &["--queue", "cronbad", "--cron", &ok],
        &[("PUBSUB_JOBS_STORE", "")],
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("needs a job store"), "{stderr}");
    let (code, stdout, _) = run(&["cron", "check", &ok], &[]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("report: @daily (UTC) -> MockJob"),
        "{stdout}"
    );
}
