//! The broker conformance suite: the contract of every [`Broker`] method, checked the same way
//! against every implementation (River's `riverdrivertest`). The crate runs it against
//! [`MemoryBroker`](super::MemoryBroker) in its unit tests and against the Pub/Sub emulator in
//! `tests/conformance.rs`; a new [`Broker`] runs it with
//! [`broker_conformance_tests!`](crate::broker_conformance_tests).
//!
//! Each check takes a broker and a fresh resource name (3-255 characters, a letter first), and
//! panics with what broke the contract.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::{Broker, Delivery, OutboundMessage, StreamOptions};

/// A fresh topic / subscription name for one check.
pub fn unique(check: &str) -> String {
    let short: String = check.split('_').filter_map(|w| w.chars().next()).collect();
    crate::queue::unique_name(&short)
}

fn msg(body: &str, attrs: &[(&str, &str)]) -> OutboundMessage {
    OutboundMessage {
        data: body.as_bytes().to_vec(),
        attributes: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

async fn queue(b: &dyn Broker, name: &str) {
    b.create_topic(name).await.expect("create topic");
    b.create_subscription(name, name, Duration::from_secs(10))
        .await
        .expect("create subscription");
}

/// Pulls until `n` deliveries arrived or `within` passed.
async fn pull_n(b: &dyn Broker, sub: &str, n: usize, within: Duration) -> Vec<Delivery> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        let batch = b
            .pull(sub, n - got.len(), Duration::from_millis(500))
            .await
            .expect("pull");
        got.extend(batch);
    }
    got
}

/// Creating a topic or subscription that exists is success; `subscription_exists` tells.
pub async fn create_is_idempotent_and_exists_tells(b: &dyn Broker, name: &str) {
    assert!(!b.subscription_exists(name).await.expect("exists"));
    queue(b, name).await;
    queue(b, name).await;
    assert!(b.subscription_exists(name).await.expect("exists"));
    assert!(!b
        .subscription_exists(&format!("{name}-other"))
        .await
        .expect("exists"));
}

/// Publishing to a missing topic, or pulling from a missing subscription, fails with NotFound.
pub async fn missing_resources_are_not_found(b: &dyn Broker, name: &str) {
    let err = b
        .publish(name, &[msg("x", &[])])
        .await
        .expect_err("publish to a missing topic");
    assert!(err.is_not_found(), "{err}");
    let err = b
        .pull(name, 1, Duration::from_millis(100))
        .await
        .expect_err("pull from a missing subscription");
    assert!(err.is_not_found(), "{err}");
}

/// Every published message is delivered with its body and attributes; ids are distinct and in
/// the order published.
pub async fn published_messages_arrive_with_body_and_attributes(b: &dyn Broker, name: &str) {
    queue(b, name).await;
    let sent: Vec<OutboundMessage> = (0..20)
        .map(|i| {
            msg(
                &format!("body-{i}"),
                &[("n", &i.to_string()), ("kind", "probe")],
            )
        })
        .collect();
    let ids = b.publish(name, &sent).await.expect("publish");
    assert_eq!(ids.len(), 20);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 20, "ids distinct");
    let got = pull_n(b, name, 20, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 20, "all delivered");
    let by_body: HashMap<String, &Delivery> = got
        .iter()
        .map(|d| (String::from_utf8_lossy(&d.data).to_string(), d))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let d = by_body
            .get(&format!("body-{i}"))
            .unwrap_or_else(|| panic!("body-{i} missing"));
        assert_eq!(
            d.attributes.get("n").map(String::as_str),
            Some(&*i.to_string())
        );
        assert_eq!(d.attributes.get("kind").map(String::as_str), Some("probe"));
        assert_eq!(&d.message_id, id, "message id of body-{i}");
    }
    b.ack(name, got.into_iter().map(|d| d.ack_id).collect())
        .await
        .expect("ack");
}

/// An acked message is not delivered again.
pub async fn acked_messages_are_not_redelivered(b: &dyn Broker, name: &str) {
    queue(b, name).await;
    b.publish(name, &[msg("once", &[])]).await.expect("publish");
    let got = pull_n(b, name, 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    b.ack(name, vec![got[0].ack_id.clone()]).await.expect("ack");
    // Released leases would come back within ~1 s; an acked message never does.
    b.modify_ack_deadline(name, vec![got[0].ack_id.clone()], 0)
        .await
        .ok();
    let again = b.pull(name, 1, Duration::from_secs(2)).await.expect("pull");
    assert!(again.is_empty(), "acked message delivered again");
}

/// A lease set to 0 releases the message for redelivery at once; a lease set to N seconds
/// expires after about N seconds and the message comes back.
pub async fn released_and_expired_leases_redeliver(b: &dyn Broker, name: &str) {
    queue(b, name).await;
    b.publish(name, &[msg("lease", &[])])
        .await
        .expect("publish");
    let first = pull_n(b, name, 1, Duration::from_secs(10)).await;
    assert_eq!(first.len(), 1);
    let t = Instant::now();
    b.modify_ack_deadline(name, vec![first[0].ack_id.clone()], 0)
        .await
        .expect("release");
    let second = pull_n(b, name, 1, Duration::from_secs(5)).await;
    assert_eq!(second.len(), 1, "released message redelivered");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(second[0].data, b"lease");
    b.modify_ack_deadline(name, vec![second[0].ack_id.clone()], 2)
        .await
        .expect("extend");
    let t = Instant::now();
    let early = b
        .pull(name, 1, Duration::from_millis(800))
        .await
        .expect("pull");
    assert!(early.is_empty(), "redelivered before its 2 s lease lapsed");
    let third = pull_n(b, name, 1, Duration::from_secs(10)).await;
    assert_eq!(third.len(), 1, "expired lease redelivered");
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "came back after {:?}, lease was 2 s",
        t.elapsed()
    );
    b.ack(name, vec![third[0].ack_id.clone()])
        .await
        .expect("ack");
}

/// Seek to now drops the backlog and leased messages; what is published after is delivered.
pub async fn seek_to_now_drops_everything_before(b: &dyn Broker, name: &str) {
    queue(b, name).await;
    b.publish(name, &[msg("old-1", &[]), msg("old-2", &[])])
        .await
        .expect("publish");
    let leased = pull_n(b, name, 1, Duration::from_secs(10)).await;
    assert_eq!(leased.len(), 1);
    // The emulator's seek works on publish times: let the clock move past them.
    tokio::time::sleep(Duration::from_millis(50)).await;
    b.seek_to_now(name).await.expect("seek");
    b.modify_ack_deadline(name, vec![leased[0].ack_id.clone()], 0)
        .await
        .ok();
    b.publish(name, &[msg("new", &[])]).await.expect("publish");
    let got = pull_n(b, name, 3, Duration::from_secs(3)).await;
    let bodies: Vec<String> = got
        .iter()
        .map(|d| String::from_utf8_lossy(&d.data).to_string())
        .collect();
    assert_eq!(
        bodies,
        vec!["new".to_string()],
        "only what came after the seek"
    );
}

/// A streaming pull delivers what is published, each message once while its lease holds.
pub async fn a_stream_delivers_each_message(b: &dyn Broker, name: &str) {
    queue(b, name).await;
    let mut stream = b
        .subscribe(
            name,
            StreamOptions {
                ack_deadline: Duration::from_secs(30),
                max_outstanding: 100,
            },
        )
        .await
        .expect("subscribe");
    let sent: Vec<OutboundMessage> = (0..10).map(|i| msg(&format!("s-{i}"), &[])).collect();
    b.publish(name, &sent).await.expect("publish");
    let mut seen = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < 10 {
        let d = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("10 deliveries within 30 s")
            .expect("stream open");
        assert!(
            seen.insert(String::from_utf8_lossy(&d.data).to_string()),
            "delivered twice while leased"
        );
        b.ack(name, vec![d.ack_id]).await.expect("ack");
    }
    stream.close().await;
}

/// Runs the whole broker conformance suite as `#[tokio::test]`s, one per check, each on the
/// broker that `$make` (an async closure, or a function returning a future) gives:
///
/// ```ignore
/// pubsub_jobs::broker_conformance_tests!(|| async {
///     std::sync::Arc::new(MyBroker::new()) as std::sync::Arc<dyn pubsub_jobs::broker::Broker>
/// });
/// ```
#[macro_export]
macro_rules! broker_conformance_tests {
    ($make:expr) => {
        $crate::broker_conformance_tests!(@each $make;
            create_is_idempotent_and_exists_tells,
            missing_resources_are_not_found,
            published_messages_arrive_with_body_and_attributes,
            acked_messages_are_not_redelivered,
            released_and_expired_leases_redeliver,
            seek_to_now_drops_everything_before,
            a_stream_delivers_each_message
        );
    };
    (@each $make:expr; $($check:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let broker = ($make)().await;
                let name = $crate::broker::conformance::unique(stringify!($check));
                $crate::broker::conformance::$check(&*broker, &name).await;
            }
        )*
    };
}
