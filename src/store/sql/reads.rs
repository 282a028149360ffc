//! Reads ([`ReadStore`]): one job and its events, and what the API and the dashboard list:
//! filtered pages and counts that stay bounded at millions of jobs, counts by queue and status,
//! `/metrics` figures, executions per minute.
//!
//! A page or count filtered by one of queue, status and class is read through that column's
//! index. Several filters, or a text match, read at most the newest [`SCAN_WINDOW`] jobs of the
//! most selective filter (chosen from the exact aggregate counts, never left to the planner,
//! which may pick an index that reads a whole class) and filter those.

use super::*;

/// A value bound to a built statement.
#[derive(Clone)]
enum Bind {
    Text(String),
    Int(i64),
}

/// A statement built clause by clause, its `$n` placeholders numbered as values are added.
#[derive(Default)]
struct Sql {
    text: String,
    binds: Vec<Bind>,
}

impl Sql {
    fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    fn bind(&mut self, b: Bind) -> &mut Self {
        self.binds.push(b);
        let n = self.binds.len();
        self.text.push_str(&format!("${n}"));
        self
    }

    fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
        let mut q = sqlx::query(&self.text);
        for b in &self.binds {
            q = match b {
                Bind::Text(s) => q.bind(s.clone()),
                Bind::Int(i) => q.bind(*i),
            };
        }
        q
    }
}

/// One indexed filter: its column and value.
#[derive(Clone)]
struct Filter {
    column: &'static str,
    value: String,
}

/// `%text%` for LIKE, lowercased, with `\`, `%` and `_` taken literally.
fn like_pattern(text: &str) -> String {
    let mut p = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '\\' | '%' | '_') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

fn cursor_of(q: &ListQuery) -> Result<Option<i64>, StoreError> {
    q.cursor
        .as_deref()
        .map(|c| {
            c.parse().map_err(|_| StoreError::Corrupt {
                what: "cursor",
                detail: format!("{c:?} is not a cursor this API returned"),
            })
        })
        .transpose()
}

fn filters(q: &ListQuery) -> Vec<Filter> {
    let mut f = Vec::new();
    if let Some(s) = q.status {
        f.push(Filter {
            column: "status",
            value: s.as_str().to_string(),
        });
    }
    if let Some(queue) = &q.queue {
        f.push(Filter {
            column: "queue",
            value: queue.clone(),
        });
    }
    if let Some(c) = &q.job_class {
        f.push(Filter {
            column: "job_class",
            value: c.clone(),
        });
    }
    f
}

/// The conditions on the window's rows: the filters other than the driving one, and the text.
fn outer_conditions(sql: &mut Sql, others: &[Filter], text: Option<&str>) {
    sql.push(" WHERE 1 = 1");
    for f in others {
        sql.push(&format!(" AND w.{} = ", f.column))
            .bind(Bind::Text(f.value.clone()));
    }
    if let Some(t) = text {
        let p = like_pattern(t);
        sql.push(" AND (LOWER(w.arguments) LIKE ")
            .bind(Bind::Text(p.clone()))
            .push(" ESCAPE '\\' OR LOWER(COALESCE(w.last_error, '')) LIKE ")
            .bind(Bind::Text(p))
            .push(" ESCAPE '\\')");
    }
}

/// `FROM pj_jobs WHERE driver = $ AND seq < $cursor`: the rows a window is taken from.
fn driven(sql: &mut Sql, driver: Option<&Filter>, cursor: Option<i64>) {
    sql.push(" FROM pj_jobs WHERE 1 = 1");
    if let Some(d) = driver {
        sql.push(&format!(" AND {} = ", d.column))
            .bind(Bind::Text(d.value.clone()));
    }
    if let Some(c) = cursor {
        sql.push(" AND seq < ").bind(Bind::Int(c));
    }
}

impl SqlStore {
    /// How many jobs have `filter`'s value, exact: from the aggregates for queue and status;
    /// through the class index, up to `cap`, for a class.
    async fn filter_count(&self, filter: &Filter, cap: i64) -> Result<i64, StoreError> {
        if filter.column == "job_class" {
            let n: i64 = sqlx::query(
                "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM (SELECT 1 FROM pj_jobs WHERE job_class = $1 LIMIT $2) AS c",
            )
            .bind(filter.value.clone())
            .bind(cap)
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get("n"))
            .map_err(db("count jobs"))?;
            return Ok(n);
        }
        let mut total = 0;
        for c in self.queue_counts_raw().await? {
            let hit = match filter.column {
                "status" => c.1 == filter.value,
                _ => c.0 == filter.value,
            };
            if hit {
                total += c.2;
            }
        }
        Ok(total)
    }

    /// (queue, status, count) from the aggregates.
    pub(super) async fn queue_counts_raw(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        Ok(self
            .aggregates("jobs|")
            .await?
            .into_iter()
            .filter_map(|(key, n)| {
                let mut parts = key.splitn(3, '|').skip(1);
                Some((parts.next()?.to_string(), parts.next()?.to_string(), n))
            })
            .collect())
    }

    /// The filter whose jobs are fewest, to drive a windowed read; and the others.
    async fn plan(&self, all: Vec<Filter>) -> Result<(Option<Filter>, Vec<Filter>), StoreError> {
        if all.len() <= 1 {
            return Ok((all.into_iter().next(), Vec::new()));
        }
        let mut best: Option<(i64, usize)> = None;
        for (i, f) in all.iter().enumerate() {
            let n = self.filter_count(f, SCAN_WINDOW as i64 + 1).await?;
            if best.is_none_or(|(b, _)| n < b) {
                best = Some((n, i));
            }
        }
        let mut all = all;
        let driver = best.map(|(_, i)| all.remove(i));
        Ok((driver, all))
    }

    /// Scheduled or retrying jobs, soonest due first, through that status's partial index on
    /// `(scheduled_at, seq)`; the cursor is `dMS:SEQ` (the last job's due time and seq).
    async fn list_due(&self, q: &ListQuery) -> Result<Page, StoreError> {
        let limit = q.limit.clamp(1, 500) as i64;
        // The status is inlined (a fixed word) so that the planner can use the partial index.
        let status = match q.status {
            Some(crate::store::JobStatus::Retrying) => "retrying",
            _ => "scheduled",
        };
        // SQLite's planner would rather read the status index and sort; name the index.
        let indexed = match self.dialect {
            super::Dialect::Sqlite => format!(" INDEXED BY pj_jobs_due_{status}"),
            super::Dialect::Postgres => String::new(),
        };
        let mut sql = Sql::default();
        let columns = list_columns(q.cut_values_at);
        sql.push(&format!(
            "SELECT {columns} FROM pj_jobs{indexed} WHERE status = '{status}'"
        ));
        if let Some(queue) = &q.queue {
            sql.push(" AND queue = ").bind(Bind::Text(queue.clone()));
        }
        if let Some(c) = &q.cursor {
            let (at, seq) = c
                .strip_prefix('d')
                .and_then(|c| c.split_once(':'))
                .and_then(|(a, s)| Some((a.parse::<i64>().ok()?, s.parse::<i64>().ok()?)))
                .ok_or_else(|| StoreError::Corrupt {
                    what: "cursor",
                    detail: format!("{c:?} is not a cursor this API returned"),
                })?;
            sql.push(" AND (scheduled_at > ")
                .bind(Bind::Int(at))
                .push(" OR (scheduled_at = ")
                .bind(Bind::Int(at))
                .push(" AND seq > ")
                .bind(Bind::Int(seq))
                .push("))");
        }
        sql.push(" ORDER BY scheduled_at, seq LIMIT ")
            .bind(Bind::Int(limit + 1));
        let rows = sql
            .query()
            .fetch_all(&self.pool)
            .await
            .map_err(db("list jobs"))?;
        let mut jobs = Vec::with_capacity(rows.len());
        let mut last = None;
        for row in rows.iter().take(limit as usize) {
            let job = job_from_row(row)?;
            let seq: i64 = row.try_get("seq").map_err(db("list jobs"))?;
            let at = job.scheduled_at.map(ms).unwrap_or(0);
            last = Some(format!("d{at}:{seq}"));
            jobs.push(job);
        }
        let next_cursor = if rows.len() as i64 > limit {
            last
        } else {
            None
        };
        Ok(Page { jobs, next_cursor })
    }

    /// How many rows the window below `cursor` held, and its lowest seq.
    async fn window_extent(
        &self,
        driver: Option<&Filter>,
        cursor: Option<i64>,
    ) -> Result<(i64, i64), StoreError> {
        let mut sql = Sql::default();
        sql.push("SELECT CAST(COUNT(*) AS BIGINT) AS n, CAST(COALESCE(MIN(seq), 0) AS BIGINT) AS lowest FROM (SELECT seq");
        driven(&mut sql, driver, cursor);
        sql.push(" ORDER BY seq DESC LIMIT ")
            .bind(Bind::Int(SCAN_WINDOW as i64))
            .push(") AS w");
        let row = sql
            .query()
            .fetch_one(&self.pool)
            .await
            .map_err(db("list jobs"))?;
        Ok((
            row.try_get("n").map_err(db("list jobs"))?,
            row.try_get("lowest").map_err(db("list jobs"))?,
        ))
    }
}

#[async_trait]
impl ReadStore for SqlStore {
    async fn get(&self, id: Uuid) -> Result<Option<JobRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM pj_jobs WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db("get job"))?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn logs(
        &self,
        id: Uuid,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<JobLog>, StoreError> {
        let after = after.map_or(-1, |a| a.min(i64::MAX as u64) as i64);
        let rows = sqlx::query(
            "SELECT n, attempt, at, line FROM pj_job_logs WHERE job_id = $1 AND n > $2 ORDER BY n LIMIT $3",
        )
        .bind(id.to_string())
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db("get logs"))?;
        rows.iter()
            .map(|r| {
                Ok(JobLog {
                    n: r.try_get::<i64, _>("n").map_err(db("get logs"))?.max(0) as u64,
                    attempt: r
                        .try_get::<i64, _>("attempt")
                        .map_err(db("get logs"))?
                        .max(0) as u32,
                    at: super::row::from_ms(r.try_get("at").map_err(db("get logs"))?),
                    line: r.try_get("line").map_err(db("get logs"))?,
                })
            })
            .collect()
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
        let q = &q;
        if q.is_due_order() {
            return self.list_due(q).await;
        }
        let limit = q.limit.clamp(1, 500) as i64;
        let cursor = cursor_of(q)?;
        let (driver, others) = self.plan(filters(q)).await?;
        let windowed = q.is_windowed();
        let mut sql = Sql::default();
        let columns = list_columns(q.cut_values_at);
        if windowed {
            sql.push(&format!("SELECT {columns} FROM (SELECT {JOB_COLUMNS}"));
            driven(&mut sql, driver.as_ref(), cursor);
            sql.push(" ORDER BY seq DESC LIMIT ")
                .bind(Bind::Int(SCAN_WINDOW as i64))
                .push(") AS w");
            outer_conditions(&mut sql, &others, q.text.as_deref());
            sql.push(" ORDER BY w.seq DESC LIMIT ")
                .bind(Bind::Int(limit + 1));
        } else {
            sql.push(&format!("SELECT {columns}"));
            driven(&mut sql, driver.as_ref(), cursor);
            sql.push(" ORDER BY seq DESC LIMIT ")
                .bind(Bind::Int(limit + 1));
        }
        let rows = sql
            .query()
            .fetch_all(&self.pool)
            .await
            .map_err(db("list jobs"))?;
        let mut jobs = Vec::with_capacity(rows.len());
        let mut last_seq = None;
        for row in rows.iter().take(limit as usize) {
            jobs.push(job_from_row(row)?);
            last_seq = Some(row.try_get::<i64, _>("seq").map_err(db("list jobs"))?);
        }
        let next_cursor = if rows.len() as i64 > limit {
            last_seq.map(|s| s.to_string())
        } else if windowed {
            // The window may have ended before the jobs did: go on below it.
            let (n, lowest) = self.window_extent(driver.as_ref(), cursor).await?;
            (n >= SCAN_WINDOW as i64).then(|| lowest.to_string())
        } else {
            None
        };
        Ok(Page { jobs, next_cursor })
    }

    async fn count(&self, q: &ListQuery) -> Result<JobCount, StoreError> {
        if q.text.is_none() && q.job_class.is_none() {
            // Queue and status: the aggregates, exact.
            let n: i64 = self
                .queue_counts_raw()
                .await?
                .into_iter()
                .filter(|(queue, status, _)| {
                    q.queue.as_deref().is_none_or(|x| x == queue)
                        && q.status.is_none_or(|s| s.as_str() == status)
                })
                .map(|(_, _, n)| n.max(0))
                .sum();
            return Ok(JobCount {
                count: n as u64,
                exact: true,
            });
        }
        if !q.is_windowed() {
            // A class alone: its index, exact.
            let f = filters(q).remove(0);
            let n = self.filter_count(&f, i64::MAX).await?;
            return Ok(JobCount {
                count: n.max(0) as u64,
                exact: true,
            });
        }
        let (driver, others) = self.plan(filters(q)).await?;
        let mut sql = Sql::default();
        sql.push("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM (SELECT seq, arguments, last_error, status, queue, job_class");
        driven(&mut sql, driver.as_ref(), None);
        sql.push(" ORDER BY seq DESC LIMIT ")
            .bind(Bind::Int(SCAN_WINDOW as i64 + 1))
            .push(") AS w");
        outer_conditions(&mut sql, &others, q.text.as_deref());
        let n: i64 = sql
            .query()
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get("n"))
            .map_err(db("count jobs"))?;
        let (seen, _) = self.window_extent(driver.as_ref(), None).await?;
        Ok(JobCount {
            count: n.max(0) as u64,
            exact: seen < SCAN_WINDOW as i64,
        })
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

    async fn throughput(
        &self,
        since: chrono::DateTime<Utc>,
    ) -> Result<Vec<MinuteCount>, StoreError> {
        let first = since.timestamp().div_euclid(60);
        let mut by_minute = std::collections::BTreeMap::<i64, MinuteCount>::new();
        for (key, n) in self.aggregates("min|").await? {
            let mut parts = key.splitn(3, '|').skip(1);
            let (Some(minute), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let Ok(minute) = minute.parse::<i64>() else {
                continue;
            };
            if minute < first || n <= 0 {
                continue;
            }
            let Some(at) = DateTime::from_timestamp(minute * 60, 0) else {
                continue;
            };
            let m = by_minute.entry(minute).or_insert(MinuteCount {
                minute: at,
                succeeded: 0,
                failed: 0,
            });
            match kind {
                "succeeded" => m.succeeded += n as u64,
                "failed" => m.failed += n as u64,
                _ => {}
            }
        }
        Ok(by_minute.into_values().collect())
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

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use chrono::Utc;
    use uuid::Uuid;

    use super::like_pattern;
    use crate::store::prelude::*;
    use crate::store::{ListQuery, NewJob, SCAN_WINDOW};

    #[test]
    fn like_patterns_take_wildcards_literally() {
        assert_eq!(like_pattern("A_b%c\\"), "%a\\_b\\%c\\\\%");
    }

    /// Jobs below the newest SCAN_WINDOW are still reached, page after page, and a count that
    /// could not look at them says so.
    #[tokio::test]
    async fn windowed_reads_go_on_below_the_window() {
        let s = super::SqlStore::connect("sqlite::memory:").await.unwrap();
        let total = SCAN_WINDOW as usize + 100;
        let jobs: Vec<NewJob> = (0..total)
            .map(|n| NewJob {
                id: Uuid::now_v7(),
                job_class: "Probe".into(),
                queue: "windowed".into(),
                arguments: serde_json::json!({ "tag": if n < 30 { "early" } else { "later" } }),
                metadata: Default::default(),
                enqueued_at: Utc::now(),
                scheduled_at: None,
                dedup: None,
                message: None,
            })
            .collect();
        let early: Vec<Uuid> = jobs[..30].iter().rev().map(|j| j.id).collect();
        s.submit_many(jobs).await.unwrap();
        let mut q = ListQuery {
            queue: Some("windowed".into()),
            text: Some("EARLY".into()),
            limit: 20,
            ..Default::default()
        };
        let first = s.list(q.clone()).await.unwrap();
        assert!(first.jobs.is_empty(), "the newest window holds none");
        assert!(first.next_cursor.is_some(), "but the reading goes on");
        let mut found = Vec::new();
        q.cursor = first.next_cursor;
        while let Some(c) = q.cursor.take() {
            q.cursor = Some(c);
            let page = s.list(q.clone()).await.unwrap();
            found.extend(page.jobs.iter().map(|j| j.id));
            q.cursor = page.next_cursor;
        }
        assert_eq!(found, early, "every match, newest first, once");
        let count = s.count(&q).await.unwrap();
        assert!(!count.exact, "the window did not hold everything");
        assert_eq!(count.count, 0, "a lower bound over the newest window");
        let all = s
            .count(&ListQuery {
                queue: Some("windowed".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!((all.count, all.exact), (total as u64, true));
    }
}
