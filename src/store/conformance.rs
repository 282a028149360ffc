//! The store conformance suite: the contract of every [`JobStore`] method, checked the same way
//! against every implementation. The crate runs it against SQLite in memory in its unit tests and
//! against PostgreSQL in `tests/conformance.rs`; a new [`JobStore`] runs it with
//! [`store_conformance_tests!`](crate::store_conformance_tests).
//!
//! Checks may share one database: each works in a queue of its own (the `queue` argument) and
//! with fresh job ids and dedup keys, and counts only what it made.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;

use super::{
    CancelOutcome, Dedup, DeleteOutcome, EventKind, JobStatus, JobStore, ListOrder, ListQuery,
    NewJob, OutboxMessage, ProcessInfo, Requeue, RequeueOutcome, Start, StartOutcome, Submitted,
    Transition,
};

/// A fresh queue name for one check.
pub fn unique(check: &str) -> String {
    let short: String = check.split('_').filter_map(|w| w.chars().next()).collect();
    crate::testing::unique_queue(&short)
}

fn new_job(queue: &str, n: u32) -> NewJob {
    NewJob {
        id: Uuid::new_v4(),
        job_class: "Probe".into(),
        queue: queue.into(),
        arguments: serde_json::json!({ "n": n }),
        enqueued_at: Utc::now(),
        scheduled_at: None,
        dedup: None,
        message: None,
    }
}

fn start_of(job: &NewJob, attempt: u32) -> Start {
    Start {
        id: job.id,
        job_class: job.job_class.clone(),
        queue: job.queue.clone(),
        arguments: job.arguments.clone(),
        attempt,
        enqueued_at: job.enqueued_at,
        due_at: job.enqueued_at,
        generation: 0,
    }
}

async fn status(s: &dyn JobStore, id: Uuid) -> JobStatus {
    s.get(id)
        .await
        .expect("get")
        .expect("the job exists")
        .status
}

async fn kinds(s: &dyn JobStore, id: Uuid) -> Vec<EventKind> {
    s.events(id)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

/// A submitted job reads back as pending (or scheduled when due later), with its arguments and
/// one `enqueued` (or `scheduled`) event.
pub async fn submitted_jobs_read_back(s: &dyn JobStore, queue: &str) {
    let now_job = new_job(queue, 1);
    let rec = match s.submit(now_job.clone()).await.expect("submit") {
        Submitted::Created(r) => r,
        other => panic!("expected Created, got {other:?}"),
    };
    assert_eq!(rec.id, now_job.id);
    assert_eq!(rec.status, JobStatus::Pending);
    let got = s.get(now_job.id).await.expect("get").expect("exists");
    assert_eq!(got.arguments, serde_json::json!({"n": 1}));
    assert_eq!(
        (got.queue.as_str(), got.job_class.as_str()),
        (queue, "Probe")
    );
    assert_eq!(got.attempts, 0);
    assert_eq!(kinds(s, now_job.id).await, vec![EventKind::Enqueued]);

    let mut later = new_job(queue, 2);
    later.scheduled_at = Some(Utc::now() + chrono::Duration::seconds(60));
    s.submit(later.clone()).await.expect("submit");
    assert_eq!(status(s, later.id).await, JobStatus::Scheduled);
    assert_eq!(kinds(s, later.id).await, vec![EventKind::Scheduled]);
    assert!(s.get(Uuid::new_v4()).await.expect("get").is_none());
}

/// A dedup key held within its window returns the holder and records nothing; abandoning the
/// holder frees the key.
pub async fn dedup_returns_the_holder(s: &dyn JobStore, queue: &str) {
    let key = format!("key-{}", Uuid::new_v4());
    let dedup = || {
        Some(Dedup {
            key: key.clone(),
            window: Duration::from_secs(60),
        })
    };
    let mut first = new_job(queue, 1);
    first.dedup = dedup();
    assert!(matches!(
        s.submit(first.clone()).await.expect("submit"),
        Submitted::Created(_)
    ));
    let mut second = new_job(queue, 2);
    second.dedup = dedup();
    match s.submit(second.clone()).await.expect("submit") {
        Submitted::Existing(r) => assert_eq!(r.id, first.id),
        other => panic!("expected Existing, got {other:?}"),
    }
    assert!(
        s.get(second.id).await.expect("get").is_none(),
        "nothing recorded"
    );
    s.abandon(first.id).await.expect("abandon");
    assert!(s.get(first.id).await.expect("get").is_none(), "abandoned");
    let mut third = new_job(queue, 3);
    third.dedup = dedup();
    assert!(matches!(
        s.submit(third).await.expect("submit"),
        Submitted::Created(_)
    ));
}

/// Concurrent submits with one dedup key create exactly one job.
pub async fn concurrent_dedup_creates_one_job(s: Arc<dyn JobStore>, queue: &str) {
    let key = format!("race-{}", Uuid::new_v4());
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            let mut job = new_job(queue, i);
            job.dedup = Some(Dedup {
                key: key.clone(),
                window: Duration::from_secs(60),
            });
            tokio::spawn(async move { s.submit(job).await })
        })
        .collect();
    let mut created = 0;
    let mut holders = HashSet::new();
    for t in tasks {
        match t.await.expect("task").expect("submit") {
            Submitted::Created(r) => {
                created += 1;
                holders.insert(r.id);
            }
            Submitted::Existing(r) => {
                holders.insert(r.id);
            }
        }
    }
    assert_eq!(created, 1, "exactly one submit creates the job");
    assert_eq!(holders.len(), 1, "every answer names that job");
}

/// Start, fail, retry, start again, succeed: the state row and the history follow.
pub async fn a_job_life_is_recorded(s: &dyn JobStore, queue: &str) {
    let job = new_job(queue, 1);
    s.submit(job.clone()).await.expect("submit");
    assert_eq!(
        s.start(start_of(&job, 1)).await.expect("start"),
        StartOutcome::Run
    );
    let rec = s.get(job.id).await.expect("get").expect("exists");
    assert_eq!((rec.status, rec.attempts), (JobStatus::Running, 1));
    assert!(rec.started_at.is_some());
    let failed = Transition::Failed {
        error: "boom".into(),
        run: Duration::from_millis(30),
        result: None,
    };
    s.finish(job.id, 1, failed).await.expect("finish");
    assert_eq!(status(s, job.id).await, JobStatus::Failed);
    let retry = Transition::RetryScheduled {
        at: Utc::now() + chrono::Duration::seconds(5),
    };
    s.finish(job.id, 1, retry).await.expect("finish");
    let rec = s.get(job.id).await.expect("get").expect("exists");
    assert_eq!(rec.status, JobStatus::Retrying);
    assert_eq!(rec.last_error.as_deref(), Some("boom"));
    assert_eq!(
        s.start(start_of(&job, 2)).await.expect("start"),
        StartOutcome::Run
    );
    let done = Transition::Succeeded {
        result: Some(serde_json::json!({"ok": true})),
        run: Duration::from_millis(10),
    };
    s.finish(job.id, 2, done).await.expect("finish");
    let rec = s.get(job.id).await.expect("get").expect("exists");
    assert_eq!((rec.status, rec.attempts), (JobStatus::Succeeded, 2));
    assert_eq!(rec.result, Some(serde_json::json!({"ok": true})));
    assert!(rec.finished_at.is_some());
    assert!(rec.version > 1, "the version grows with every change");
    use EventKind::*;
    assert_eq!(
        kinds(s, job.id).await,
        vec![
            Enqueued,
            Started,
            Failed,
            RetryScheduled,
            Started,
            Succeeded
        ]
    );
    let events = s.events(job.id).await.expect("events");
    assert_eq!(
        events.iter().map(|e| e.attempt).collect::<Vec<_>>(),
        vec![0, 1, 1, 1, 2, 2]
    );
    assert_eq!(events[2].error.as_deref(), Some("boom"));
}

/// The morgue and discard end a job with their error.
pub async fn morgued_and_discarded_are_final(s: &dyn JobStore, queue: &str) {
    for (transition, want) in [
        (
            Transition::Morgued {
                error: "retries spent".into(),
            },
            JobStatus::Morgued,
        ),
        (
            Transition::Discarded {
                error: "gone".into(),
            },
            JobStatus::Discarded,
        ),
    ] {
        let job = new_job(queue, 1);
        s.submit(job.clone()).await.expect("submit");
        s.start(start_of(&job, 1)).await.expect("start");
        s.finish(job.id, 1, transition).await.expect("finish");
        let rec = s.get(job.id).await.expect("get").expect("exists");
        assert_eq!(rec.status, want);
        assert!(rec.status.is_finished() && rec.finished_at.is_some());
    }
}

/// Cancel before start wins (the start then says Cancelled, and repeating the cancel is
/// harmless); cancel of a running job is too late; an unknown id is not found.
pub async fn cancel_and_start_exclude_each_other(s: &dyn JobStore, queue: &str) {
    let job = new_job(queue, 1);
    s.submit(job.clone()).await.expect("submit");
    assert!(matches!(
        s.cancel(job.id).await.expect("cancel"),
        CancelOutcome::Cancelled(_)
    ));
    assert_eq!(
        s.start(start_of(&job, 1)).await.expect("start"),
        StartOutcome::Cancelled
    );
    assert_eq!(status(s, job.id).await, JobStatus::Cancelled);
    assert!(matches!(
        s.cancel(job.id).await.expect("cancel"),
        CancelOutcome::Cancelled(_)
    ));

    let running = new_job(queue, 2);
    s.submit(running.clone()).await.expect("submit");
    s.start(start_of(&running, 1)).await.expect("start");
    assert!(matches!(
        s.cancel(running.id).await.expect("cancel"),
        CancelOutcome::TooLate(_)
    ));
    assert_eq!(status(s, running.id).await, JobStatus::Running);

    assert!(matches!(
        s.cancel(Uuid::new_v4()).await.expect("cancel"),
        CancelOutcome::NotFound
    ));
    // Finishing an unknown job is ignored.
    s.finish(
        Uuid::new_v4(),
        1,
        Transition::Succeeded {
            result: None,
            run: Duration::ZERO,
        },
    )
    .await
    .expect("finish of an unknown job is ignored");
}

/// A job enqueued without a store gets its row when it starts.
pub async fn start_records_an_unrecorded_job(s: &dyn JobStore, queue: &str) {
    let job = new_job(queue, 7);
    assert_eq!(
        s.start(start_of(&job, 1)).await.expect("start"),
        StartOutcome::Run
    );
    let rec = s.get(job.id).await.expect("get").expect("row created");
    assert_eq!(rec.status, JobStatus::Running);
    assert_eq!(rec.arguments, serde_json::json!({"n": 7}));
    assert_eq!(rec.queue, queue);
}

/// Pages are newest first, each job once, filtered by queue and status.
pub async fn list_pages_newest_first(s: &dyn JobStore, queue: &str) {
    let mut ids = Vec::new();
    for n in 0..5 {
        let job = new_job(queue, n);
        s.submit(job.clone()).await.expect("submit");
        ids.push(job.id);
    }
    s.start(start_of(&new_job(queue, 99), 1))
        .await
        .expect("start");
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = s
            .list(ListQuery {
                status: Some(JobStatus::Pending),
                queue: Some(queue.into()),
                limit: 2,
                cursor: cursor.take(),
                ..Default::default()
            })
            .await
            .expect("list");
        assert!(page.jobs.len() <= 2);
        seen.extend(page.jobs.iter().map(|j| j.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "every pending job once, newest first");
}

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

/// A redelivered duplicate of a finished execution is not started again (`AlreadyFinished`),
/// while a later attempt of a job still retrying, and a retry from the morgue (a later
/// generation), are.
pub async fn finished_executions_are_not_started_again(s: &dyn JobStore, queue: &str) {
    let job = new_job(queue, 1);
    s.submit(job.clone()).await.expect("submit");
    assert_eq!(
        s.start(start_of(&job, 1)).await.expect("start"),
        StartOutcome::Run
    );
    let failed = Transition::Failed {
        error: "boom".into(),
        run: Duration::ZERO,
        result: None,
    };
    s.finish(job.id, 1, failed).await.expect("finish");
    let retry = Transition::RetryScheduled { at: Utc::now() };
    s.finish(job.id, 1, retry).await.expect("finish");
    assert_eq!(
        s.start(start_of(&job, 2)).await.expect("start"),
        StartOutcome::Run,
        "a retry runs"
    );
    let done = Transition::Succeeded {
        result: None,
        run: Duration::ZERO,
    };
    s.finish(job.id, 2, done).await.expect("finish");
    for attempt in [1, 2] {
        assert_eq!(
            s.start(start_of(&job, attempt)).await.expect("start"),
            StartOutcome::AlreadyFinished,
            "a duplicate of attempt {attempt}"
        );
    }
    assert_eq!(status(s, job.id).await, JobStatus::Succeeded, "unchanged");
    let mut from_morgue = start_of(&job, 1);
    from_morgue.generation = 1;
    assert_eq!(
        s.start(from_morgue).await.expect("start"),
        StartOutcome::Run,
        "a retry from the morgue runs"
    );
}

/// Claims `only` until the enqueuer's own claim has lapsed (at most 10 s).
async fn wait_for_claim(
    s: &dyn JobStore,
    before: chrono::DateTime<Utc>,
    only: &[Uuid],
    lease: Duration,
) -> Vec<super::Unpublished> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let claimed = s
            .claim_unpublished(before, Some(only), 10, lease)
            .await
            .expect("claim");
        if !claimed.is_empty() || tokio::time::Instant::now() > deadline {
            return claimed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The outbox: a job recorded with a message is unpublished until marked; a relay claims it
/// once it is old enough, holding off other claims for the lease; a job without a message is
/// published from the start.
pub async fn the_outbox_claims_once_per_lease_until_published(s: &dyn JobStore, queue: &str) {
    let message = |n: u32| OutboxMessage {
        topic: queue.to_string(),
        data: format!("{{\"n\":{n}}}").into_bytes(),
        attributes: [("job_class".to_string(), "Probe".to_string())].into(),
    };
    let mut job = new_job(queue, 1);
    job.message = Some(message(1));
    s.submit(job.clone()).await.expect("submit");
    let rec = s.get(job.id).await.expect("get").expect("exists");
    assert_eq!(rec.published_at, None, "unpublished until marked");
    assert!(s.outbox_status().await.expect("status").unpublished >= 1);
    let only = [job.id];
    let lease = Duration::from_secs(30);
    let too_young = Utc::now() - chrono::Duration::seconds(60);
    assert!(
        s.claim_unpublished(too_young, Some(&only), 10, lease)
            .await
            .expect("claim")
            .is_empty(),
        "within the grace period nothing is claimed"
    );
    let now = Utc::now() + chrono::Duration::seconds(1);
    // Its enqueuer holds it while publishing (a few seconds); afterwards a relay may claim it.
    assert!(
        s.claim_unpublished(now, Some(&only), 10, lease)
            .await
            .expect("claim")
            .is_empty(),
        "the enqueuer's own claim holds"
    );
    let claimed = wait_for_claim(s, now, &only, lease).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, job.id);
    assert_eq!(claimed[0].message, message(1), "the message as recorded");
    assert!(
        s.claim_unpublished(now, Some(&only), 10, lease)
            .await
            .expect("claim")
            .is_empty(),
        "claimed once per lease"
    );
    s.mark_published(&only).await.expect("mark");
    assert!(s
        .get(job.id)
        .await
        .expect("get")
        .expect("exists")
        .published_at
        .is_some());
    assert!(s
        .claim_unpublished(now, Some(&only), 10, Duration::ZERO)
        .await
        .expect("claim")
        .is_empty());

    // A claim whose relay died lapses: the row is claimed again.
    let mut lapsing = new_job(queue, 2);
    lapsing.message = Some(message(2));
    s.submit(lapsing.clone()).await.expect("submit");
    let only = [lapsing.id];
    let now = Utc::now() + chrono::Duration::seconds(1);
    let short = Duration::from_millis(300);
    assert_eq!(wait_for_claim(s, now, &only, short).await.len(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        s.claim_unpublished(now, Some(&only), 10, short)
            .await
            .expect("claim")
            .len(),
        1,
        "claimed again once the lease lapsed"
    );

    // Recorded without a message (a job that arrived from Pub/Sub): published from the start.
    let plain = new_job(queue, 3);
    s.submit(plain.clone()).await.expect("submit");
    assert!(s
        .get(plain.id)
        .await
        .expect("get")
        .expect("exists")
        .published_at
        .is_some());
}

/// A job that a worker starts was evidently published (its enqueuer's publish went through but
/// the mark did not, or the publish timed out after Pub/Sub took it): starting it takes it out
/// of the outbox, so no relay publishes it again.
pub async fn a_started_job_leaves_the_outbox(s: &dyn JobStore, queue: &str) {
    let mut job = new_job(queue, 1);
    job.message = Some(OutboxMessage {
        topic: queue.to_string(),
        data: b"{}".to_vec(),
        attributes: Default::default(),
    });
    s.submit(job.clone()).await.expect("submit");
    assert_eq!(
        s.start(start_of(&job, 1)).await.expect("start"),
        StartOutcome::Run
    );
    let rec = s.get(job.id).await.expect("get").expect("exists");
    assert!(rec.published_at.is_some(), "started means published");
    let later = Utc::now() + chrono::Duration::hours(1);
    assert!(
        s.claim_unpublished(later, Some(&[job.id]), 10, Duration::ZERO)
            .await
            .expect("claim")
            .is_empty(),
        "no relay publishes a started job again"
    );
}

/// Periodic ticks: of many concurrent claims of one tick exactly one wins and its job is in the
/// outbox; a paused entry's tick is claimed but enqueues nothing; a skip is recorded once;
/// entries keep their definition, pause state and last tick.
pub async fn each_tick_is_claimed_once(s: Arc<dyn JobStore>, queue: &str) {
    use super::{PeriodicDefinition, TickAction, TickClaim};
    let name = format!("entry-{queue}");
    let def = PeriodicDefinition {
        name: name.clone(),
        schedule: "* * * * * *".into(),
        timezone: "UTC".into(),
        job_class: "Probe".into(),
        queue: queue.into(),
        arguments: serde_json::json!({ "n": 1 }),
    };
    let states = s
        .register_periodic(std::slice::from_ref(&def))
        .await
        .expect("register");
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].definition, def);
    assert!(!states[0].paused);
    let tick = chrono::DateTime::from_timestamp(1_900_000_000, 0).expect("time");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (s, name) = (s.clone(), name.clone());
        let mut job = new_job(queue, 1);
        job.message = Some(OutboxMessage {
            topic: queue.to_string(),
            data: b"{}".to_vec(),
            attributes: Default::default(),
        });
        tasks.spawn(async move {
            let id = job.id;
            (
                id,
                s.claim_tick(&name, tick, TickAction::Enqueue(Box::new(job)))
                    .await,
            )
        });
    }
    let mut winners = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (id, claim) = r.expect("task");
        match claim.expect("claim") {
            TickClaim::Claimed => winners.push(id),
            TickClaim::AlreadyClaimed => {
                assert!(
                    s.get(id).await.expect("get").is_none(),
                    "a loser's job is not recorded"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one claim wins");
    let rec = s
        .get(winners[0])
        .await
        .expect("get")
        .expect("the winner's job");
    assert_eq!(rec.published_at, None, "in the outbox until published");
    let ticks = s.periodic_ticks(&name, 10).await.expect("ticks");
    assert_eq!(ticks.len(), 1);
    assert_eq!(
        (ticks[0].outcome.as_str(), ticks[0].job_id),
        ("enqueued", Some(winners[0]))
    );
    let state = s
        .register_periodic(std::slice::from_ref(&def))
        .await
        .expect("register")[0]
        .clone();
    assert_eq!(
        (state.last_tick_at, state.last_job_id),
        (Some(tick), Some(winners[0]))
    );

    // Paused: claimed, nothing enqueued; resumed: enqueues again.
    assert!(
        s.set_periodic_paused(&name, true)
            .await
            .expect("pause")
            .expect("known")
            .paused
    );
    let paused_tick = tick + chrono::Duration::seconds(1);
    let job = new_job(queue, 2);
    let id = job.id;
    assert_eq!(
        s.claim_tick(&name, paused_tick, TickAction::Enqueue(Box::new(job)))
            .await
            .expect("claim"),
        TickClaim::Paused
    );
    assert!(
        s.get(id).await.expect("get").is_none(),
        "a paused tick enqueues nothing"
    );
    let again = s
        .register_periodic(std::slice::from_ref(&def))
        .await
        .expect("register");
    assert!(again[0].paused, "registering keeps the pause");
    assert!(
        !s.set_periodic_paused(&name, false)
            .await
            .expect("resume")
            .expect("known")
            .paused
    );
    assert!(s
        .set_periodic_paused("no-such-entry", true)
        .await
        .expect("pause")
        .is_none());

    // A skip is recorded once.
    let skipped = tick + chrono::Duration::seconds(2);
    let skip = || TickAction::Skip { missed: 3 };
    assert_eq!(
        s.claim_tick(&name, skipped, skip()).await.expect("skip"),
        TickClaim::Claimed
    );
    assert_eq!(
        s.claim_tick(&name, skipped, skip()).await.expect("skip"),
        TickClaim::AlreadyClaimed
    );
    let outcomes: Vec<_> = s
        .periodic_ticks(&name, 10)
        .await
        .expect("ticks")
        .into_iter()
        .map(|t| t.outcome)
        .collect();
    assert_eq!(outcomes, ["skipped", "paused", "enqueued"], "newest first");
    assert!(s
        .periodic_entries()
        .await
        .expect("entries")
        .iter()
        .any(|e| e.definition.name == name));
}

/// Counts per queue and status stay exact through every kind of change: submits, starts,
/// retries, re-runs, duplicates, cancels, morgue and discard, before and after the deltas are
/// folded, and after a prune (pruned jobs leave the counts).
pub async fn queue_counts_stay_exact(s: &dyn JobStore, queue: &str) {
    use super::{Retention, Transition};
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

/// A batch of writes (group commit) records exactly what the same writes one by one would:
/// starts run, cancelled jobs and finished executions are not started, unrecorded jobs get a
/// row, each transition its status and event; the same job twice in a batch applies in order.
pub async fn a_batch_records_like_one_by_one(s: &dyn JobStore, queue: &str) {
    use super::{StoreOp, Transition};
    let jobs: Vec<NewJob> = (0..5).map(|n| new_job(queue, n)).collect();
    for j in &jobs[..4] {
        s.submit(j.clone()).await.expect("submit");
    }
    let unrecorded = &jobs[4];
    let (a, b, c, e) = (&jobs[0], &jobs[1], &jobs[2], &jobs[3]);
    assert!(matches!(
        s.cancel(e.id).await.expect("cancel"),
        CancelOutcome::Cancelled(_)
    ));
    let run = Duration::from_millis(7);
    let out = s
        .record_batch(&[
            StoreOp::Start(start_of(a, 1)),
            StoreOp::Start(start_of(b, 1)),
            StoreOp::Start(start_of(c, 1)),
            StoreOp::Start(start_of(e, 1)),
            StoreOp::Start(start_of(unrecorded, 1)),
        ])
        .await
        .expect("batch");
    use StartOutcome::{AlreadyFinished, Run};
    assert_eq!(
        out,
        [
            Some(Run),
            Some(Run),
            Some(Run),
            Some(StartOutcome::Cancelled),
            Some(Run)
        ]
    );
    let out = s
        .record_batch(&[
            StoreOp::Finish {
                id: a.id,
                attempt: 1,
                transition: Transition::Succeeded {
                    result: Some(serde_json::json!({ "ok": true })),
                    run,
                },
            },
            StoreOp::Finish {
                id: b.id,
                attempt: 1,
                transition: Transition::Failed {
                    error: "boom".into(),
                    run,
                    result: None,
                },
            },
            StoreOp::Finish {
                id: c.id,
                attempt: 1,
                transition: Transition::Morgued {
                    error: "dead".into(),
                },
            },
            StoreOp::Finish {
                id: e.id,
                attempt: 1,
                transition: Transition::RetryScheduled { at: Utc::now() },
            },
        ])
        .await
        .expect("batch");
    assert_eq!(out, [None, None, None, None]);
    let out = s
        .record_batch(&[
            StoreOp::Start(start_of(a, 1)),
            StoreOp::Finish {
                id: b.id,
                attempt: 1,
                transition: Transition::RetryScheduled { at: Utc::now() },
            },
            StoreOp::Finish {
                id: unrecorded.id,
                attempt: 1,
                transition: Transition::Discarded { error: "no".into() },
            },
        ])
        .await
        .expect("batch");
    assert_eq!(out, [Some(AlreadyFinished), None, None]);
    // The same job twice: in order.
    let out = s
        .record_batch(&[
            StoreOp::Start(start_of(b, 2)),
            StoreOp::Finish {
                id: b.id,
                attempt: 2,
                transition: Transition::Succeeded { result: None, run },
            },
        ])
        .await
        .expect("batch");
    assert_eq!(out, [Some(Run), None]);

    assert_eq!(status(s, a.id).await, JobStatus::Succeeded);
    let rec_a = s.get(a.id).await.expect("get").expect("a");
    assert_eq!(rec_a.result, Some(serde_json::json!({ "ok": true })));
    assert_eq!(status(s, b.id).await, JobStatus::Succeeded);
    assert_eq!(status(s, c.id).await, JobStatus::Morgued);
    assert_eq!(
        s.get(c.id)
            .await
            .expect("get")
            .expect("c")
            .last_error
            .as_deref(),
        Some("dead")
    );
    assert_eq!(
        status(s, e.id).await,
        JobStatus::Cancelled,
        "a retry never undoes a cancel"
    );
    assert_eq!(status(s, unrecorded.id).await, JobStatus::Discarded);
    use EventKind::*;
    assert_eq!(kinds(s, a.id).await, [Enqueued, Started, Succeeded]);
    assert_eq!(
        kinds(s, b.id).await,
        [
            Enqueued,
            Started,
            Failed,
            RetryScheduled,
            Started,
            Succeeded
        ]
    );
    assert_eq!(kinds(s, c.id).await, [Enqueued, Started, Morgued]);
    assert_eq!(kinds(s, e.id).await, [Enqueued, EventKind::Cancelled]);
    assert_eq!(kinds(s, unrecorded.id).await, [Started, Discarded]);
    let failed = s
        .events(b.id)
        .await
        .expect("events")
        .into_iter()
        .find(|ev| ev.kind == Failed)
        .expect("failed event");
    assert_eq!(failed.error.as_deref(), Some("boom"));
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
    use super::Transition;
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
pub fn check_metrics(m: &super::MetricsSnapshot, w: &Workload) {
    let total: u64 = m.events.iter().map(|(_, n)| n).sum();
    assert_eq!(total, w.events, "every event counted");
    assert_eq!(m.run_time.count, w.runs.len() as u64);
    let sum: f64 = w.runs.iter().map(|r| r.as_millis() as f64 / 1000.0).sum();
    assert!((m.run_time.sum_seconds - sum).abs() < 1e-6);
    assert_eq!(m.run_time.buckets.len(), super::HISTOGRAM_BOUNDS.len());
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

/// Bulk submits (multi-row) record each job as a single submit would: pending or scheduled,
/// its first event, in the outbox when it carries a message.
pub async fn bulk_submits_read_back(s: &dyn JobStore, queue: &str) {
    let mut jobs: Vec<NewJob> = (0..3).map(|n| new_job(queue, n)).collect();
    jobs[1].scheduled_at = Some(Utc::now() + chrono::Duration::minutes(5));
    jobs[2].message = Some(OutboxMessage {
        topic: queue.to_string(),
        data: b"{}".to_vec(),
        attributes: Default::default(),
    });
    s.submit_many(jobs.clone()).await.expect("submit many");
    assert_eq!(status(s, jobs[0].id).await, JobStatus::Pending);
    assert_eq!(status(s, jobs[1].id).await, JobStatus::Scheduled);
    assert_eq!(kinds(s, jobs[0].id).await, [EventKind::Enqueued]);
    assert_eq!(kinds(s, jobs[1].id).await, [EventKind::Scheduled]);
    let rec = s.get(jobs[2].id).await.expect("get").expect("job");
    assert_eq!(rec.published_at, None, "in the outbox");
    assert_eq!(rec.arguments, jobs[2].arguments);
    assert!(s
        .get(jobs[0].id)
        .await
        .expect("get")
        .expect("job")
        .published_at
        .is_some());
}

/// Every id of the jobs `q` lists, page after page.
async fn list_all(s: &dyn JobStore, mut q: ListQuery) -> Vec<Uuid> {
    let mut out = Vec::new();
    q.limit = q.limit.max(1);
    loop {
        let page = s.list(q.clone()).await.expect("list");
        out.extend(page.jobs.iter().map(|j| j.id));
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => return out,
        }
    }
}

/// Filters by class and by text in the arguments or the last error (case-insensitive, `%` and
/// `_` taken literally) combine with queue and status, page newest first, and count the same.
pub async fn filters_by_class_and_text(s: &dyn JobStore, queue: &str) {
    let class_a = format!("{queue}-A");
    let class_b = format!("{queue}-B");
    let mut made = Vec::new();
    for (class, tag) in [
        (&class_a, "Alpha_1%"),
        (&class_a, "alpha-1"),
        (&class_b, "ALPHA_1% again"),
        (&class_a, "beta"),
    ] {
        let mut j = new_job(queue, made.len() as u32);
        j.job_class = class.clone();
        j.arguments = serde_json::json!({ "tag": tag });
        s.submit(j.clone()).await.expect("submit");
        made.push(j);
    }
    // The last one fails with an error worth finding.
    s.start(start_of(&made[3], 1)).await.expect("start");
    let failed = Transition::Failed {
        error: "Boom: Disk Full".into(),
        run: Duration::from_millis(5),
        result: None,
    };
    s.finish(made[3].id, 1, failed).await.expect("finish");
    let q = |class: Option<&str>, text: Option<&str>, status: Option<JobStatus>| ListQuery {
        queue: Some(queue.to_string()),
        job_class: class.map(str::to_string),
        text: text.map(str::to_string),
        status,
        limit: 2,
        ..Default::default()
    };
    let ids = |idx: &[usize]| -> Vec<Uuid> { idx.iter().rev().map(|i| made[*i].id).collect() };
    let cases = [
        (q(Some(&class_a), None, None), ids(&[0, 1, 3])),
        (q(Some(&class_b), None, None), ids(&[2])),
        (q(None, Some("alpha_1%"), None), ids(&[0, 2])),
        (q(Some(&class_a), Some("ALPHA_1%"), None), ids(&[0])),
        (q(None, Some("disk full"), None), ids(&[3])),
        (q(None, None, Some(JobStatus::Failed)), ids(&[3])),
        (
            q(Some(&class_a), None, Some(JobStatus::Pending)),
            ids(&[0, 1]),
        ),
        (q(None, Some("no such text"), None), vec![]),
    ];
    for (query, want) in cases {
        let got = list_all(s, query.clone()).await;
        assert_eq!(got, want, "{query:?}");
        let count = s.count(&query).await.expect("count");
        assert_eq!(count.count, want.len() as u64, "count of {query:?}");
        assert!(count.exact, "a small store counts exactly: {query:?}");
    }
    // A class alone, across queues, counts through its index.
    let only_class = ListQuery {
        job_class: Some(class_a.clone()),
        ..Default::default()
    };
    assert_eq!(s.count(&only_class).await.expect("count").count, 3);
}

/// A failed, morgued, discarded or cancelled job goes back to pending as a new generation, in
/// the outbox, only at the version it was read at; a start of the new generation runs; a
/// finished job is deleted with its history, an unfinished one is not.
pub async fn requeue_and_delete_follow_the_status(s: &dyn JobStore, queue: &str) {
    let job = new_job(queue, 1);
    s.submit(job.clone()).await.expect("submit");
    let message = OutboxMessage {
        topic: format!("topic-{queue}"),
        data: br#"{"job":"again"}"#.to_vec(),
        attributes: Default::default(),
    };
    let requeue = |version: i64| Requeue {
        id: job.id,
        version,
        generation: 1,
        message: message.clone(),
    };
    let rec = s.get(job.id).await.expect("get").expect("exists");
    assert!(
        matches!(
            s.requeue(requeue(rec.version)).await.expect("requeue"),
            RequeueOutcome::Conflict(_)
        ),
        "a pending job is not retried"
    );
    assert!(
        matches!(
            s.delete(job.id).await.expect("delete"),
            DeleteOutcome::Conflict(_)
        ),
        "a pending job is not deleted"
    );
    s.start(start_of(&job, 1)).await.expect("start");
    s.finish(
        job.id,
        1,
        Transition::Morgued {
            error: "dead".into(),
        },
    )
    .await
    .expect("finish");
    let rec = s.get(job.id).await.expect("get").expect("exists");
    assert!(
        matches!(
            s.requeue(requeue(rec.version - 1)).await.expect("requeue"),
            RequeueOutcome::Conflict(_)
        ),
        "a stale version does not apply"
    );
    let back = match s.requeue(requeue(rec.version)).await.expect("requeue") {
        RequeueOutcome::Requeued(r) => r,
        other => panic!("expected Requeued, got {other:?}"),
    };
    assert_eq!((back.status, back.generation), (JobStatus::Pending, 1));
    assert!(back.published_at.is_none(), "in the outbox");
    assert_eq!(back.finished_at, None);
    assert_eq!(
        *kinds(s, job.id).await.last().expect("events"),
        EventKind::Enqueued
    );
    assert!(matches!(
        s.requeue(requeue(back.version)).await.expect("requeue"),
        RequeueOutcome::Conflict(_)
    ));
    let mut again = start_of(&job, 1);
    again.generation = 1;
    assert_eq!(s.start(again).await.expect("start"), StartOutcome::Run);
    let done = Transition::Succeeded {
        result: None,
        run: Duration::from_millis(1),
    };
    s.finish(job.id, 1, done).await.expect("finish");
    assert!(matches!(
        s.delete(job.id).await.expect("delete"),
        DeleteOutcome::Deleted
    ));
    assert!(s.get(job.id).await.expect("get").is_none());
    assert!(s.events(job.id).await.expect("events").is_empty());
    assert!(matches!(
        s.delete(job.id).await.expect("delete"),
        DeleteOutcome::NotFound
    ));
    assert!(matches!(
        s.requeue(requeue(1)).await.expect("requeue"),
        RequeueOutcome::NotFound
    ));
}

/// Finished executions are counted per minute (other checks may add to the same minutes:
/// the counts grow by at least what this check finished).
pub async fn throughput_counts_finished_executions(s: &dyn JobStore, queue: &str) {
    let since = Utc::now() - chrono::Duration::minutes(1);
    let total = |m: &[super::MinuteCount]| {
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

/// A process that reports is listed until it is forgotten.
pub async fn heartbeats_list_live_processes(s: &dyn JobStore, queue: &str) {
    let p = ProcessInfo::this("worker", Some(queue));
    let since = Utc::now() - chrono::Duration::seconds(60);
    s.heartbeat(&p).await.expect("heartbeat");
    s.heartbeat(&p).await.expect("heartbeat again");
    let listed: Vec<ProcessInfo> = s
        .processes(since)
        .await
        .expect("processes")
        .into_iter()
        .filter(|x| x.id == p.id)
        .collect();
    assert_eq!(listed.len(), 1, "one row per process");
    assert_eq!(listed[0].queue.as_deref(), Some(queue));
    assert_eq!((listed[0].kind.as_str(), listed[0].pid), ("worker", p.pid));
    assert!(listed[0].seen_at >= since);
    assert!(
        !s.processes(Utc::now() + chrono::Duration::seconds(5))
            .await
            .expect("processes")
            .iter()
            .any(|x| x.id == p.id),
        "not seen since then"
    );
    s.forget_process(&p.id).await.expect("forget");
    assert!(!s
        .processes(since)
        .await
        .expect("processes")
        .iter()
        .any(|x| x.id == p.id));
}

/// Scheduled (and retrying) jobs list soonest due first, ties in enqueue order, page after page.
pub async fn scheduled_jobs_list_soonest_due_first(s: &dyn JobStore, queue: &str) {
    let now = Utc::now();
    let mut made = Vec::new();
    for (n, secs) in [50i64, 10, 30, 10, 40, 10].into_iter().enumerate() {
        let mut j = new_job(queue, n as u32);
        j.scheduled_at = Some(now + chrono::Duration::seconds(secs));
        s.submit(j.clone()).await.expect("submit");
        made.push(j);
    }
    s.submit(new_job(queue, 99))
        .await
        .expect("submit a pending job");
    let due = |status| ListQuery {
        status: Some(status),
        queue: Some(queue.to_string()),
        order: ListOrder::DueFirst,
        limit: 2,
        ..Default::default()
    };
    let got = list_all(s, due(JobStatus::Scheduled)).await;
    let want: Vec<Uuid> = [1, 3, 5, 2, 4, 0].iter().map(|i| made[*i].id).collect();
    assert_eq!(got, want, "soonest due first, ties in enqueue order");
    // A retrying job waits for its retry's due time.
    let retried = &made[0];
    s.start(start_of(retried, 1)).await.expect("start");
    let failed = Transition::Failed {
        error: "x".into(),
        run: Duration::from_millis(1),
        result: None,
    };
    s.finish(retried.id, 1, failed).await.expect("finish");
    let retry = Transition::RetryScheduled {
        at: now + chrono::Duration::seconds(20),
    };
    s.finish(retried.id, 1, retry).await.expect("finish");
    assert_eq!(
        list_all(s, due(JobStatus::Retrying)).await,
        vec![retried.id]
    );
    assert_eq!(
        list_all(s, due(JobStatus::Scheduled)).await,
        want[..5].to_vec()
    );
}

/// Runs the whole store conformance suite as `#[tokio::test]`s, one per check, each on the
/// store that `$make` (an async closure returning `Arc<dyn JobStore>`) gives:
///
/// ```ignore
/// pubsub_jobs::store_conformance_tests!(|| async { my_store().await });
/// ```
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@each $make;
            submitted_jobs_read_back,
            dedup_returns_the_holder,
            a_job_life_is_recorded,
            morgued_and_discarded_are_final,
            cancel_and_start_exclude_each_other,
            start_records_an_unrecorded_job,
            list_pages_newest_first,
            queue_counts_are_exact,
            the_outbox_claims_once_per_lease_until_published,
            a_started_job_leaves_the_outbox,
            queue_counts_stay_exact,
            a_batch_records_like_one_by_one,
            bulk_submits_read_back,
            finished_executions_are_not_started_again,
            filters_by_class_and_text,
            requeue_and_delete_follow_the_status,
            throughput_counts_finished_executions,
            heartbeats_list_live_processes,
            scheduled_jobs_list_soonest_due_first
        );
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn each_tick_is_claimed_once() {
            let store = ($make)().await;
            let queue = $crate::store::conformance::unique("each_tick");
            $crate::store::conformance::each_tick_is_claimed_once(store, &queue).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_dedup_creates_one_job() {
            let store = ($make)().await;
            let queue = $crate::store::conformance::unique("concurrent_dedup");
            $crate::store::conformance::concurrent_dedup_creates_one_job(store, &queue).await;
        }
    };
    (@each $make:expr; $($check:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let store = ($make)().await;
                let queue = $crate::store::conformance::unique(stringify!($check));
                $crate::store::conformance::$check(&*store, &queue).await;
            }
        )*
    };
}
