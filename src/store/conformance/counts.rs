//! Counts: per queue and status, exact through every change; metrics; throughput per minute.

use super::*;

/// Counts per queue and status are exact.
pub async fn queue_counts_are_exact(s: &dyn JobStore, queue: &str) {
    for n in 0..3 {
        s.submit(new_job(queue, n)).await.expect("submit");
    }
    let run = new_job(queue, 10);
    s.submit(run.clone()).await.expect("submit");
    s.start(start_of(&run, 1)).await.expect("start");
    let cancelled = new_job(queue, 11);
    s.submit(cancelled.clone()).await.expect("submit");
    s.cancel(cancelled.id).await.expect("cancel");
    let mut counts: Vec<(JobStatus, u64)> = s
        .queue_counts()
        .await
        .expect("counts")
        .into_iter()
        .filter(|c| c.queue == queue)
        .map(|c| (c.status, c.count))
        .collect();
    counts.sort_by_key(|(st, _)| st.as_str());
    assert_eq!(
        counts,
        vec![
            (JobStatus::Cancelled, 1),
            (JobStatus::Pending, 3),
            (JobStatus::Running, 1)
        ]
    );
    s.ping().await.expect("ping");
}

/// Counts per queue and status stay exact through every kind of change: submits, starts,
/// retries, re-runs, duplicates, cancels, morgue and discard, before and after the deltas are
/// folded, and after a prune (pruned jobs leave the counts).
pub async fn queue_counts_stay_exact(s: &dyn JobStore, queue: &str) {
    use crate::store::{Retention, Transition};
    let counts = || async {
        let mut m = std::collections::BTreeMap::new();
        for c in s.queue_counts().await.expect("counts") {
            if c.queue == queue {
                m.insert(c.status.as_str().to_string(), c.count);
            }
        }
        m
    };
    let want = |pairs: &[(&str, u64)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let jobs: Vec<NewJob> = (0..6).map(|n| new_job(queue, n)).collect();
    for j in &jobs {
        s.submit(j.clone()).await.expect("submit");
    }
    assert_eq!(counts().await, want(&[("pending", 6)]));
    let run = Duration::from_millis(3);
    // 0 succeeds; 1 fails, retries, and succeeds on its re-run; 2 is morgued; 3 discarded;
    // 4 cancelled; 5 stays pending. A duplicate start of 0 changes nothing.
    for j in &jobs[..4] {
        assert_eq!(
            s.start(start_of(j, 1)).await.expect("start"),
            StartOutcome::Run
        );
    }
    assert_eq!(counts().await, want(&[("pending", 2), ("running", 4)]));
    let ok = || Transition::Succeeded { result: None, run };
    s.finish(jobs[0].id, 1, ok()).await.expect("finish");
    s.finish(
        jobs[1].id,
        1,
        Transition::Failed {
            error: "boom".into(),
            run,
            result: None,
        },
    )
    .await
    .expect("finish");
    s.finish(
        jobs[1].id,
        1,
        Transition::RetryScheduled {
            at: Utc::now() + chrono::Duration::seconds(1),
        },
    )
    .await
    .expect("finish");
    s.finish(
        jobs[2].id,
        1,
        Transition::Morgued {
            error: "dead".into(),
        },
    )
    .await
    .expect("finish");
    s.finish(jobs[3].id, 1, Transition::Discarded { error: "no".into() })
        .await
        .expect("finish");
    assert!(matches!(
        s.cancel(jobs[4].id).await.expect("cancel"),
        CancelOutcome::Cancelled(_)
    ));
    assert_eq!(
        s.start(start_of(&jobs[0], 1)).await.expect("start"),
        StartOutcome::AlreadyFinished
    );
    assert_eq!(
        counts().await,
        want(&[
            ("cancelled", 1),
            ("discarded", 1),
            ("morgued", 1),
            ("pending", 1),
            ("retrying", 1),
            ("succeeded", 1)
        ])
    );
    assert_eq!(
        s.start(start_of(&jobs[1], 2)).await.expect("start"),
        StartOutcome::Run
    );
    s.finish(jobs[1].id, 2, ok()).await.expect("finish");
    let settled = want(&[
        ("cancelled", 1),
        ("discarded", 1),
        ("morgued", 1),
        ("pending", 1),
        ("succeeded", 2),
    ]);
    assert_eq!(counts().await, settled);
    s.maintain(&Retention::keep_all()).await.expect("maintain");
    assert_eq!(counts().await, settled, "the same once folded");

    // A dry run counts; a prune of this queue's succeeded jobs removes them from the counts.
    let succeeded_only = Retention {
        succeeded: Some(Duration::ZERO),
        ..Retention::keep_all()
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let dry = s
        .prune_now(&succeeded_only, Some(queue), true)
        .await
        .expect("dry run");
    assert_eq!(dry.jobs, 2, "dry run");
    assert_eq!(counts().await, settled, "a dry run changes nothing");
    let pruned = s
        .prune_now(&succeeded_only, Some(queue), false)
        .await
        .expect("prune");
    assert_eq!(pruned.jobs, 2);
    assert!(pruned.events >= 6, "their events too: {pruned:?}");
    assert!(s.get(jobs[0].id).await.expect("get").is_none());
    assert!(s.events(jobs[1].id).await.expect("events").is_empty());
    assert_eq!(
        counts().await,
        want(&[
            ("cancelled", 1),
            ("discarded", 1),
            ("morgued", 1),
            ("pending", 1)
        ])
    );
    s.maintain(&Retention::keep_all()).await.expect("maintain");
    assert_eq!(
        counts().await,
        want(&[
            ("cancelled", 1),
            ("discarded", 1),
            ("morgued", 1),
            ("pending", 1)
        ])
    );
}

/// What [`aggregate_workload`] did.
#[derive(Debug)]
pub struct Workload {
    /// Events it appended.
    pub events: u64,
    /// Run times it recorded (one per finished execution).
    pub runs: Vec<Duration>,
    /// Jobs that ended succeeded.
    pub succeeded: u64,
    /// Jobs started (a first execution each).
    pub first_starts: u64,
}

/// A mixed workload on three queues `{prefix}0..2` (pending, succeeded, failed and re-run),
/// for checking aggregates against a scan on a store of its own.
pub async fn aggregate_workload(s: &dyn JobStore, prefix: &str) -> Workload {
    use crate::store::Transition;
    let mut w = Workload {
        events: 0,
        runs: Vec::new(),
        succeeded: 0,
        first_starts: 0,
    };
    for i in 0..60u32 {
        let job = new_job(&format!("{prefix}{}", i % 3), i);
        s.submit(job.clone()).await.expect("submit");
        w.events += 1;
        if i % 5 == 4 {
            continue; // stays pending
        }
        assert_eq!(
            s.start(start_of(&job, 1)).await.expect("start"),
            StartOutcome::Run
        );
        w.events += 1;
        w.first_starts += 1;
        let run = Duration::from_millis(u64::from(i) * 97 % 70_000);
        if i % 3 == 0 {
            let failed = Transition::Failed {
                error: "x".into(),
                run,
                result: None,
            };
            s.finish(job.id, 1, failed).await.expect("finish");
            w.runs.push(run);
            let retry = Transition::RetryScheduled { at: Utc::now() };
            s.finish(job.id, 1, retry).await.expect("finish");
            assert_eq!(
                s.start(start_of(&job, 2)).await.expect("start"),
                StartOutcome::Run
            );
            w.events += 3;
        }
        let ok = Transition::Succeeded { result: None, run };
        s.finish(job.id, 1, ok).await.expect("finish");
        w.runs.push(run);
        w.events += 1;
        w.succeeded += 1;
    }
    w
}

/// `/metrics` figures of a store that saw only `w`: every event counted, the run-time
/// histogram exact to the bucket.
pub fn check_metrics(m: &crate::store::MetricsSnapshot, w: &Workload) {
    let total: u64 = m.events.iter().map(|(_, n)| n).sum();
    assert_eq!(total, w.events, "every event counted");
    assert_eq!(m.run_time.count, w.runs.len() as u64);
    let sum: f64 = w.runs.iter().map(|r| r.as_millis() as f64 / 1000.0).sum();
    assert!((m.run_time.sum_seconds - sum).abs() < 1e-6);
    assert_eq!(
        m.run_time.buckets.len(),
        crate::store::HISTOGRAM_BOUNDS.len()
    );
    for (bound, cumulative) in &m.run_time.buckets {
        let want = w
            .runs
            .iter()
            .filter(|r| r.as_millis() as i64 <= (bound * 1000.0) as i64)
            .count() as u64;
        assert_eq!(*cumulative, want, "bucket {bound}");
    }
    assert_eq!(
        m.queue_latency.count, w.first_starts,
        "one queue latency per job started"
    );
}

/// Finished executions are counted per minute (other checks may add to the same minutes:
/// the counts grow by at least what this check finished).
pub async fn throughput_counts_finished_executions(s: &dyn JobStore, queue: &str) {
    let since = Utc::now() - chrono::Duration::minutes(1);
    let total = |m: &[crate::store::MinuteCount]| {
        (
            m.iter().map(|x| x.succeeded).sum::<u64>(),
            m.iter().map(|x| x.failed).sum::<u64>(),
        )
    };
    let (ok0, bad0) = total(&s.throughput(since).await.expect("throughput"));
    for n in 0..5 {
        let job = new_job(queue, n);
        s.submit(job.clone()).await.expect("submit");
        s.start(start_of(&job, 1)).await.expect("start");
        let t = if n < 3 {
            Transition::Succeeded {
                result: None,
                run: Duration::from_millis(1),
            }
        } else {
            Transition::Failed {
                error: "x".into(),
                run: Duration::from_millis(1),
                result: None,
            }
        };
        s.finish(job.id, 1, t).await.expect("finish");
    }
    // PostgreSQL folds deltas in the background; reads add the unfolded ones.
    let minutes = s.throughput(since).await.expect("throughput");
    let (ok1, bad1) = total(&minutes);
    assert!(ok1 >= ok0 + 3, "succeeded {ok0} -> {ok1}");
    assert!(bad1 >= bad0 + 2, "failed {bad0} -> {bad1}");
    let now_minute = Utc::now().timestamp().div_euclid(60);
    for m in &minutes {
        let minute = m.minute.timestamp();
        assert_eq!(minute % 60, 0, "minutes start on the minute");
        assert!(minute / 60 <= now_minute && minute / 60 >= now_minute - 2);
    }
    assert!(
        s.throughput(Utc::now() + chrono::Duration::minutes(2))
            .await
            .expect("throughput")
            .is_empty(),
        "nothing in the future"
    );
}
