//! Submits: read back, dedup keys (also under concurrency), bulk submits.

use super::*;

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
