//! The outbox: claims once per lease until published; a started job leaves it.

use super::*;

/// Claims `only` until the enqueuer's own claim has lapsed (at most 10 s).
pub(super) async fn wait_for_claim(
    s: &dyn JobStore,
    before: chrono::DateTime<Utc>,
    only: &[Uuid],
    lease: Duration,
) -> Vec<crate::store::Unpublished> {
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
