//! Housekeeping: folding the aggregates' deltas, pruning finished jobs past their retention
//! (by the one process holding the prune lease), and the health check.

use super::*;

/// Aggregate deltas folded per transaction, at most.
const FOLD_LIMIT: i64 = 50_000;

impl SqlStore {
    /// Aggregates whose key starts with `prefix`: the folded value plus the deltas not folded
    /// yet, so exact at any moment.
    pub(super) async fn aggregates(&self, prefix: &str) -> Result<Vec<(String, i64)>, StoreError> {
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
    pub(super) async fn fold_aggregates(&self) -> Result<u64, StoreError> {
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
    pub(super) async fn prune(
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
                sqlx::query(&format!(
                    "DELETE FROM pj_job_logs WHERE job_id IN ({})",
                    list.join(", ")
                ))
                .execute(&mut *tx)
                .await
                .map_err(db("prune"))?;
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

    /// Deletes per-minute counts older than [`THROUGHPUT_KEPT`] and processes not seen for an
    /// hour (the prune lease holder, from `maintain`).
    pub(super) async fn prune_dashboard(&self) -> Result<(), StoreError> {
        let now = Utc::now();
        let oldest = (now.timestamp() - THROUGHPUT_KEPT.as_secs() as i64).div_euclid(60);
        // Epoch minutes have 8 digits until the year 2160: text order is number order.
        sqlx::query("DELETE FROM pj_agg WHERE key >= 'min|' AND key < $1")
            .bind(format!("min|{oldest}"))
            .execute(&self.pool)
            .await
            .map_err(db("prune"))?;
        sqlx::query("DELETE FROM pj_processes WHERE seen_at < $1")
            .bind(ms(now) - 3_600_000)
            .execute(&self.pool)
            .await
            .map_err(db("prune"))?;
        Ok(())
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

#[async_trait]
impl HousekeepingStore for SqlStore {
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

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db("ping"))?;
        Ok(())
    }
}

#[cfg(all(test, feature = "sqlite"))]
#[cfg(all(test, feature = "sqlite"))]
mod aggregate_tests {
    use std::time::Duration;

    use sqlx::Row;

    use super::SqlStore;
    use crate::store::conformance::{aggregate_workload, check_metrics};
    use crate::store::prelude::*;
    use crate::store::Retention;

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
        for (i, file) in super::migrate::migrations(super::Dialect::Sqlite)[..5]
            .iter()
            .enumerate()
        {
            for step in super::migrate::statements(file) {
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
