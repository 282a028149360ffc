//! The SQL job store on sqlx: SQLite (WAL) or PostgreSQL, one code path through sqlx's `Any`
//! driver. Times are epoch milliseconds (BIGINT), JSON is TEXT; only the migrations differ by
//! dialect. One file per capability trait: `outbox.rs`, `lifecycle.rs`, `reads.rs`,
//! `actions.rs`, `processes.rs`, `housekeeping.rs`, `periodic.rs`; `migrate.rs` the schema,
//! `batch.rs` multi-row statements (every new job's one INSERT), `row.rs` row decoding, `tx.rs`
//! enqueue inside the application's transaction. This file holds the store itself and what they
//! share. Every write is one transaction that begins with a write, so that SQLite takes its
//! write lock at once (and waits on busy_timeout) instead of failing an upgrade.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
use uuid::Uuid;

mod actions;
mod batch;
mod housekeeping;
mod lifecycle;
mod migrate;
mod outbox;
mod periodic;
mod processes;
mod reads;
mod row;
pub(crate) mod tx;

// What every file here uses (each sees it through `use super::*`): the store's types and
// traits, and the row codecs.
use row::{
    event_from_row, job_from_row, json_text, list_columns, metadata_text, ms, unpublished_from_row,
    JOB_COLUMNS,
};

use crate::store::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

/// `sql` with `now` bound first, then each id's text.
fn bind_ids<'q>(
    sql: &'q str,
    now: i64,
    ids: &[Uuid],
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    let mut q = sqlx::query(sql).bind(now);
    for id in ids {
        q = q.bind(id.to_string());
    }
    q
}

/// How long an enqueuer holds its own new outbox row while it publishes it: a relay or a dedup
/// hit publishes the row only after that (the relay's default grace is the same 5 s).
const ENQUEUER_CLAIM: Duration = Duration::from_secs(5);

/// The job store on SQLite or PostgreSQL.
pub struct SqlStore {
    pool: AnyPool,
    dialect: Dialect,
    /// This instance's name in leases.
    holder: String,
    /// PostgreSQL: the URL, for the relay's LISTEN connection.
    #[cfg(feature = "postgres")]
    url: String,
    #[cfg(feature = "postgres")]
    listener: tokio::sync::Mutex<Option<sqlx::postgres::PgListener>>,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("dialect", &self.dialect)
            .finish_non_exhaustive()
    }
}

fn db(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Database {
        operation,
        source: Box::new(source),
    }
}

async fn append_event(
    tx: &mut Transaction<'_, Any>,
    id: Uuid,
    kind: EventKind,
    attempt: u32,
    at: i64,
    error: Option<&str>,
    detail: Option<serde_json::Value>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO pj_events (job_id, kind, attempt, at, error, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id.to_string())
    .bind(kind.as_str())
    .bind(attempt as i64)
    .bind(at)
    .bind(error.map(str::to_string))
    .bind(detail.map(|d| d.to_string()))
    .execute(&mut **tx)
    .await
    .map_err(db("append event"))?;
    Ok(())
}

/// The columns of a new job's row, and its first event.
pub(super) struct JobColumns {
    status: JobStatus,
    due_later: Option<chrono::DateTime<Utc>>,
    published_at: Option<i64>,
    claimed_until: Option<i64>,
    topic: Option<String>,
    data: Option<String>,
    attributes: Option<String>,
}

impl JobColumns {
    pub(super) fn of(job: &NewJob, now: i64) -> Result<Self, StoreError> {
        let due_later = job.scheduled_at.filter(|at| *at > job.enqueued_at);
        let status = if due_later.is_some() {
            JobStatus::Scheduled
        } else {
            JobStatus::Pending
        };
        // With a message, the row is the outbox entry: unpublished until marked, and claimed by
        // its enqueuer, which is publishing it, for ENQUEUER_CLAIM (no relay or dedup hit
        // publishes it meanwhile).
        let (published_at, claimed_until, topic, data, attributes) = match &job.message {
            Some(m) => (
                None,
                Some(now + ENQUEUER_CLAIM.as_millis() as i64),
                Some(m.topic.clone()),
                Some(
                    String::from_utf8(m.data.clone()).map_err(|e| StoreError::Corrupt {
                        what: "outbox message",
                        detail: format!("body is not UTF-8: {e}"),
                    })?,
                ),
                Some(serde_json::to_string(&m.attributes).unwrap_or_default()),
            ),
            None => (Some(now), None, None, None, None),
        };
        Ok(Self {
            status,
            due_later,
            published_at,
            claimed_until,
            topic,
            data,
            attributes,
        })
    }

    /// The first event: enqueued, or scheduled with its time.
    pub(super) fn event(&self) -> (EventKind, Option<serde_json::Value>) {
        match self.due_later {
            Some(at) => (
                EventKind::Scheduled,
                Some(serde_json::json!({ "scheduled_at": at })),
            ),
            None => (EventKind::Enqueued, None),
        }
    }
}

impl SqlStore {
    /// Opens the store at `url` and migrates the schema.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (dialect, url) = if url.starts_with("sqlite:") {
            let url = if url.contains("mode=") || url.contains(":memory:") {
                url.to_string()
            } else if url.contains('?') {
                format!("{url}&mode=rwc")
            } else {
                format!("{url}?mode=rwc")
            };
            (Dialect::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Dialect::Postgres, url.to_string())
        } else {
            return Err(StoreError::UnsupportedUrl(crate::store::redact_url(url)));
        };
        if dialect == Dialect::Sqlite && !cfg!(feature = "sqlite") {
            return Err(StoreError::FeatureDisabled {
                url: crate::store::redact_url(&url),
                feature: "sqlite",
            });
        }
        if dialect == Dialect::Postgres && !cfg!(feature = "postgres") {
            return Err(StoreError::FeatureDisabled {
                url: crate::store::redact_url(&url),
                feature: "postgres",
            });
        }
        let mut opts = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        if dialect == Dialect::Sqlite && url.contains(":memory:") {
            // An in-memory database lives and dies with its one connection: keep exactly one.
            opts = opts
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        } else if dialect == Dialect::Sqlite {
            opts = opts.max_connections(8);
        } else {
            opts = opts.max_connections(16);
        }
        if dialect == Dialect::Sqlite {
            opts = opts.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    // 16 MiB of page cache (default 2 MiB): the jobs' indexes stay in memory
                    // instead of being read back from the file on every batch.
                    conn.execute("PRAGMA cache_size = -16384").await?;
                    Ok(())
                })
            });
        }
        let pool = opts.connect(&url).await.map_err(db("connect"))?;
        let store = Self {
            pool,
            dialect,
            holder: Uuid::new_v4().to_string(),
            #[cfg(feature = "postgres")]
            url: url.clone(),
            #[cfg(feature = "postgres")]
            listener: tokio::sync::Mutex::new(None),
        };
        store.migrate(dialect).await?;
        Ok(store)
    }

    pub(super) async fn get_in(
        &self,
        tx: &mut Transaction<'_, Any>,
        id: &str,
    ) -> Result<Option<JobRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM pj_jobs WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&mut **tx)
            .await
            .map_err(db("get job"))?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// Takes (or renews) the lease `name` for `ttl` if nobody else holds it; returns whether
    /// this store instance holds it now.
    pub(super) async fn take_lease(&self, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = ms(Utc::now());
        let row = sqlx::query(
            "INSERT INTO pj_leases (name, holder, until) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
             WHERE pj_leases.until < $4 OR pj_leases.holder = excluded.holder
             RETURNING holder",
        )
        .bind(name.to_string())
        .bind(self.holder.clone())
        .bind(now + ttl.as_millis() as i64)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("take lease"))?;
        Ok(row.is_some())
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod conformance_sqlite_memory {
    use std::sync::Arc;

    use crate::store::JobStore;

    crate::store_conformance_tests!(|| async {
        Arc::new(
            super::SqlStore::connect("sqlite::memory:")
                .await
                .expect("SQLite in memory"),
        ) as Arc<dyn JobStore>
    });
}
