//! Operator actions: requeue and delete follow the status; a cleared queue's jobs end cancelled.

use super::*;

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

/// Clearing a queue: its jobs not started whose last change is before the clear end cancelled
/// (with a `cleared` event) and leave the outbox; a running job, a later one and another queue's
/// stay as they were.
pub async fn cleared_jobs_end_cancelled_and_leave_the_outbox(s: &dyn JobStore, queue: &str) {
    use crate::store::{OutboxMessage, Transition};
    let with_message = |mut j: NewJob| {
        j.message = Some(OutboxMessage {
            topic: j.queue.clone(),
            data: b"{}".to_vec(),
            attributes: Default::default(),
        });
        j
    };
    let other_queue = format!("{queue}-other");
    let unpublished = with_message(new_job(queue, 0));
    let pending = new_job(queue, 1);
    let running = new_job(queue, 2);
    let retrying = new_job(queue, 3);
    let elsewhere = with_message(new_job(&other_queue, 4));
    for j in [&unpublished, &pending, &running, &retrying, &elsewhere] {
        s.submit(j.clone()).await.expect("submit");
    }
    for j in [&running, &retrying] {
        s.start(start_of(j, 1)).await.expect("start");
    }
    let run = Duration::from_millis(1);
    let failed = Transition::Failed {
        error: "boom".into(),
        run,
        result: None,
    };
    s.finish(retrying.id, 1, failed).await.expect("finish");
    let retry = Transition::RetryScheduled {
        at: Utc::now() + chrono::Duration::seconds(60),
    };
    s.finish(retrying.id, 1, retry).await.expect("finish");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let cleared_at = Utc::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let later = new_job(queue, 5);
    s.submit(later.clone()).await.expect("submit");

    assert_eq!(
        s.cancel_cleared(queue, cleared_at).await.expect("cancel"),
        3
    );
    for j in [&unpublished, &pending, &retrying] {
        assert_eq!(status(s, j.id).await, JobStatus::Cancelled);
        let events = s.events(j.id).await.expect("events");
        let last = events.last().expect("an event");
        assert_eq!(last.kind, EventKind::Cancelled);
        assert_eq!(last.detail, Some(serde_json::json!({ "cleared": true })));
    }
    assert_eq!(status(s, running.id).await, JobStatus::Running);
    assert_eq!(status(s, later.id).await, JobStatus::Pending);
    assert_eq!(status(s, elsewhere.id).await, JobStatus::Pending);
    // Nothing cleared is published again: once the enqueuers' claims lapse, a relay's claim over
    // both unpublished rows takes only the other queue's.
    let far = Utc::now() + chrono::Duration::seconds(60);
    let claimed = wait_for_claim(
        s,
        far,
        &[unpublished.id, elsewhere.id],
        Duration::from_secs(30),
    )
    .await;
    let ids: Vec<Uuid> = claimed.iter().map(|u| u.id).collect();
    assert_eq!(ids, [elsewhere.id]);
    // Again: nothing left to cancel.
    assert_eq!(
        s.cancel_cleared(queue, cleared_at).await.expect("cancel"),
        0
    );
}
