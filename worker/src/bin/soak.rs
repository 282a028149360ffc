//! Soak with churn: several `worker` processes on one queue under steady load with failing jobs,
//! one of them SIGKILLed and restarted every few seconds. At the end every enqueued job must be
//! accounted for: succeeded, or in the morgue after exactly its attempts. A job may run twice only
//! where a kill explains it (the killed worker ran it, a kill duplicated an earlier attempt, or a
//! kill hit a scheduler moving the retry from `.scheduled` to the queue). Prints the counts; exits non-zero if a job is lost or duplicated
//! without a kill to explain it.
//!
//! ```text
//! cargo run --release -p pubsub-jobs-cli --bin soak                       # the long run: 2 min at 20 jobs/s
//! cargo run -p pubsub-jobs-cli --bin soak -- --seconds 20 --kill-every 7  # the short run CI does
//! ```

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Sender};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use pubsub_jobs::emulator::Emulator;
use pubsub_jobs::{Client, ClientConfig};
use pubsub_jobs_cli::mock_job::MockJob;
use rand::SeedableRng;

#[derive(Parser, Debug)]
#[command(about = "Soak pubsub-jobs workers with load, failures and SIGKILLs")]
struct Args {
    /// Worker processes.
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// Jobs per second.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Seconds of load.
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    /// Share of jobs that always fail (3 attempts, then the morgue).
    #[arg(long, default_value_t = 0.2)]
    fail_ratio: f64,
    /// Longest job sleep, seconds.
    #[arg(long, default_value_t = 1.0)]
    max_sleep: f64,
    /// Seconds between SIGKILLs (one worker, round robin, restarted at once).
    #[arg(long, default_value_t = 20)]
    kill_every: u64,
    /// Seconds to wait after the load for every job to settle.
    #[arg(long, default_value_t = 240)]
    drain_seconds: u64,
}

/// One log event of one worker instance.
struct Event {
    instance: usize,
    value: serde_json::Value,
    /// When the harness read it.
    at: Instant,
}

struct WorkerProc {
    child: Child,
    instance: usize,
}

fn start_worker(
    bin: &std::path::Path,
    host: &str,
    queue: &str,
    morgue: &str,
    instance: usize,
    tx: Sender<Event>,
) -> anyhow::Result<WorkerProc> {
    let mut child = Command::new(bin)
        .args([
            "--queue",
            queue,
            "--log-format",
            "json",
            "--ack-deadline",
            "10",
            "--concurrency",
            "10",
        ])
        .env("PUBSUB_EMULATOR_HOST", host)
        .env("PUBSUB_PROJECT_ID", "soak")
        .env("PUBSUB_MORGUE_QUEUE", morgue)
        .env("MOCK_JOB_RETRY_WAIT", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stderr = child.stderr.take().context("worker stderr")?;
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
                let at = Instant::now();
                if tx
                    .send(Event {
                        instance,
                        value,
                        at,
                    })
                    .is_err()
                {
                    break;
                }
            }
        }
    });
    Ok(WorkerProc { child, instance })
}

#[derive(Default)]
struct JobState {
    fails: bool,
    /// (instance, attempt, when) of every start.
    starts: Vec<(usize, u64, Instant)>,
    succeeded: bool,
    morgued_attempts: Vec<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.workers < 2 {
        bail!("--workers must be at least 2 (one is killed at a time)");
    }
    let bin = std::env::current_exe()?.with_file_name("worker");
    if !bin.exists() {
        bail!(
            "the worker binary is not at {} (build it: cargo build -p pubsub-jobs-cli)",
            bin.display()
        );
    }
    let _emulator;
    let host = match std::env::var("PUBSUB_EMULATOR_HOST")
        .ok()
        .filter(|h| !h.is_empty())
    {
        Some(h) => h,
        None => {
            let emu = Emulator::start()?;
            let h = emu.host().to_string();
            _emulator = emu;
            h
        }
    };
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let queue = format!("soak-{suffix}");
    let morgue = format!("soak-morgue-{suffix}");
    let client = Client::connect(ClientConfig {
        project_id: "soak".into(),
        morgue_queue: morgue.clone(),
        emulator_host: Some(host.clone()),
        ..ClientConfig::default()
    })
    .await?;
    client.ensure_queue(&queue).await?;
    client.ensure_morgue().await?;

    let (tx, rx) = channel::<Event>();
    let mut instances = 0usize;
    let mut workers = Vec::new();
    for _ in 0..args.workers {
        workers.push(start_worker(
            &bin,
            &host,
            &queue,
            &morgue,
            instances,
            tx.clone(),
        )?);
        instances += 1;
    }
    println!(
        "soak: {} workers on {queue}, {} jobs/s for {} s, {:.0}% failing, a SIGKILL every {} s",
        args.workers,
        args.rate,
        args.seconds,
        args.fail_ratio * 100.0,
        args.kill_every
    );

    let mut jobs: HashMap<String, JobState> = HashMap::new();
    let mut killed: Vec<usize> = Vec::new();
    let mut kill_times: Vec<Instant> = Vec::new();
    let mut rng = rand::rngs::StdRng::from_entropy();
    let started = Instant::now();
    let load_end = started + Duration::from_secs(args.seconds);
    let mut next_kill = started + Duration::from_secs(args.kill_every);
    let mut sent = 0u64;
    let mut victim = 0usize;
    let mut events: Vec<Event> = Vec::new();
    while Instant::now() < load_end {
        let due = (started.elapsed().as_secs_f64() * args.rate) as u64;
        if due > sent {
            let batch: Vec<MockJob> = (sent..due)
                .map(|_| MockJob::random(&mut rng, args.max_sleep, args.fail_ratio))
                .collect();
            let fails: Vec<bool> = batch.iter().map(|j| j.raise_error).collect();
            let ids = client.perform_all_later_on(&queue, batch).await?;
            for (id, fails) in ids.into_iter().zip(fails) {
                jobs.insert(
                    id.to_string(),
                    JobState {
                        fails,
                        ..Default::default()
                    },
                );
            }
            sent = due;
        }
        if Instant::now() >= next_kill {
            let w = &mut workers[victim % args.workers];
            let _ = w.child.kill();
            let _ = w.child.wait();
            killed.push(w.instance);
            kill_times.push(Instant::now());
            println!(
                "[{:>5.1}s] SIGKILL worker instance {}; restarting",
                started.elapsed().as_secs_f64(),
                w.instance
            );
            *w = start_worker(&bin, &host, &queue, &morgue, instances, tx.clone())?;
            instances += 1;
            victim += 1;
            next_kill += Duration::from_secs(args.kill_every);
        }
        events.extend(rx.try_iter());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "[{:>5.1}s] load done: {sent} jobs enqueued; draining",
        started.elapsed().as_secs_f64()
    );

    // Drain: until every job has settled or the deadline passes.
    let drain_start = Instant::now();
    let drain_end = drain_start + Duration::from_secs(args.drain_seconds);
    let mut last_report = Instant::now();
    loop {
        events.extend(rx.try_iter());
        apply(&mut jobs, &mut events);
        let open = jobs
            .values()
            .filter(|j| !j.succeeded && j.morgued_attempts.is_empty())
            .count();
        if open == 0 || Instant::now() > drain_end {
            println!(
                "[{:>5.1}s] drained for {:.1} s: {open} jobs not settled",
                started.elapsed().as_secs_f64(),
                drain_start.elapsed().as_secs_f64()
            );
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            println!(
                "[{:>5.1}s] {open} jobs not settled yet",
                started.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Stop the workers gracefully and read their last lines.
    for w in &workers {
        let _ = Command::new("kill")
            .args(["-TERM", &w.child.id().to_string()])
            .status();
    }
    for w in &mut workers {
        let _ = w.child.wait();
    }
    std::thread::sleep(Duration::from_millis(200));
    events.extend(rx.try_iter());
    apply(&mut jobs, &mut events);

    // Account for every job.
    let killed: HashSet<usize> = killed.into_iter().collect();
    let (
        mut succeeded,
        mut morgued,
        mut lost,
        mut dup_explained,
        mut dup_unexplained,
        mut wrong_attempts,
    ) = (0, 0, Vec::new(), 0, Vec::new(), Vec::new());
    for (id, j) in &jobs {
        if j.fails {
            if j.morgued_attempts.is_empty() {
                lost.push(id.clone());
            } else {
                morgued += 1;
                if j.morgued_attempts.iter().any(|a| *a != 3) {
                    wrong_attempts.push(id.clone());
                }
            }
        } else if j.succeeded {
            succeeded += 1;
        } else {
            lost.push(id.clone());
        }
        let mut per_attempt: std::collections::BTreeMap<u64, Vec<(usize, Instant)>> =
            Default::default();
        for (instance, attempt, at) in &j.starts {
            per_attempt
                .entry(*attempt)
                .or_default()
                .push((*instance, *at));
        }
        // A kill can interrupt a run, or land between its outcome and its ack: either way the
        // message comes back. A duplicated run publishes a duplicated retry, so later attempts of
        // that job may run twice too. And a retry waits in the queue's `.scheduled`
        // subscription, where a worker's scheduler moves it to the queue and then acks it: a
        // scheduler killed in between leaves it to be moved again, so a kill between the
        // previous attempt's start and this attempt's last start explains a duplicate too.
        let mut cascade = false;
        let mut previous_start: Option<Instant> = None;
        for (attempt, runs) in per_attempt {
            let insts: Vec<usize> = runs.iter().map(|(i, _)| *i).collect();
            let first = runs.iter().map(|(_, at)| *at).min();
            let last = runs.iter().map(|(_, at)| *at).max();
            let moved_by_a_killed_scheduler = attempt > 1
                && match (previous_start, last) {
                    (Some(from), Some(to)) => kill_times.iter().any(|k| *k >= from && *k <= to),
                    _ => false,
                };
            previous_start = first;
            if insts.len() > 1 {
                if cascade
                    || moved_by_a_killed_scheduler
                    || insts.iter().any(|i| killed.contains(i))
                {
                    cascade = true;
                    dup_explained += insts.len() - 1;
                } else {
                    dup_unexplained.push(format!("{id} attempt {attempt} on {insts:?}"));
                }
            }
        }
    }
    println!(
        "enqueued {}  succeeded {succeeded}  morgued {morgued}  lost {}  duplicated {} (all after a kill: {})  kills {}",
        jobs.len(),
        lost.len(),
        dup_explained + dup_unexplained.len(),
        dup_unexplained.is_empty(),
        killed.len()
    );
    if !lost.is_empty() {
        bail!(
            "{} job(s) lost, for instance {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
    }
    if !wrong_attempts.is_empty() {
        bail!(
            "{} job(s) in the morgue after other than 3 attempts: {:?}",
            wrong_attempts.len(),
            &wrong_attempts[..wrong_attempts.len().min(5)]
        );
    }
    if !dup_unexplained.is_empty() {
        bail!(
            "duplicate executions no kill explains: {:?}",
            &dup_unexplained[..dup_unexplained.len().min(5)]
        );
    }
    println!("ok: every job accounted for");
    Ok(())
}

fn apply(jobs: &mut HashMap<String, JobState>, events: &mut Vec<Event>) {
    for e in events.drain(..) {
        let v = &e.value;
        let (Some(name), Some(id)) = (v["event"].as_str(), v["job_id"].as_str()) else {
            continue;
        };
        let Some(j) = jobs.get_mut(id) else { continue };
        let attempt = v["attempt"].as_u64().unwrap_or(0);
        match name {
            "job.started" => j.starts.push((e.instance, attempt, e.at)),
            "job.succeeded" => j.succeeded = true,
            "job.morgued" => j.morgued_attempts.push(attempt),
            _ => {}
        }
    }
}
