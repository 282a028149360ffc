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
