//! The SQL job store on sqlx: SQLite (WAL) or PostgreSQL, one code path through sqlx's `Any`
//! driver. Times are epoch milliseconds (BIGINT), JSON is TEXT; only the migrations differ by
//! dialect. Every write is one transaction that begins with a write, so that SQLite takes its
//! write lock at once (and waits on busy_timeout) instead of failing an upgrade.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
use uuid::Uuid;

mod batch;
mod dashboard;
mod periodic;
mod row;
pub(crate) mod tx;

use row::{event_from_row, job_from_row, json_text, ms, unpublished_from_row, JOB_COLUMNS};

use super::{
    CancelOutcome, DeleteOutcome, EventKind, Histogram, JobCount, JobEvent, JobRecord, JobStatus,
    JobStore, ListQuery, Maintenance, MetricsSnapshot, MinuteCount, NewJob, OutboxStatus, Page,
    PeriodicDefinition, PeriodicState, ProcessInfo, PruneReport, QueueCount, Requeue,
    RequeueOutcome, Retention, Start, StartOutcome, StoreError, StoreOp, Submitted, TickAction,
    TickClaim, TickRecord, Transition, Unpublished, HISTOGRAM_BOUNDS,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

/// The schema, version by version, one `.sql` file per version and dialect under
/// `migrations/`. Each runs once, in order, recorded in `pj_schema`.
fn migrations(d: Dialect) -> &'static [&'static str] {
    match d {
        Dialect::Sqlite => &[
            include_str!("migrations/sqlite/0001_jobs.sql"),
            include_str!("migrations/sqlite/0002_outbox.sql"),
            include_str!("migrations/sqlite/0003_generation.sql"),
            include_str!("migrations/sqlite/0004_periodic.sql"),
            include_str!("migrations/sqlite/0005_aggregates.sql"),
            include_str!("migrations/sqlite/0006_direct_aggregates.sql"),
            include_str!("migrations/sqlite/0007_dashboard.sql"),
            include_str!("migrations/sqlite/0008_due_order.sql"),
        ],
        Dialect::Postgres => &[
            include_str!("migrations/postgres/0001_jobs.sql"),
            include_str!("migrations/postgres/0002_outbox.sql"),
            include_str!("migrations/postgres/0003_generation.sql"),
            include_str!("migrations/postgres/0004_periodic.sql"),
            include_str!("migrations/postgres/0005_aggregates.sql"),
            include_str!("migrations/postgres/0006_autovacuum.sql"),
            include_str!("migrations/postgres/0007_dashboard.sql"),
            include_str!("migrations/postgres/0008_due_order.sql"),
        ],
    }
}

/// The statements of one migration file: `--` comment lines dropped; a statement ends with a
/// line ending in `;`, except inside a `$$`-quoted body (PostgreSQL functions) and a SQLite
/// trigger's `BEGIN ... END;`.
fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_dollar = false;
    for line in sql.lines() {
        let t = line.trim();
        if !in_dollar && (t.is_empty() || t.starts_with("--")) {
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
        if line.matches("$$").count() % 2 == 1 {
            in_dollar = !in_dollar;
        }
        if in_dollar {
            continue;
        }
        let head = cur.trim_start().to_ascii_uppercase();
        let ends = if head.starts_with("CREATE TRIGGER") && head.contains("\nBEGIN") {
            t.eq_ignore_ascii_case("END;")
        } else {
            t.ends_with(';')
        };
        if ends {
            let stmt = cur.trim().trim_end_matches(';').trim().to_string();
            if !stmt.is_empty() {
                out.push(stmt);
            }
            cur.clear();
        }
    }
    let rest = cur.trim().trim_end_matches(';').trim();
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

/// How a start meets an existing row: it runs unless the job was cancelled or the store shows
/// this execution (or a later one of this generation) finished; a started job leaves the
/// outbox. Shared by one-by-one and batched starts.
pub(super) const START_UPSERT: &str =
    "ON CONFLICT (id) DO UPDATE SET status = 'running', attempts = excluded.attempts,
     started_at = excluded.started_at, updated_at = excluded.updated_at,
     finished_at = NULL, queue_ms = COALESCE(pj_jobs.queue_ms, excluded.queue_ms),
     generation = excluded.generation, version = pj_jobs.version + 1,
     published_at = COALESCE(pj_jobs.published_at, excluded.started_at),
     outbox_data = NULL, outbox_attributes = NULL, outbox_claimed_until = NULL
 WHERE pj_jobs.status <> 'cancelled'
   AND NOT (pj_jobs.status IN ('succeeded', 'morgued', 'discarded')
            AND pj_jobs.generation >= excluded.generation
            AND pj_jobs.attempts >= excluded.attempts)";

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

/// Aggregate deltas folded per transaction, at most.
const FOLD_LIMIT: i64 = 50_000;

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

async fn insert_job(
    tx: &mut Transaction<'_, Any>,
    job: &NewJob,
    now: i64,
) -> Result<(), StoreError> {
    let JobColumns {
        status,
        due_later,
        published_at,
        claimed_until,
        topic,
        data,
        attributes,
    } = JobColumns::of(job, now)?;
    sqlx::query(
        "INSERT INTO pj_jobs (id, job_class, queue, status, attempts, arguments, enqueued_at, scheduled_at, updated_at, dedup_key,
                              published_at, outbox_claimed_until, outbox_topic, outbox_data, outbox_attributes)
         VALUES ($1, $2, $3, $4, 0, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(job.id.to_string())
    .bind(job.job_class.clone())
    .bind(job.queue.clone())
    .bind(status.as_str())
    .bind(json_text(&job.arguments))
    .bind(ms(job.enqueued_at))
    .bind(due_later.map(ms))
    .bind(now)
    .bind(job.dedup.as_ref().map(|d| d.key.clone()))
    .bind(published_at)
    .bind(claimed_until)
    .bind(topic)
    .bind(data)
    .bind(attributes)
    .execute(&mut **tx)
    .await
    .map_err(db("insert job"))?;
    let (kind, detail) = JobColumns::of(job, now)?.event();
    append_event(tx, job.id, kind, 0, now, None, detail).await
}

/// Marks an execution started inside `tx` (see [`JobStore::start`]).
async fn start_in(tx: &mut Transaction<'_, Any>, s: &Start) -> Result<StartOutcome, StoreError> {
    let now = Utc::now();
    let queue_ms = (s.attempt <= 1).then(|| (now - s.due_at).num_milliseconds().max(0));
    let sql = format!(
        "INSERT INTO pj_jobs (id, job_class, queue, status, attempts, arguments, enqueued_at, started_at, updated_at, queue_ms, published_at, generation)
         VALUES ($1, $2, $3, 'running', $4, $5, $6, $7, $7, $8, $7, $9)
         {START_UPSERT} RETURNING status"
    );
    let row = sqlx::query(&sql)
        .bind(s.id.to_string())
        .bind(s.job_class.clone())
        .bind(s.queue.clone())
        .bind(s.attempt as i64)
        .bind(json_text(&s.arguments))
        .bind(ms(s.enqueued_at))
        .bind(ms(now))
        .bind(queue_ms)
        .bind(i64::from(s.generation))
        .fetch_optional(&mut **tx)
        .await
        .map_err(db("start job"))?;
    if row.is_none() {
        // Not started: cancelled, or a duplicate of a finished execution.
        let status = sqlx::query("SELECT status FROM pj_jobs WHERE id = $1")
            .bind(s.id.to_string())
            .fetch_optional(&mut **tx)
            .await
            .map_err(db("start job"))?
            .map(|r| r.try_get::<String, _>("status"))
            .transpose()
            .map_err(db("start job"))?;
        return Ok(match status.as_deref() {
            Some("cancelled") => StartOutcome::Cancelled,
            _ => StartOutcome::AlreadyFinished,
        });
    }
    append_event(tx, s.id, EventKind::Started, s.attempt, ms(now), None, None).await?;
    Ok(StartOutcome::Run)
}

/// Records a transition inside `tx` (see [`JobStore::finish`]).
async fn finish_in(
    tx: &mut Transaction<'_, Any>,
    id: Uuid,
    attempt: u32,
    t: &Transition,
) -> Result<(), StoreError> {
    let now = ms(Utc::now());
    let id_s = id.to_string();
    let (kind, error, detail, row) = match t {
        Transition::Succeeded { result, run } => {
            let run_ms = run.as_millis() as i64;
            let row = sqlx::query(
                    "UPDATE pj_jobs SET status = 'succeeded', finished_at = $2, updated_at = $2, result = $3,
                         run_ms = $4, version = version + 1 WHERE id = $1 RETURNING id",
                )
                .bind(id_s.clone())
                .bind(now)
                .bind(result.as_ref().map(json_text))
                .bind(run_ms)
                .fetch_optional(&mut **tx)
                .await;
            (
                EventKind::Succeeded,
                None,
                Some(serde_json::json!({ "run_ms": run_ms })),
                row,
            )
        }
        Transition::Failed { error, run, result } => {
            let run_ms = run.as_millis() as i64;
            let row = sqlx::query(
                    "UPDATE pj_jobs SET status = 'failed', updated_at = $2, last_error = $3, run_ms = $4,
                         result = COALESCE($5, result), version = version + 1 WHERE id = $1 RETURNING id",
                )
                .bind(id_s.clone())
                .bind(now)
                .bind(error.clone())
                .bind(run_ms)
                .bind(result.as_ref().map(json_text))
                .fetch_optional(&mut **tx)
                .await;
            (
                EventKind::Failed,
                Some(error.clone()),
                Some(serde_json::json!({ "run_ms": run_ms })),
                row,
            )
        }
        Transition::RetryScheduled { at } => {
            let row = sqlx::query(
                    "UPDATE pj_jobs SET status = 'retrying', scheduled_at = $3, updated_at = $2,
                         version = version + 1 WHERE id = $1 AND status <> 'cancelled' RETURNING id",
                )
                .bind(id_s.clone())
                .bind(now)
                .bind(ms(*at))
                .fetch_optional(&mut **tx)
                .await;
            (
                EventKind::RetryScheduled,
                None,
                Some(serde_json::json!({ "scheduled_at": at })),
                row,
            )
        }
        Transition::Morgued { error } | Transition::Discarded { error } => {
            let (kind, status) = if matches!(t, Transition::Morgued { .. }) {
                (EventKind::Morgued, "morgued")
            } else {
                (EventKind::Discarded, "discarded")
            };
            let row = sqlx::query(
                    "UPDATE pj_jobs SET status = $3, finished_at = $2, updated_at = $2, last_error = $4,
                         version = version + 1 WHERE id = $1 RETURNING id",
                )
                .bind(id_s.clone())
                .bind(now)
                .bind(status)
                .bind(error.clone())
                .fetch_optional(&mut **tx)
                .await;
            (kind, Some(error.clone()), None, row)
        }
    };
    if row.map_err(db("record transition"))?.is_some() {
        append_event(tx, id, kind, attempt, now, error.as_deref(), detail).await?;
    }
    Ok(())
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
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        if dialect == Dialect::Sqlite && !cfg!(feature = "sqlite") {
            return Err(StoreError::FeatureDisabled {
                url: url.to_string(),
                feature: "sqlite",
            });
        }
        if dialect == Dialect::Postgres && !cfg!(feature = "postgres") {
            return Err(StoreError::FeatureDisabled {
                url: url.to_string(),
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

    async fn migrate(&self, dialect: Dialect) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db("migrate"))?;
        if dialect == Dialect::Postgres {
            // Several processes may start at once: one migrates, the others wait.
            conn.execute("SELECT pg_advisory_lock(7263514)")
                .await
                .map_err(db("migrate"))?;
        }
        let result = async {
            conn.execute("CREATE TABLE IF NOT EXISTS pj_schema (version BIGINT NOT NULL)")
                .await
                .map_err(db("migrate"))?;
            let row = sqlx::query("SELECT COUNT(*) AS n FROM pj_schema")
                .fetch_one(&mut *conn)
                .await
                .map_err(db("migrate"))?;
            let done: i64 = row.try_get("n").map_err(db("migrate"))?;
            for (i, file) in migrations(dialect).iter().enumerate() {
                if (i as i64) < done {
                    continue;
                }
                // One transaction per version: a process writing meanwhile sees all of it or
                // none (the aggregates' triggers and their backfill, for one).
                let mut tx = sqlx::Connection::begin(&mut *conn)
                    .await
                    .map_err(db("migrate"))?;
                for step in statements(file) {
                    (&mut *tx)
                        .execute(step.as_str())
                        .await
                        .map_err(db("migrate"))?;
                }
                sqlx::query("INSERT INTO pj_schema (version) VALUES ($1)")
                    .bind(i as i64 + 1)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("migrate"))?;
                tx.commit().await.map_err(db("migrate"))?;
            }
            Ok(())
        }
        .await;
        if dialect == Dialect::Postgres {
            let _ = conn.execute("SELECT pg_advisory_unlock(7263514)").await;
        }
        result
    }

    async fn get_in(
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
    async fn take_lease(&self, name: &str, ttl: Duration) -> Result<bool, StoreError> {
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

    /// Aggregates whose key starts with `prefix`: the folded value plus the deltas not folded
    /// yet, so exact at any moment.
    async fn aggregates(&self, prefix: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT key, CAST(SUM(n) AS BIGINT) AS n FROM (
                 SELECT key, n FROM pj_agg WHERE key LIKE $1
                 UNION ALL SELECT key, n FROM pj_agg_delta WHERE key LIKE $1
             ) AS a GROUP BY key ORDER BY key",
        )
        .bind(format!("{prefix}%"))
        .fetch_all(&self.pool)
        .await
        .map_err(db("read aggregates"))?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>("key")
                        .map_err(db("read aggregates"))?,
                    r.try_get::<i64, _>("n").map_err(db("read aggregates"))?,
                ))
            })
            .collect()
    }

    /// Folds pending deltas into `pj_agg` (at most 50,000 at a time); returns how many. One
    /// folder at a time on PostgreSQL (an advisory lock). SQLite keeps no deltas.
    async fn fold_aggregates(&self) -> Result<u64, StoreError> {
        if self.dialect == Dialect::Sqlite {
            // Its triggers add to pj_agg in place (migration 6, which folded what version 5
            // had left): SQLite has one writer, so the hot rows deltas avoid cost nothing.
            return Ok(0);
        }
        let mut tx = self.pool.begin().await.map_err(db("begin"))?;
        let folded = match self.dialect {
            Dialect::Postgres => {
                let got: bool = sqlx::query("SELECT pg_try_advisory_xact_lock(7263515) AS got")
                    .fetch_one(&mut *tx)
                    .await
                    .and_then(|r| r.try_get("got"))
                    .map_err(db("fold aggregates"))?;
                if !got {
                    return Ok(0);
                }
                // One statement: the rows it deletes are exactly the rows it adds up.
                sqlx::query(
                    "WITH moved AS (
                         DELETE FROM pj_agg_delta WHERE seq IN (SELECT seq FROM pj_agg_delta ORDER BY seq LIMIT $1)
                         RETURNING key, n
                     ), summed AS (SELECT key, SUM(n) AS n FROM moved GROUP BY key),
                     upserted AS (
                         INSERT INTO pj_agg (key, n) SELECT key, n FROM summed
                         ON CONFLICT (key) DO UPDATE SET n = pj_agg.n + excluded.n RETURNING 1
                     )
                     SELECT CAST(COUNT(*) AS BIGINT) AS n FROM moved",
                )
                .bind(FOLD_LIMIT)
                .fetch_one(&mut *tx)
                .await
                .and_then(|r| r.try_get::<i64, _>("n"))
                .map_err(db("fold aggregates"))?
            }
            Dialect::Sqlite => 0,
        };
        tx.commit().await.map_err(db("commit"))?;
        Ok(folded.max(0) as u64)
    }

    /// Deletes finished jobs older than their status's retention (and their events), and
    /// expired dedup keys, in batches of 1,000; or, with `dry_run`, only counts them.
    async fn prune(
        &self,
        retention: &Retention,
        queue: Option<&str>,
        dry_run: bool,
    ) -> Result<PruneReport, StoreError> {
        // Index-friendly: (status, finished_at); `failed` rows have no finished_at.
        let queue_cond = if queue.is_some() {
            " AND queue = $3"
        } else {
            ""
        };
        let queue = queue.unwrap_or("").to_string();
        let now = Utc::now();
        let mut report = PruneReport::default();
        for (status, keep) in retention.rules() {
            let Some(keep) = keep else { continue };
            let time = if status == JobStatus::Failed {
                "updated_at"
            } else {
                "finished_at"
            };
            let before =
                ms(now - chrono::Duration::from_std(keep).unwrap_or(chrono::TimeDelta::MAX));
            let count_sql = format!(
                "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM pj_jobs WHERE status = $1 AND {time} < $2{queue_cond}"
            );
            let delete_sql = format!(
                "DELETE FROM pj_jobs WHERE seq IN (
                     SELECT seq FROM pj_jobs WHERE status = $1 AND {time} < $2{queue_cond}
                     ORDER BY seq LIMIT 1000)
                 RETURNING id"
            );
            let only = (!queue_cond.is_empty()).then(|| queue.clone());
            let bind = |sql| prune_query(sql, status.as_str(), before, only.clone());
            if dry_run {
                let n: i64 = bind(&count_sql)
                    .fetch_one(&self.pool)
                    .await
                    .and_then(|r| r.try_get("n"))
                    .map_err(db("prune"))?;
                report.jobs += n as u64;
                continue;
            }
            loop {
                let mut tx = self.pool.begin().await.map_err(db("begin"))?;
                let ids: Vec<String> = bind(&delete_sql)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db("prune"))?
                    .iter()
                    .map(|r| r.try_get::<String, _>("id"))
                    .collect::<Result<_, _>>()
                    .map_err(db("prune"))?;
                if ids.is_empty() {
                    break;
                }
                // Uuid text is hex digits and dashes: safe to inline.
                let list: Vec<String> = ids
                    .iter()
                    .map(|id| format!("'{}'", id.replace('\'', "")))
                    .collect();
                let events = sqlx::query(&format!(
                    "DELETE FROM pj_events WHERE job_id IN ({})",
                    list.join(", ")
                ))
                .execute(&mut *tx)
                .await
                .map_err(db("prune"))?
                .rows_affected();
                tx.commit().await.map_err(db("commit"))?;
                report.jobs += ids.len() as u64;
                report.events += events;
                if ids.len() < 1000 {
                    break;
                }
            }
        }
        if !dry_run && queue.is_empty() {
            report.dedup_keys = sqlx::query("DELETE FROM pj_dedup WHERE expires_at < $1")
                .bind(ms(now))
                .execute(&self.pool)
                .await
                .map_err(db("prune"))?
                .rows_affected();
        }
        Ok(report)
    }
}

/// A prune statement's parameters: status, time bound, and the queue when one is given.
fn prune_query<'q>(
    sql: &'q str,
    status: &'static str,
    before: i64,
    queue: Option<String>,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    let q = sqlx::query(sql).bind(status).bind(before);
    match queue {
        Some(queue) => q.bind(queue),
        None => q,
    }
}

/// A histogram from its aggregates (`0`..`14` per-bucket counts, `sum` in ms).
fn histogram_from(parts: &std::collections::HashMap<String, i64>) -> Histogram {
    let get = |k: &str| parts.get(k).copied().unwrap_or(0).max(0) as u64;
    let mut cumulative = 0;
    let buckets = HISTOGRAM_BOUNDS
        .iter()
        .enumerate()
        .map(|(i, b)| {
            cumulative += get(&i.to_string());
            (*b, cumulative)
        })
        .collect();
    Histogram {
        buckets,
        // The count is every bucket's, the one past the last bound included.
        count: cumulative + get(&HISTOGRAM_BOUNDS.len().to_string()),
        sum_seconds: get("sum") as f64 / 1000.0,
    }
}

#[async_trait]
impl JobStore for SqlStore {
    async fn submit(&self, job: NewJob) -> Result<Submitted, StoreError> {
        let now = ms(Utc::now());
        let mut tx = self.pool.begin().await.map_err(db("begin"))?;
        if let Some(dedup) = &job.dedup {
            // Claim the key: insert it, or take it over if its window has passed. The first
            // statement writes, so concurrent submits serialize on the key (row lock on
            // PostgreSQL, the write lock on SQLite); exactly one gets its own id back.
            let expires = now + dedup.window.as_millis() as i64;
            let row = sqlx::query(
                "INSERT INTO pj_dedup (key, job_id, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (key) DO UPDATE SET job_id = excluded.job_id, expires_at = excluded.expires_at
                 WHERE pj_dedup.expires_at <= $4
                 RETURNING job_id",
            )
            .bind(dedup.key.clone())
            .bind(job.id.to_string())
            .bind(expires)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("claim dedup key"))?;
            if row.is_none() {
                let holder = sqlx::query("SELECT job_id FROM pj_dedup WHERE key = $1")
                    .bind(dedup.key.clone())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db("read dedup key"))?;
                let holder: String = holder.try_get("job_id").map_err(db("read dedup key"))?;
                let existing = self.get_in(&mut tx, &holder).await?;
                tx.commit().await.map_err(db("commit"))?;
                return match existing {
                    Some(rec) => Ok(Submitted::Existing(Box::new(rec))),
                    None => Err(StoreError::Corrupt {
                        what: "dedup key",
                        detail: format!("key {:?} holds unknown job {holder}", dedup.key),
                    }),
                };
            }
        }
        insert_job(&mut tx, &job, now).await?;
        let rec = self.get_in(&mut tx, &job.id.to_string()).await?;
        tx.commit().await.map_err(db("commit"))?;
        rec.map(|r| Submitted::Created(Box::new(r)))
            .ok_or_else(|| StoreError::Corrupt {
                what: "job",
                detail: "inserted row not found".into(),
            })
    }

    async fn submit_many(&self, jobs: Vec<NewJob>) -> Result<(), StoreError> {
        let now = ms(Utc::now());
        // One transaction, multi-row statements.
        let mut tx = self.pool.begin().await.map_err(db("begin"))?;
        batch::insert_jobs(&mut tx, &jobs, now).await?;
        tx.commit().await.map_err(db("commit"))
    }

    async fn abandon(&self, id: Uuid) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db("begin"))?;
        for sql in [
            "DELETE FROM pj_dedup WHERE job_id = $1",
            "DELETE FROM pj_events WHERE job_id = $1",
            "DELETE FROM pj_jobs WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db("abandon job"))?;
        }
        tx.commit().await.map_err(db("commit"))
    }

    async fn get(&self, id: Uuid) -> Result<Option<JobRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM pj_jobs WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db("get job"))?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn events(&self, id: Uuid) -> Result<Vec<JobEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, attempt, at, error, detail FROM pj_events WHERE job_id = $1 ORDER BY seq",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(db("get events"))?;
        rows.iter().map(event_from_row).collect()
    }

    async fn list(&self, q: ListQuery) -> Result<Page, StoreError> {
        self.list_filtered(&q).await
    }

    async fn count(&self, q: &ListQuery) -> Result<JobCount, StoreError> {
        self.count_filtered(q).await
    }

    async fn requeue(&self, r: Requeue) -> Result<RequeueOutcome, StoreError> {
        self.requeue_job(r).await
    }

    async fn delete(&self, id: Uuid) -> Result<DeleteOutcome, StoreError> {
        self.delete_job(id).await
    }

    async fn throughput(
        &self,
        since: chrono::DateTime<Utc>,
    ) -> Result<Vec<MinuteCount>, StoreError> {
        self.throughput_since(since).await
    }

    async fn heartbeat(&self, process: &ProcessInfo) -> Result<(), StoreError> {
        self.heartbeat_process(process).await
    }

    async fn forget_process(&self, id: &str) -> Result<(), StoreError> {
        self.forget(id).await
    }

    async fn processes(
        &self,
        since: chrono::DateTime<Utc>,
    ) -> Result<Vec<ProcessInfo>, StoreError> {
        self.processes_since(since).await
    }

    async fn cancel(&self, id: Uuid) -> Result<CancelOutcome, StoreError> {
        let now = ms(Utc::now());
        let mut tx = self.pool.begin().await.map_err(db("begin"))?;
        let row = sqlx::query(
            "UPDATE pj_jobs SET status = 'cancelled', finished_at = $2, updated_at = $2, version = version + 1
             WHERE id = $1 AND status IN ('pending', 'scheduled', 'retrying')
             RETURNING attempts",
        )
        .bind(id.to_string())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("cancel job"))?;
        if let Some(row) = row {
            let attempts: i64 = row.try_get("attempts").map_err(db("cancel job"))?;
            append_event(
                &mut tx,
                id,
                EventKind::Cancelled,
                attempts as u32,
                now,
                None,
                None,
            )
            .await?;
        }
        let rec = self.get_in(&mut tx, &id.to_string()).await?;
        tx.commit().await.map_err(db("commit"))?;
        Ok(match rec {
            None => CancelOutcome::NotFound,
            Some(r) if r.status == JobStatus::Cancelled => CancelOutcome::Cancelled(Box::new(r)),
            Some(r) => CancelOutcome::TooLate(Box::new(r)),
        })
    }

    async fn start(&self, s: Start) -> Result<StartOutcome, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db("begin"))?;
        let outcome = start_in(&mut tx, &s).await?;
        tx.commit().await.map_err(db("commit"))?;
        Ok(outcome)
    }

    async fn finish(&self, id: Uuid, attempt: u32, t: Transition) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db("begin"))?;
        finish_in(&mut tx, id, attempt, &t).await?;
        tx.commit().await.map_err(db("commit"))
    }

    async fn record_batch(&self, ops: &[StoreOp]) -> Result<Vec<Option<StartOutcome>>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db("begin"))?;
        // Distinct jobs (the usual case): a few multi-row statements. The same job twice:
        // in order, one write at a time.
        let mut seen = std::collections::HashSet::new();
        if ops.len() > 1 && ops.iter().all(|op| seen.insert(batch::op_id(op))) {
            let out = batch::apply(&mut tx, ops).await?;
            tx.commit().await.map_err(db("commit"))?;
            return Ok(out);
        }
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            out.push(match op {
                StoreOp::Start(s) => Some(start_in(&mut tx, s).await?),
                StoreOp::Finish {
                    id,
                    attempt,
                    transition,
                } => {
                    finish_in(&mut tx, *id, *attempt, transition).await?;
                    None
                }
            });
        }
        tx.commit().await.map_err(db("commit"))?;
        Ok(out)
    }

    fn batch_writers(&self) -> usize {
        // SQLite has one writer at a time; PostgreSQL commits batches side by side.
        match self.dialect {
            Dialect::Sqlite => 1,
            Dialect::Postgres => 4,
        }
    }

    async fn queue_counts(&self) -> Result<Vec<QueueCount>, StoreError> {
        let mut out = Vec::new();
        for (key, n) in self.aggregates("jobs|").await? {
            let mut parts = key.splitn(3, '|').skip(1);
            let (Some(queue), Some(status)) = (parts.next(), parts.next()) else {
                continue;
            };
            if n <= 0 {
                continue;
            }
            out.push(QueueCount {
                queue: queue.to_string(),
                status: status.parse().map_err(|detail| StoreError::Corrupt {
                    what: "status",
                    detail,
                })?,
                count: n as u64,
            });
        }
        Ok(out)
    }

    async fn metrics(&self) -> Result<MetricsSnapshot, StoreError> {
        let mut events = Vec::new();
        let mut run = std::collections::HashMap::new();
        let mut queue = std::collections::HashMap::new();
        for (key, n) in self.aggregates("").await? {
            let (family, rest) = key.split_once('|').unwrap_or((key.as_str(), ""));
            match family {
                "events" => {
                    if let Some(k) = EventKind::parse(rest) {
                        events.push((k, n.max(0) as u64));
                    }
                }
                "run" => {
                    run.insert(rest.to_string(), n);
                }
                "queue" => {
                    queue.insert(rest.to_string(), n);
                }
                _ => {}
            }
        }
        Ok(MetricsSnapshot {
            events,
            run_time: histogram_from(&run),
            queue_latency: histogram_from(&queue),
        })
    }

    async fn maintain(&self, retention: &Retention) -> Result<Maintenance, StoreError> {
        // Fold until the backlog is small (each fold takes at most FOLD_LIMIT deltas).
        let mut folded = 0;
        for _ in 0..20 {
            let n = self.fold_aggregates().await?;
            folded += n;
            if n < FOLD_LIMIT as u64 {
                break;
            }
        }
        let pruned = if self.take_lease("prune", Duration::from_secs(30)).await? {
            self.prune_dashboard().await?;
            self.prune(retention, None, false).await?
        } else {
            PruneReport::default()
        };
        Ok(Maintenance { folded, pruned })
    }

    async fn prune_now(
        &self,
        retention: &Retention,
        queue: Option<&str>,
        dry_run: bool,
    ) -> Result<PruneReport, StoreError> {
        self.prune(retention, queue, dry_run).await
    }

    async fn mark_published(&self, ids: &[Uuid]) -> Result<(), StoreError> {
        let now = ms(Utc::now());
        // Ids bound, not inlined: one prepared statement per chunk size, reused (an inlined list
        // would be parsed and planned on every call, and crowd the statement cache). Each chunk
        // is its own statement: a mark is idempotent, so a partial one loses nothing.
        let set = "UPDATE pj_jobs SET published_at = $1, outbox_data = NULL, outbox_attributes = NULL, outbox_claimed_until = NULL";
        let list = |n: usize| -> String {
            match self.dialect {
                // SQLite looks `$N` up by a linear scan; anonymous `?`s bind in order.
                Dialect::Sqlite => vec!["?"; n].join(", "),
                Dialect::Postgres => (2..n + 2)
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        };
        let set_now = if self.dialect == Dialect::Sqlite {
            set.replace("$1", "?")
        } else {
            set.to_string()
        };
        for chunk in ids.chunks(500) {
            let mut rest: Vec<Uuid> = chunk.to_vec();
            if self.dialect == Dialect::Postgres {
                // First the rows nobody else holds. A mark spans the jobs of every recorder
                // lane, and waiting on their starts while they waited on the mark's rows was a
                // deadlock; a start marks its job itself, so usually nothing is left.
                let sql = format!(
                    "{set} WHERE id IN (SELECT id FROM pj_jobs WHERE id IN ({}) AND published_at IS NULL FOR UPDATE SKIP LOCKED)
                     RETURNING id",
                    list(chunk.len())
                );
                let marked: HashSet<String> = bind_ids(&sql, now, chunk)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db("mark published"))?
                    .iter()
                    .filter_map(|r| r.try_get::<String, _>("id").ok())
                    .collect();
                rest.retain(|id| !marked.contains(&id.to_string()));
                if rest.is_empty() {
                    continue;
                }
            }
            // Then the rest, waiting for their holders (another relay's claim, a cancel).
            let sql = format!(
                "{set_now} WHERE id IN ({}) AND published_at IS NULL",
                list(rest.len())
            );
            bind_ids(&sql, now, &rest)
                .execute(&self.pool)
                .await
                .map_err(db("mark published"))?;
        }
        Ok(())
    }

    async fn claim_unpublished(
        &self,
        enqueued_before: chrono::DateTime<Utc>,
        only: Option<&[Uuid]>,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<Unpublished>, StoreError> {
        let now = ms(Utc::now());
        let until = now + lease.as_millis() as i64;
        // On PostgreSQL concurrent relays skip each other's locked rows; on SQLite the write
        // lock serializes them. Either way the conditional UPDATE claims a row once per lease.
        let lock = if self.dialect == Dialect::Postgres {
            "FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let unclaimed = "published_at IS NULL AND outbox_data IS NOT NULL
                         AND (outbox_claimed_until IS NULL OR outbox_claimed_until < $2)";
        let pick = match only {
            Some([]) => return Ok(Vec::new()),
            Some(ids) => {
                // Uuid's text is hex digits and dashes: safe to inline.
                let list: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
                format!(
                    "(enqueued_at <= $3 OR outbox_claimed_until = 0) AND id IN ({})",
                    list.join(", ")
                )
            }
            None => "(enqueued_at <= $3 OR outbox_claimed_until = 0)".to_string(),
        };
        let sql = format!(
            "UPDATE pj_jobs SET outbox_claimed_until = $1
             WHERE id IN (SELECT id FROM pj_jobs WHERE {unclaimed} AND {pick}
                          ORDER BY enqueued_at LIMIT $4 {lock})
               AND {unclaimed}
             RETURNING id, outbox_topic, outbox_data, outbox_attributes"
        );
        let mut tx = self.pool.begin().await.map_err(db("begin"))?;
        let rows = sqlx::query(&sql)
            .bind(until)
            .bind(now)
            .bind(ms(enqueued_before))
            .bind(i64::from(limit.max(1)))
            .fetch_all(&mut *tx)
            .await
            .map_err(db("claim unpublished"))?;
        tx.commit().await.map_err(db("commit"))?;
        rows.iter().map(unpublished_from_row).collect()
    }

    async fn register_periodic(
        &self,
        definitions: &[PeriodicDefinition],
    ) -> Result<Vec<PeriodicState>, StoreError> {
        periodic::register(&self.pool, definitions).await
    }

    async fn periodic_entries(&self) -> Result<Vec<PeriodicState>, StoreError> {
        periodic::entries(&self.pool).await
    }

    async fn set_periodic_paused(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<Option<PeriodicState>, StoreError> {
        periodic::set_paused(&self.pool, name, paused).await
    }

    async fn claim_tick(
        &self,
        name: &str,
        tick_at: chrono::DateTime<Utc>,
        action: TickAction,
    ) -> Result<TickClaim, StoreError> {
        periodic::claim_tick(&self.pool, name, tick_at, action).await
    }

    async fn periodic_ticks(&self, name: &str, limit: u32) -> Result<Vec<TickRecord>, StoreError> {
        periodic::ticks(&self.pool, name, limit).await
    }

    async fn prune_ticks(&self, before: chrono::DateTime<Utc>) -> Result<u64, StoreError> {
        periodic::prune_ticks(&self.pool, before).await
    }

    async fn outbox_status(&self) -> Result<OutboxStatus, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(enqueued_at) AS oldest FROM pj_jobs
             WHERE published_at IS NULL AND outbox_data IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db("outbox status"))?;
        Ok(OutboxStatus {
            unpublished: row.try_get::<i64, _>("n").map_err(db("outbox status"))? as u64,
            oldest: row
                .try_get::<Option<i64>, _>("oldest")
                .map_err(db("outbox status"))?
                .map(row::from_ms),
        })
    }

    async fn wait_for_outbox(&self, max: Duration) {
        #[cfg(feature = "postgres")]
        if self.dialect == Dialect::Postgres {
            let mut guard = self.listener.lock().await;
            if guard.is_none() {
                match sqlx::postgres::PgListener::connect(&self.url).await {
                    Ok(mut l) => match l.listen(tx::NOTIFY_CHANNEL).await {
                        Ok(()) => *guard = Some(l),
                        Err(e) => tracing::debug!(error = %e, "relay: LISTEN failed; polling"),
                    },
                    Err(e) => tracing::debug!(error = %e, "relay: no LISTEN connection; polling"),
                }
            }
            if let Some(listener) = guard.as_mut() {
                match tokio::time::timeout(max, listener.recv()).await {
                    // Woken, or the interval passed: look at the outbox either way.
                    Ok(Ok(_)) | Err(_) => return,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "relay: LISTEN connection lost; reconnecting");
                        *guard = None;
                    }
                }
            }
        }
        tokio::time::sleep(max).await;
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db("ping"))?;
        Ok(())
    }
}

#[cfg(test)]
mod migration_tests {
    use super::*;

    #[test]
    fn migration_files_split_into_statements_ignoring_comments() {
        for d in [Dialect::Sqlite, Dialect::Postgres] {
            let stmts = statements(migrations(d)[0]);
            assert_eq!(stmts.len(), 6, "{d:?}: {stmts:#?}");
            assert!(stmts.iter().all(|s| s.starts_with("CREATE")), "{stmts:#?}");
            assert_eq!(statements(migrations(d)[1]).len(), 7, "{d:?}");
            // Trigger and function bodies stay whole.
            let aggs = statements(migrations(d)[4]);
            assert!(aggs.iter().all(|s| !s.trim().is_empty()));
            let triggers: Vec<_> = aggs
                .iter()
                .filter(|s| s.starts_with("CREATE TRIGGER"))
                .collect();
            assert!(!triggers.is_empty(), "{d:?}");
            if d == Dialect::Sqlite {
                assert!(triggers.iter().all(|t| t.ends_with("END")), "{triggers:#?}");
            } else {
                let f = aggs
                    .iter()
                    .find(|s| s.contains("FUNCTION pj_jobs_agg_upd()"))
                    .unwrap();
                assert!(f.ends_with("LANGUAGE plpgsql"), "{f}");
            }
        }
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

#[cfg(all(test, feature = "sqlite"))]
mod aggregate_tests {
    use std::time::Duration;

    use sqlx::Row;

    use super::SqlStore;
    use crate::store::conformance::{aggregate_workload, check_metrics};
    use crate::store::{JobStore, Retention};

    async fn scan_counts(s: &SqlStore) -> Vec<(String, String, i64)> {
        sqlx::query("SELECT queue, status, COUNT(*) AS n FROM pj_jobs GROUP BY queue, status ORDER BY queue, status")
            .fetch_all(&s.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get("queue"), r.get("status"), r.get("n")))
            .collect()
    }

    async fn unfolded_deltas(s: &SqlStore) -> i64 {
        sqlx::query("SELECT COUNT(*) AS n FROM pj_agg_delta")
            .fetch_one(&s.pool)
            .await
            .unwrap()
            .get("n")
    }

    async fn counts(s: &SqlStore) -> Vec<(String, String, i64)> {
        let mut v: Vec<_> = s
            .queue_counts()
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.queue, c.status.as_str().to_string(), c.count as i64))
            .collect();
        v.sort();
        v
    }

    /// The aggregates against a full scan of the tables, through a mixed workload, folding,
    /// and a prune: job counts equal the scan at every step; event counters and histograms
    /// count every observation and never go back.
    #[tokio::test]
    async fn aggregates_match_a_full_scan_and_counters_survive_prunes() {
        let s = SqlStore::connect("sqlite::memory:").await.unwrap();
        let w = aggregate_workload(&s, "q").await;
        assert_eq!(counts(&s).await, scan_counts(&s).await);
        check_metrics(&s.metrics().await.unwrap(), &w);
        // SQLite's triggers add to pj_agg in place: no deltas wait for a fold.
        assert_eq!(unfolded_deltas(&s).await, 0);
        assert_eq!(s.maintain(&Retention::keep_all()).await.unwrap().folded, 0);
        assert_eq!(counts(&s).await, scan_counts(&s).await, "folded");
        check_metrics(&s.metrics().await.unwrap(), &w);
        // Prune every succeeded job: the counts follow the table, the counters do not go back.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let all_succeeded = Retention {
            succeeded: Some(Duration::ZERO),
            ..Retention::keep_all()
        };
        let pruned = s.prune_now(&all_succeeded, None, false).await.unwrap();
        assert_eq!(pruned.jobs, w.succeeded);
        assert_eq!(counts(&s).await, scan_counts(&s).await, "pruned");
        check_metrics(&s.metrics().await.unwrap(), &w);
        s.maintain(&Retention::keep_all()).await.unwrap();
        assert_eq!(counts(&s).await, scan_counts(&s).await, "pruned, folded");
        check_metrics(&s.metrics().await.unwrap(), &w);
    }

    /// A store at version 5 (deltas waiting for a fold) upgraded to version 6 (SQLite adds to
    /// pj_agg in place): the waiting deltas are folded by the migration, the counts stay exact.
    #[tokio::test]
    async fn upgrading_to_in_place_aggregates_keeps_counts_exact() {
        use sqlx::{Connection, Executor};

        let dir = std::env::temp_dir().join(format!("pj-upgrade-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("jobs.db").display());
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        conn.execute("CREATE TABLE pj_schema (version BIGINT NOT NULL)")
            .await
            .unwrap();
        for (i, file) in super::migrations(super::Dialect::Sqlite)[..5]
            .iter()
            .enumerate()
        {
            for step in super::statements(file) {
                conn.execute(step.as_str()).await.unwrap();
            }
            conn.execute(format!("INSERT INTO pj_schema (version) VALUES ({})", i + 1).as_str())
                .await
                .unwrap();
        }
        for (i, status) in ["pending", "pending", "succeeded", "morgued"]
            .iter()
            .enumerate()
        {
            conn.execute(
                format!(
                    "INSERT INTO pj_jobs (id, job_class, queue, status, arguments, enqueued_at, updated_at)
                     VALUES ('job-{i}', 'X', 'q', '{status}', '{{}}', 0, 0)"
                )
                .as_str(),
            )
            .await
            .unwrap();
        }
        conn.execute("UPDATE pj_jobs SET status = 'succeeded' WHERE id = 'job-0'")
            .await
            .unwrap();
        conn.close().await.unwrap();

        let s = SqlStore::connect(&url).await.unwrap();
        assert_eq!(counts(&s).await, scan_counts(&s).await);
        assert_eq!(
            counts(&s).await,
            [
                ("q".to_string(), "morgued".to_string(), 1),
                ("q".to_string(), "pending".to_string(), 1),
                ("q".to_string(), "succeeded".to_string(), 2)
            ]
        );
        assert_eq!(unfolded_deltas(&s).await, 0);
        // And from now on in place.
        sqlx::query("UPDATE pj_jobs SET status = 'cancelled' WHERE id = 'job-1'")
            .execute(&s.pool)
            .await
            .unwrap();
        assert_eq!(counts(&s).await, scan_counts(&s).await);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
