//! Enqueue inside the application's own transaction (River's `InsertTx`, Oban's `Ecto.Multi`):
//! a job written with the application's sqlx transaction on the job store's database exists if
//! and only if that transaction commits. It is written to the outbox; once committed, the relay
//! publishes it at once (on PostgreSQL a `NOTIFY` wakes it; on SQLite it polls).

use crate::envelope::Envelope;
use crate::store::StoreError;

/// The outbox channel the relay listens on (PostgreSQL).
#[cfg(feature = "postgres")]
pub(crate) const NOTIFY_CHANNEL: &str = "pubsub_jobs_outbox";

/// A transaction of the application's that jobs can be enqueued into: `sqlx::Transaction` on
/// PostgreSQL (feature `postgres`) or SQLite (feature `sqlite`), on the database of the job store.
pub trait EnqueueTx: sealed::Sealed + Send {
    #[doc(hidden)]
    fn insert_outbox<'a>(
        &'a mut self,
        env: &'a Envelope,
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

/// The values of a job's outbox row and its first event.
struct Row {
    status: &'static str,
    scheduled_at: Option<i64>,
    kind: &'static str,
    detail: Option<String>,
    body: String,
    attributes: String,
}

fn row(env: &Envelope) -> Result<Row, StoreError> {
    let due_later = env.scheduled_at.filter(|at| *at > env.enqueued_at);
    let body = String::from_utf8(env.to_body()).map_err(|e| StoreError::Corrupt {
        what: "outbox message",
        detail: e.to_string(),
    })?;
    let attributes = serde_json::to_string(&env.attributes()).unwrap_or_default();
    let (status, kind, detail) = match due_later {
        Some(at) => (
            "scheduled",
            "scheduled",
            Some(serde_json::json!({ "scheduled_at": at }).to_string()),
        ),
        None => ("pending", "enqueued", None),
    };
    Ok(Row {
        status,
        scheduled_at: due_later.map(|at| at.timestamp_millis()),
        kind,
        detail,
        body,
        attributes,
    })
}

/// The statements, the same on both databases. `outbox_topic` is empty (the relay routes the
/// job by its envelope) and `outbox_claimed_until` is 0 (no enqueuer publishes it: the relay
/// takes it at once, without waiting for its grace period).
const INSERT_JOB: &str = "INSERT INTO pj_jobs (id, job_class, queue, status, attempts, arguments, enqueued_at, scheduled_at, updated_at,
                     published_at, outbox_claimed_until, outbox_topic, outbox_data, outbox_attributes)
     VALUES ($1, $2, $3, $4, 0, $5, $6, $7, $8, NULL, 0, '', $9, $10)";
const INSERT_EVENT: &str =
    "INSERT INTO pj_events (job_id, kind, attempt, at, error, detail) VALUES ($1, $2, 0, $3, NULL, $4)";

macro_rules! enqueue_tx {
    ($db:ty, $notify:expr) => {
        impl sealed::Sealed for sqlx::Transaction<'_, $db> {}

        impl EnqueueTx for sqlx::Transaction<'_, $db> {
            fn insert_outbox<'a>(
                &'a mut self,
                env: &'a Envelope,
            ) -> futures::future::BoxFuture<'a, Result<(), StoreError>> {
                Box::pin(async move {
                    let r = row(env)?;
                    let now = chrono::Utc::now().timestamp_millis();
                    sqlx::query(INSERT_JOB)
                        .bind(env.job_id.to_string())
                        .bind(env.job_class.clone())
                        .bind(env.queue_name.clone())
                        .bind(r.status)
                        .bind(env.arguments.to_string())
                        .bind(env.enqueued_at.timestamp_millis())
                        .bind(r.scheduled_at)
                        .bind(now)
                        .bind(r.body)
                        .bind(r.attributes)
                        .execute(&mut **self)
                        .await
                        .map_err(db)?;
                    sqlx::query(INSERT_EVENT)
                        .bind(env.job_id.to_string())
                        .bind(r.kind)
                        .bind(now)
                        .bind(r.detail)
                        .execute(&mut **self)
                        .await
                        .map_err(db)?;
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
