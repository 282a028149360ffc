//! Reliability with real processes and the real emulator: workers killed mid-job or stopped under
//! load, hostile input, an emulator restart, a failing outcome publish, long jobs, a soak with churn.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use pubsub_jobs::broker::{Broker, OutboundMessage, PubSubBroker};
use pubsub_jobs::envelope::Envelope;

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Peak resident memory of a process, in MB (VmHWM).
fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[test]
fn a_worker_killed_mid_job_loses_nothing_the_job_completes_on_another() {
    let q = unique("kill");
    let deadline = ["--ack-deadline", "10"];
    let mut a = Running::start(&q, &[], &deadline);
    a.wait_for("worker a started", Duration::from_secs(60), |v| {
        v["message"] == "worker started"
    });
    let id = enqueue(&q, r#"{"sleep_duration":4,"raise_error":false}"#, &[]);
    a.wait_for(
        "job started on a",
        Duration::from_secs(60),
        event("job.started", &id),
    );
    let mut b = Running::start(&q, &[], &deadline);
    b.wait_for("worker b started", Duration::from_secs(60), |v| {
        v["message"] == "worker started"
    });
    a.signal("-KILL");
    assert_eq!(
        a.wait_exit(Duration::from_secs(10)),
        -1,
        "killed by a signal"
    );
    let killed_at = Instant::now();
    // Redelivered once the 10 s lease lapses (the emulator may first hand it to the dead
    // worker's streams; see the README), then it runs to the end on b.
    let started = b.wait_for(
        "job redelivered to b",
        Duration::from_secs(150),
        event("job.started", &id),
    );
    assert_eq!(started["attempt"], 1, "a redelivery is not a retry");
    b.wait_for(
        "job completes on b",
        Duration::from_secs(30),
        event("job.succeeded", &id),
    );
    eprintln!(
        "killed job redelivered and completed {:.1} s after the kill",
        killed_at.elapsed().as_secs_f64()
    );
}

/// A job that kills its worker every run, under a supervisor that restarts the worker:
/// the queue's dead-letter policy moves it to the morgue after its deliveries, and the jobs
/// delivered beside it run.
///
/// The jobs beside it are enqueued before the first worker starts, so that they run on a
/// live one: the emulator keeps handing messages to a killed worker's streams (each hand-off
/// counts as a delivery and costs a lease), so a job enqueued between crashes can be
/// dead-lettered there too, which the real service, whose streams close with their client,
/// does not do.
#[test]
fn a_job_that_kills_its_worker_every_run_ends_in_the_morgue_and_the_others_run() {
    let q = unique("crashloop");
    let morgue = unique("morgue");
    let env = [
        ("PUBSUB_MORGUE_QUEUE", morgue.as_str()),
        ("PUBSUB_JOBS_MAX_DELIVERY_ATTEMPTS", "5"),
        ("MOCK_JOB_ALLOW_CRASH", "1"),
    ];
    let (code, _, err) = run(&["queues", "setup", &q], &env);
    assert_eq!(code, 0, "{err}");
    // It sleeps a second first, so that the jobs beside it finish and are acked before the abort.
    let poison = enqueue(
        &q,
        r#"{"sleep_duration":1,"raise_error":false,"crash":true}"#,
        &[],
    );
    let good: Vec<String> = (0..10)
        .map(|_| enqueue(&q, r#"{"sleep_duration":0,"raise_error":false}"#, &[]))
        .collect();
    let mut succeeded = std::collections::HashSet::new();
    let mut crashes = 0;
    let started = Instant::now();
    let dead = loop {
        assert!(
            started.elapsed() < Duration::from_secs(400),
            "the crashing job was not dead-lettered after {crashes} crashes"
        );
        let flags = ["--ack-deadline", "10", "--concurrency", "20"];
        let mut w = Running::start(&q, &env, &flags);
        // Until it crashes, or 25 s without a crash (the poison is waiting out a lease, or gone).
        let deadline = Instant::now() + Duration::from_secs(25);
        while Instant::now() < deadline && w.child.try_wait().unwrap().is_none() {
            w.read_for(Duration::from_millis(200));
        }
        w.read_for(Duration::from_millis(200));
        if let Some(status) = w.child.try_wait().unwrap() {
            assert!(
                status.code().is_none(),
                "the worker died of the abort: {status:?}"
            );
            crashes += 1;
        }
        succeeded.extend(w.job_ids("job.succeeded"));
        drop(w);
        let (code, out, err) = run(&["morgue", "list", "--json"], &env);
        assert_eq!(code, 0, "{err}");
        let rows: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if let Some(r) = rows.iter().find(|r| r["job_id"] == poison.as_str()) {
            assert_eq!(rows.len(), 1, "only the crashing job is dead: {rows:?}");
            break r.clone();
        }
    };
    let reason = dead["error"].as_str().unwrap();
    assert!(
        reason.starts_with("delivered 5 times without an outcome"),
        "{reason}"
    );
    assert_eq!(dead["source_queue"], q.as_str());
    assert_eq!(dead["job_class"], "MockJob");
    assert!((1..=5).contains(&crashes), "{crashes} crashes");
    let missing: Vec<&String> = good.iter().filter(|id| !succeeded.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "jobs beside the crashing one that never ran: {missing:?}"
    );
    eprintln!(
        "dead-lettered after {crashes} crashes in {:.0} s; the {} jobs beside it ran",
        started.elapsed().as_secs_f64(),
        good.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_ends_in_the_morgue_with_a_reason_and_the_worker_stays_up() {
    let q = unique("hostile");
    let morgue = unique("morgue");
    let env = [("PUBSUB_MORGUE_QUEUE", morgue.as_str())];
    let mut w = Running::start(&q, &env, &[]);
    let pid = w.child.id();
    w.wait_for("worker started", Duration::from_secs(60), |v| {
        v["message"] == "worker started"
    });

    let broker = PubSubBroker::connect("cli-tests", Some(emulator_host()), Duration::from_secs(60))
        .await
        .unwrap();
    let mut msgs = Vec::new();
    for i in 0..1000usize {
        let mut attributes = HashMap::new();
        let data: Vec<u8> = match i % 10 {
            0 => b"{\"format_version\":1,\"job_class\":".to_vec(),
            1 => Envelope::new(
                "MockJob",
                &q,
                serde_json::json!({"sleep_duration": "slow", "raise_error": 1}),
            )
            .to_body(),
            2 => Envelope::new("NoSuchJob", &q, serde_json::json!({})).to_body(),
            3 => br#"{"format_version":1,"job_class":"MockJob"}"#.to_vec(),
            4 => {
                let mut v =
                    serde_json::to_value(Envelope::new("MockJob", &q, serde_json::json!({})))
                        .unwrap();
                v["format_version"] = 99.into();
                serde_json::to_vec(&v).unwrap()
            }
            5 => (0..512).map(|b| ((b * 7 + i) % 256) as u8).collect(),
            6 => {
                // Pub/Sub refuses a message with neither data nor attributes.
                attributes.insert("note".to_string(), "empty body".to_string());
                Vec::new()
            }
            7 if i % 100 == 7 => {
                let mut big = b"{\"x\":\"".to_vec();
                big.resize(9 * 1024 * 1024, b'a');
                big
            }
            7 => b"[]".to_vec(),
            8 => {
                let e = Envelope::new(
                    "MockJob",
                    &q,
                    serde_json::json!({"sleep_duration": 0, "raise_error": false}),
                );
                attributes = e.attributes();
                attributes.insert("job_class".to_string(), "SomethingElse".to_string());
                e.to_body()
            }
            _ => Envelope::new("MockJob", &q, serde_json::json!([1, 2, 3])).to_body(),
        };
        msgs.push(OutboundMessage { data, attributes });
    }
    // Publish in batches that stay under the request limit.
    let topic = q.clone();
    let mut batch = Vec::new();
    let mut bytes = 0;
    for m in msgs {
        if bytes + m.data.len() > 9_500_000 || batch.len() >= 500 {
            broker
                .publish(&topic, &std::mem::take(&mut batch))
                .await
                .unwrap();
            bytes = 0;
        }
        bytes += m.data.len();
        batch.push(m);
    }
    broker.publish(&topic, &batch).await.unwrap();

    // The worker stays up and keeps running good jobs.
    let good = enqueue(&q, r#"{"sleep_duration":0,"raise_error":false}"#, &[]);
    let w2 = tokio::task::spawn_blocking(move || {
        w.wait_for(
            "good job after the garbage",
            Duration::from_secs(120),
            event("job.succeeded", &good),
        );
        w
    });
    let w = w2.await.unwrap();
    assert!(pid_alive(pid), "the worker died");

    // Every hostile message is in the morgue, each with a reason.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut rows: Vec<serde_json::Value> = Vec::new();
    while Instant::now() < deadline {
        let (code, stdout, stderr) = tokio::task::spawn_blocking({
            let env: Vec<(String, String)> = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            move || {
                let env: Vec<(&str, &str)> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                run(&["morgue", "list", "--json", "--limit", "2000"], &env)
            }
        })
        .await
        .unwrap();
        assert_eq!(code, 0, "{stderr}");
        rows = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if rows.len() >= 1000 {
            break;
        }
    }
    assert_eq!(rows.len(), 1000, "hostile messages in the morgue");
    for r in &rows {
        let reason = r["error"].as_str().unwrap_or("");
        assert!(!reason.is_empty(), "no reason: {r}");
        assert_eq!(r["source_queue"], q.as_str());
    }
    let has = |s: &str| {
        rows.iter()
            .filter(|r| r["error"].as_str().unwrap().contains(s))
            .count()
    };
    let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
    for r in &rows {
        let reason = r["error"].as_str().unwrap();
        *reasons
            .entry(reason.chars().take(60).collect())
            .or_default() += 1;
    }
    eprintln!("morgue reasons (first 60 characters): {reasons:#?}");
    assert_eq!(has("unknown job class \"NoSuchJob\""), 100);
    assert_eq!(has("format version 99 is newer"), 100);
    assert_eq!(has("attribute job_class is \"SomethingElse\""), 100);
    assert_eq!(
        has("arguments for job class MockJob do not deserialize"),
        200
    );
    assert!(
        has("field `raise_error`") >= 100,
        "the reason names the field"
    );
    assert!(
        has("body is not JSON") >= 200,
        "truncated JSON and binary garbage"
    );
    assert_eq!(has("empty body"), 100);
    let rss = peak_rss_mb(pid).unwrap_or(0.0);
    eprintln!("worker peak RSS after 1,000 hostile messages (10 of them 9 MB): {rss:.1} MB");
    assert!(rss < 512.0, "worker memory grew to {rss:.1} MB");
    drop(w);
}

#[test]
fn sigterm_under_load_finishes_or_releases_everything_and_a_new_worker_takes_over_at_once() {
    let q = unique("drain");
    let flags = [
        "--concurrency",
        "50",
        "--prefetch",
        "20",
        "--ack-deadline",
        "10",
        "--shutdown-timeout",
        "25",
    ];
    let mut a = Running::start(&q, &[], &flags);
    a.wait_for("a started", Duration::from_secs(60), |v| {
        v["message"] == "worker started"
    });
    let ids: Vec<String> = (0..70)
        .map(|_| enqueue(&q, r#"{"sleep_duration":3,"raise_error":false}"#, &[]))
        .collect();
    let started =
        |seen: &[serde_json::Value]| seen.iter().filter(|v| v["event"] == "job.started").count();
    a.wait_until("50 jobs running on a", Duration::from_secs(60), |seen| {
        started(seen) >= 50
    });
    let mut b = Running::start(&q, &[], &["--concurrency", "50"]);
    b.wait_for("b started", Duration::from_secs(60), |v| {
        v["message"] == "worker started"
    });
    a.signal("-TERM");
    assert_eq!(
        a.wait_exit(Duration::from_secs(40)),
        0,
        "exit code after SIGTERM under load"
    );
    let exited = Instant::now();
    a.wait_for("stop summary", Duration::from_secs(5), |v| {
        v["message"] == "worker stopped"
    });
    let done_a = a.job_ids("job.succeeded");
    assert_eq!(
        a.job_ids("job.started"),
        done_a,
        "every job a started finished before it exited"
    );
    // The rest run on b, soon: released at once, not left for a lease to lapse.
    let rest: Vec<&String> = ids.iter().filter(|id| !done_a.contains(*id)).collect();
    b.wait_until(
        "released jobs started on b",
        Duration::from_secs(60),
        |seen| {
            rest.iter().all(|id| {
                seen.iter()
                    .any(|v| v["event"] == "job.started" && v["job_id"] == id.as_str())
            })
        },
    );
    let waited = exited.elapsed();
    b.wait_until("released jobs done on b", Duration::from_secs(60), |seen| {
        rest.iter().all(|id| {
            seen.iter()
                .any(|v| v["event"] == "job.succeeded" && v["job_id"] == id.as_str())
        })
    });
    assert!(
        waited < Duration::from_secs(8),
        "released jobs started {:.1} s after a exited: they waited for a lease (10 s) to lapse",
        waited.as_secs_f64()
    );
    eprintln!(
        "a finished {} jobs; {} released jobs all started on b within {:.1} s of a's exit",
        done_a.len(),
        rest.len(),
        waited.as_secs_f64()
    );
}

/// CPU seconds (user + system) a process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

#[test]
fn workers_survive_an_emulator_restart_and_enqueue_fails_fast_while_it_is_down() {
    use pubsub_jobs::emulator::Emulator;
    let mut emu = Emulator::start().expect("start a private emulator");
    let host = emu.host().to_string();
    let port: u16 = host.rsplit(':').next().unwrap().parse().unwrap();
    let env = [
        ("PUBSUB_EMULATOR_HOST", host.as_str()),
        ("PUBSUB_TIMEOUT_SECONDS", "3"),
    ];
    let q = unique("restart");
    let enqueue_here = |args: &str| run(&["enqueue", "MockJob", args, "--queue", &q], &env);
    let job = r#"{"sleep_duration":0,"raise_error":false}"#;

    let mut w = Running::start(&q, &env, &[]);
    let pid = w.child.id();
    let (code, first, err) = enqueue_here(job);
    assert_eq!(code, 0, "{err}");
    w.wait_for(
        "first job",
        Duration::from_secs(60),
        event("job.succeeded", first.trim()),
    );

    emu.stop();
    let t = Instant::now();
    let (code, _, err) = enqueue_here(job);
    let took = t.elapsed();
    assert_eq!(code, 1, "enqueue while the emulator is down must fail");
    assert!(
        err.contains(&format!("cannot reach Pub/Sub at the emulator {host}"))
            || err.contains("timed out"),
        "unclear error: {err}"
    );
    assert!(
        took < Duration::from_secs(10),
        "enqueue took {took:?} to fail (timeout 3 s)"
    );

    // Down for a while: the worker neither crashes nor spins.
    let cpu0 = cpu_seconds(pid);
    let down = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let cpu = cpu_seconds(pid) - cpu0;
    assert!(
        pid_alive(pid),
        "the worker died while the emulator was down"
    );
    assert!(
        cpu < 0.5 * down.elapsed().as_secs_f64(),
        "the worker burned {cpu:.2} CPU s in {:.1} s while the emulator was down",
        down.elapsed().as_secs_f64()
    );

    let _emu2 = Emulator::start_on(port).expect("restart the emulator on the same port");
    let back = Instant::now();
    let (code, third, err) = enqueue_here(job);
    assert_eq!(code, 0, "enqueue after the restart: {err}");
    w.wait_for(
        "job after the restart",
        Duration::from_secs(60),
        event("job.succeeded", third.trim()),
    );
    let resumed = back.elapsed();
    eprintln!(
        "enqueue failed after {:.1} s while down; worker CPU while down {cpu:.2} s; resumed {:.1} s after the emulator returned",
        took.as_secs_f64(),
        resumed.as_secs_f64()
    );
    assert!(
        resumed < Duration::from_secs(15),
        "resumed only after {resumed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_morgue_publish_fails_the_job_is_not_acked_and_comes_back() {
    use gcloud_gax::conn::Environment;
    use gcloud_pubsub::client::{Client, ClientConfig};
    let q = unique("outcome");
    let morgue = unique("morgue");
    let env = [
        ("PUBSUB_MORGUE_QUEUE", morgue.as_str()),
        ("MOCK_JOB_RETRY_WAIT", "0.2"),
    ];
    let w = tokio::task::spawn_blocking({
        let (q, env) = (q.clone(), env.map(|(k, v)| (k.to_string(), v.to_string())));
        move || {
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let mut w = Running::start(&q, &env, &["--ack-deadline", "10"]);
            w.wait_for("started", Duration::from_secs(60), |v| {
                v["message"] == "worker started"
            });
            w
        }
    })
    .await
    .unwrap();
    // The worker created the morgue; now delete its topic (the subscription stays, detached).
    let cfg = ClientConfig {
        environment: Environment::Emulator(emulator_host().to_string()),
        project_id: Some("cli-tests".into()),
        ..Default::default()
    };
    let admin = Client::new(cfg).await.unwrap();
    admin.topic(&morgue).delete(None).await.unwrap();

    let (q2, env2) = (q.clone(), env.map(|(k, v)| (k.to_string(), v.to_string())));
    let admin2 = admin.clone();
    let morgue2 = morgue.clone();
    let w = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env2.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (code, id, err) = run(
            &[
                "enqueue",
                "MockJob",
                r#"{"sleep_duration":0,"raise_error":true}"#,
                "--queue",
                &q2,
            ],
            &env,
        );
        assert_eq!(code, 0, "{err}");
        let id = id.trim().to_string();
        let mut w = w;
        // Retries spent, the morgue publish fails: logged, not acked.
        w.wait_for("morgue publish fails", Duration::from_secs(60), |v| {
            v["level"] == "ERROR"
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("could not publish the morgue message"))
        });
        assert!(
            !w.seen.iter().any(|v| v["event"] == "job.morgued"),
            "claimed a morgue it could not write"
        );
        // It comes back and fails again: nothing was lost.
        w.seen.retain(|v| v["event"] != "job.started");
        w.wait_for("the job comes back", Duration::from_secs(60), |v| {
            v["event"] == "job.started" && v["job_id"] == id.as_str() && v["attempt"] == 3
        });
        // The operator removes the detached subscription: the worker recreates the morgue.
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(admin2.subscription(&morgue2).delete(None))
            .unwrap();
        w.wait_for(
            "finally in the morgue",
            Duration::from_secs(60),
            event("job.morgued", &id),
        );
        w
    })
    .await
    .unwrap();
    drop(w);
}

#[test]
fn fifty_jobs_three_times_the_ack_deadline_run_exactly_once() {
    let q = unique("long");
    let flags = [
        "--concurrency",
        "50",
        "--prefetch",
        "10",
        "--ack-deadline",
        "10",
    ];
    let mut a = Running::start(&q, &[], &flags);
    let mut b = Running::start(&q, &[], &flags);
    for w in [&mut a, &mut b] {
        w.wait_for("started", Duration::from_secs(60), |v| {
            v["message"] == "worker started"
        });
    }
    let ids: Vec<String> = (0..50)
        .map(|_| enqueue(&q, r#"{"sleep_duration":30,"raise_error":false}"#, &[]))
        .collect();
    // Both workers keep pulling the whole time: a lapsed lease would show as a second start.
    let done = |w: &Running| w.job_ids("job.succeeded").len();
    let deadline = Instant::now() + Duration::from_secs(150);
    while done(&a) + done(&b) < 50 {
        assert!(
            Instant::now() < deadline,
            "only {} of 50 long jobs finished",
            done(&a) + done(&b)
        );
        a.read_for(Duration::from_millis(250));
        b.read_for(Duration::from_millis(250));
    }
    let starts = |w: &Running| {
        w.seen
            .iter()
            .filter(|v| v["event"] == "job.started")
            .filter_map(|v| v["job_id"].as_str().map(str::to_string))
            .collect::<Vec<_>>()
    };
    let mut all = starts(&a);
    all.extend(starts(&b));
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(before, 50, "50 jobs started {before} times: some ran twice");
    assert_eq!(all.len(), 50);
    for id in &ids {
        assert!(all.contains(id), "job {id} never ran");
    }
}

#[test]
fn a_short_soak_with_churn_loses_nothing() {
    let out = Command::new(env!("CARGO_BIN_EXE_soak"))
        .args([
            "--seconds",
            "20",
            "--rate",
            "10",
            "--kill-every",
            "7",
            "--drain-seconds",
            "150",
        ])
        .env("PUBSUB_EMULATOR_HOST", emulator_host())
        .stdin(Stdio::null())
        .output()
        .expect("run the soak harness");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "soak failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" lost 0 "), "{stdout}");
    assert!(stdout.contains("kills 2"), "{stdout}");
}
