//! Enqueue inside the application's own transaction (River's `InsertTx`, Oban's `Ecto.Multi`):
//! a job written with the application's sqlx transaction on the job store's database exists if
//! and only if that transaction commits. It is written to the outbox; once committed, the relay
//! publishes it at once (on PostgreSQL a `NOTIFY` wakes it; on SQLite it polls).

use super::batch::{insert_statements, Publisher, V};
use super::row::ms;
use crate::store::{NewJob, StoreError};

/// The outbox channel the relay listens on (PostgreSQL).
#[cfg(feature = "postgres")]
pub(crate) const NOTIFY_CHANNEL: &str = "pubsub_jobs_outbox";

/// A transaction of the application's that jobs can be enqueued into: `sqlx::Transaction` on
/// PostgreSQL (feature `postgres`) or SQLite (feature `sqlite`), on the database of the job store.
/// Enqueue with [`ConfiguredJob::perform_later_in`](crate::ConfiguredJob::perform_later_in) or
/// [`Client::perform_all_later_in`](crate::Client::perform_all_later_in).
pub trait EnqueueTx: sealed::Sealed + Send {
    #[doc(hidden)]
    fn insert_outbox<'a>(
        &'a mut self,
        jobs: &'a [NewJob],
    ) -> futures::future::BoxFuture<'a, Result<(), StoreError>>;
}

mod sealed {
    pub trait Sealed {}
}

fn db(source: sqlx::Error) -> StoreError {
    StoreError::Database {
        operation: "enqueue in transaction",
        source: Box::new(source),
    }
}

macro_rules! enqueue_tx {
    ($db:ty, $sqlite:expr, $notify:expr) => {
        impl sealed::Sealed for sqlx::Transaction<'_, $db> {}

        impl EnqueueTx for sqlx::Transaction<'_, $db> {
            fn insert_outbox<'a>(
                &'a mut self,
                jobs: &'a [NewJob],
            ) -> futures::future::BoxFuture<'a, Result<(), StoreError>> {
                Box::pin(async move {
                    // The store's own INSERT, with the rows left for a relay to publish at once.
                    let now = ms(chrono::Utc::now());
                    for stmt in insert_statements(jobs, now, Publisher::Relay)? {
                        let (sql, vals) = stmt.into_parts($sqlite);
                        let mut q = sqlx::query(&sql);
                        for v in vals {
                            q = match v {
                                V::T(t) => q.bind(t),
                                V::I(i) => q.bind(i),
                            };
                        }
                        q.execute(&mut **self).await.map_err(db)?;
                    }
                    if let Some(sql) = $notify {
                        sqlx::query(sql).execute(&mut **self).await.map_err(db)?;
                    }
                    Ok(())
                })
            }
        }
    };
}

#[cfg(feature = "postgres")]
enqueue_tx!(
    sqlx::Postgres,
    false,
    Some("SELECT pg_notify('pubsub_jobs_outbox', '')")
);
#[cfg(feature = "sqlite")]
enqueue_tx!(sqlx::Sqlite, true, None::<&str>);
