//! The broker conformance suite against the real Pub/Sub emulator, and the store conformance
//! suite against a real PostgreSQL (`PUBSUB_JOBS_TEST_POSTGRES`, default
//! `postgres://postgres@127.0.0.1/test`). The same suites run against the in-memory broker and
//! SQLite in memory in the library's unit tests (`cargo test -p pubsub-jobs --lib`).

mod support;

mod emulator {
    use std::sync::Arc;
    use std::time::Duration;

    use pubsub_jobs::broker::{Broker, PubSubBroker};

    pubsub_jobs::broker_conformance_tests!(|| async {
        let host = super::support::emulator_host();
        Arc::new(
            PubSubBroker::connect("conformance", Some(host), Duration::from_secs(30))
                .await
                .expect("connect to the emulator"),
        ) as Arc<dyn Broker>
    });
}

mod postgres {
    use std::sync::Arc;

    use pubsub_jobs::store::{JobStore, SqlStore};

    pubsub_jobs::store_conformance_tests!(|| async {
        let url = super::support::postgres_url();
        Arc::new(SqlStore::connect(&url).await.expect("PostgreSQL")) as Arc<dyn JobStore>
    });
}

/// The aggregates on PostgreSQL (statement-level triggers) against a scan, in a database of
/// their own (the counters are global).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_aggregates_match_a_scan() {
    use pubsub_jobs::store::conformance::{aggregate_workload, check_metrics};
    use pubsub_jobs::store::prelude::*;
    use pubsub_jobs::store::{Retention, SqlStore};
    use sqlx::{Connection, Executor, Row};

    let base = support::postgres_url();
    let name = format!(
        "pj_agg_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut admin = sqlx::PgConnection::connect(&base)
        .await
        .expect("PostgreSQL");
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create a database");
    let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
    let store = SqlStore::connect(&url).await.expect("store");
    let w = aggregate_workload(&store, "q").await;
    let scan = sqlx::PgPool::connect(&url).await.unwrap();
    let scanned = || async {
        sqlx::query("SELECT queue, status, COUNT(*) AS n FROM pj_jobs GROUP BY queue, status ORDER BY queue, status")
            .fetch_all(&scan)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get("queue"), r.get("status"), r.get("n")))
            .collect::<Vec<(String, String, i64)>>()
    };
    assert_eq!(counts(&store).await, scanned().await);
    check_metrics(&store.metrics().await.unwrap(), &w);
    store.maintain(&Retention::keep_all()).await.unwrap();
    assert_eq!(counts(&store).await, scanned().await, "folded");
    check_metrics(&store.metrics().await.unwrap(), &w);
    drop(store);
    scan.close().await;
    let _ = admin
        .execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str())
        .await;
}

async fn counts(store: &pubsub_jobs::store::SqlStore) -> Vec<(String, String, i64)> {
    use pubsub_jobs::store::prelude::*;
    let mut v: Vec<(String, String, i64)> = store
        .queue_counts()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.queue, c.status.as_str().to_string(), c.count as i64))
        .collect();
    v.sort();
    v
}
