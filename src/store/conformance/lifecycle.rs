//! A job's life: starts, transitions, cancels, duplicates of finished executions, group-commit batches.

use super::*;

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

/// A batch of writes (group commit) records exactly what the same writes one by one would:
/// starts run, cancelled jobs and finished executions are not started, unrecorded jobs get a
/// row, each transition its status and event; the same job twice in a batch applies in order.
pub async fn a_batch_records_like_one_by_one(s: &dyn JobStore, queue: &str) {
    use crate::store::{StoreOp, Transition};
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

/// An interrupted execution (its worker stopping; `JobError::interrupted`) is pending again with
/// its attempt uncounted, one by one and in a batch; its resumption starts and ends as the same
/// attempt.
pub async fn an_interrupted_execution_is_pending_until_it_resumes(s: &dyn JobStore, queue: &str) {
    use crate::store::{StoreOp, Transition};
    let (a, b) = (new_job(queue, 0), new_job(queue, 1));
    for j in [&a, &b] {
        s.submit(j.clone()).await.expect("submit");
        assert_eq!(
            s.start(start_of(j, 1)).await.expect("start"),
            StartOutcome::Run
        );
    }
    let interrupted = || Transition::Interrupted { resumptions: 1 };
    s.finish(a.id, 1, interrupted()).await.expect("finish");
    let out = s
        .record_batch(&[StoreOp::Finish {
            id: b.id,
            attempt: 1,
            transition: interrupted(),
        }])
        .await
        .expect("batch");
    assert_eq!(out, [None]);
    for j in [&a, &b] {
        let rec = s.get(j.id).await.expect("get").expect("job");
        assert_eq!(
            (rec.status, rec.attempts),
            (JobStatus::Pending, 1),
            "pending again, the attempt not counted"
        );
        let events = s.events(j.id).await.expect("events");
        let last = events.last().expect("an event");
        assert_eq!((last.kind, last.attempt), (EventKind::Interrupted, 1));
        assert_eq!(last.detail, Some(serde_json::json!({ "resumptions": 1 })));
    }
    // The resumption: the same attempt, started and finished.
    assert_eq!(
        s.start(start_of(&a, 1)).await.expect("start"),
        StartOutcome::Run
    );
    assert_eq!(status(s, a.id).await, JobStatus::Running);
    let run = Duration::from_millis(3);
    s.finish(a.id, 1, Transition::Succeeded { result: None, run })
        .await
        .expect("finish");
    let rec = s.get(a.id).await.expect("get").expect("a");
    assert_eq!((rec.status, rec.attempts), (JobStatus::Succeeded, 1));
    use EventKind::*;
    assert_eq!(
        kinds(s, a.id).await,
        [Enqueued, Started, Interrupted, Started, Succeeded]
    );
    // b's resumption starts the same way.
    assert_eq!(
        s.start(start_of(&b, 1)).await.expect("start"),
        StartOutcome::Run
    );
    assert_eq!(
        kinds(s, b.id).await,
        [Enqueued, Started, Interrupted, Started]
    );
}

/// Progress is the running execution's, latest wins, and a new execution starts without it;
/// log lines are numbered from 0, kept up to [`MAX_STORED_LOG_LINES`](crate::store::MAX_STORED_LOG_LINES) per job, and read after a
/// number; a write for an execution that is not the running one changes nothing. Applied alone
/// and inside a batch beside the job's finish (progress first).
pub async fn progress_and_logs_follow_the_running_execution(s: &dyn JobStore, queue: &str) {
    use crate::store::{LogLine, Progress, StoreOp, MAX_STORED_LOG_LINES};
    let job = new_job(queue, 0);
    s.submit(job.clone()).await.expect("submit");
    let at = chrono::DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
    let p = |done: u64, attempt: u32| Progress {
        done,
        total: 3,
        message: format!("step {done}"),
        attempt,
        at,
    };
    let line = |i: usize, attempt: u32| LogLine {
        attempt,
        at,
        line: format!("line {i}"),
    };
    // Not started yet: nothing is kept.
    s.progress(job.id, 1, Some(&p(1, 1)), &[line(0, 1)])
        .await
        .expect("progress");
    let rec = s.get(job.id).await.expect("get").expect("job");
    assert_eq!(rec.progress, None);
    assert!(s.logs(job.id, None, 10).await.expect("logs").is_empty());

    s.start(start_of(&job, 1)).await.expect("start");
    let before = s.get(job.id).await.expect("get").expect("job").version;
    s.progress(job.id, 1, Some(&p(1, 1)), &[line(0, 1), line(1, 1)])
        .await
        .expect("progress");
    s.progress(job.id, 1, Some(&p(2, 1)), &[])
        .await
        .expect("progress");
    // Another execution's (a late duplicate) changes nothing.
    s.progress(job.id, 2, Some(&p(3, 2)), &[line(9, 2)])
        .await
        .expect("progress");
    let rec = s.get(job.id).await.expect("get").expect("job");
    assert_eq!(rec.progress, Some(p(2, 1)), "latest wins");
    assert!(rec.version > before, "a poller's ETag changes");
    let logs = s.logs(job.id, None, 10).await.expect("logs");
    let got: Vec<(u64, &str)> = logs.iter().map(|l| (l.n, l.line.as_str())).collect();
    assert_eq!(got, [(0, "line 0"), (1, "line 1")]);
    assert_eq!(s.logs(job.id, Some(0), 10).await.expect("logs").len(), 1);

    // The cap, in a batch with the finish: the progress lands first.
    let many: Vec<LogLine> = (2..MAX_STORED_LOG_LINES as usize + 5)
        .map(|i| line(i, 1))
        .collect();
    s.record_batch(&[
        StoreOp::Progress {
            id: job.id,
            attempt: 1,
            progress: Some(p(3, 1)),
            logs: many,
        },
        StoreOp::Finish {
            id: job.id,
            attempt: 1,
            transition: Transition::RetryScheduled {
                at: Utc::now() + chrono::Duration::seconds(60),
            },
        },
    ])
    .await
    .expect("batch");
    let rec = s.get(job.id).await.expect("get").expect("job");
    assert_eq!(rec.progress, Some(p(3, 1)));
    let all = s
        .logs(job.id, None, MAX_STORED_LOG_LINES as u32 + 100)
        .await
        .expect("logs");
    assert_eq!(all.len() as u64, MAX_STORED_LOG_LINES);
    assert_eq!(all.last().map(|l| l.line.as_str()), Some("line 999"));
    // Retrying: no longer running, nothing changes.
    s.progress(job.id, 1, Some(&p(1, 1)), &[])
        .await
        .expect("progress");
    let rec = s.get(job.id).await.expect("get").expect("job");
    assert_eq!(rec.progress, Some(p(3, 1)));

    // The next execution starts without progress.
    s.start(start_of(&job, 2)).await.expect("start");
    let rec = s.get(job.id).await.expect("get").expect("job");
    assert_eq!(rec.progress, None, "reset on a retry");
    s.progress(job.id, 2, Some(&p(1, 2)), &[])
        .await
        .expect("progress");
    let rec = s.get(job.id).await.expect("get").expect("job");
    assert_eq!(rec.progress.map(|p| p.attempt), Some(2));
    // Deleting the job deletes its lines.
    s.finish(
        job.id,
        2,
        Transition::Succeeded {
            result: None,
            run: Duration::from_millis(1),
        },
    )
    .await
    .expect("finish");
    assert!(matches!(
        s.delete(job.id).await.expect("delete"),
        DeleteOutcome::Deleted
    ));
    assert!(s.logs(job.id, None, 10).await.expect("logs").is_empty());
}
