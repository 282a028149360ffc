//! Enqueue inside the application's own transaction (River's `InsertTx`, Oban's `Ecto.Multi`):
//! a job written with the application's sqlx transaction on the job store's database exists if
//! and only if that transaction commits. It is written to the outbox; once committed, the relay
//! publishes it at once (on PostgreSQL a `NOTIFY` wakes it; on SQLite it polls).

use super::row::{json_text, ms};
use super::JobColumns;
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

/// The statements, the same on both databases and the same columns as the store's own insert
/// ([`JobColumns`]). `outbox_claimed_until` is 0: no enqueuer publishes the row, so the relay
/// takes it as soon as the transaction commits, without waiting for its grace period.
const INSERT_JOB: &str = "INSERT INTO pj_jobs (id, job_class, queue, status, attempts, arguments, enqueued_at, scheduled_at, updated_at,
                     published_at, outbox_claimed_until, outbox_topic, outbox_data, outbox_attributes)
     VALUES ($1, $2, $3, $4, 0, $5, $6, $7, $8, NULL, 0, $9, $10, $11)";
const INSERT_EVENT: &str =
    "INSERT INTO pj_events (job_id, kind, attempt, at, error, detail) VALUES ($1, $2, 0, $3, NULL, $4)";

macro_rules! enqueue_tx {
    ($db:ty, $notify:expr) => {
        impl sealed::Sealed for sqlx::Transaction<'_, $db> {}

        impl EnqueueTx for sqlx::Transaction<'_, $db> {
            fn insert_outbox<'a>(
                &'a mut self,
                jobs: &'a [NewJob],
            ) -> futures::future::BoxFuture<'a, Result<(), StoreError>> {
                Box::pin(async move {
                    let now = ms(chrono::Utc::now());
                    for job in jobs {
                        let c = JobColumns::of(job, now)?;
                        let (kind, detail) = c.event();
                        sqlx::query(INSERT_JOB)
                            .bind(job.id.to_string())
                            .bind(job.job_class.clone())
                            .bind(job.queue.clone())
                            .bind(c.status.as_str())
                            .bind(json_text(&job.arguments))
                            .bind(ms(job.enqueued_at))
                            .bind(c.due_later.map(ms))
                            .bind(now)
                            .bind(c.topic)
                            .bind(c.data)
                            .bind(c.attributes)
                            .execute(&mut **self)
                            .await
                            .map_err(db)?;
                        sqlx::query(INSERT_EVENT)
                            .bind(job.id.to_string())
                            .bind(kind.as_str())
                            .bind(now)
                            .bind(detail.map(|d| d.to_string()))
                            .execute(&mut **self)
                            .await
                            .map_err(db)?;
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
    Some("SELECT pg_notify('pubsub_jobs_outbox', '')")
);
#[cfg(feature = "sqlite")]
enqueue_tx!(sqlx::Sqlite, None::<&str>);
