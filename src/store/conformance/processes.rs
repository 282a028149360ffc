//! Process heartbeats.

use super::*;

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
