//! Periodic ticks: each claimed once.

use super::*;

/// Periodic ticks: of many concurrent claims of one tick exactly one wins and its job is in the
/// outbox; a paused entry's tick is claimed but enqueues nothing; a skip is recorded once;
/// entries keep their definition, pause state and last tick.
pub async fn each_tick_is_claimed_once(s: Arc<dyn JobStore>, queue: &str) {
    use crate::store::{PeriodicDefinition, TickAction, TickClaim};
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
