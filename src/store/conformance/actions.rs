//! Operator actions: requeue and delete follow the status.

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
