//! Group commit in SQL: a batch of a worker's writes (starts and transitions of distinct jobs)
//! as a handful of multi-row statements in one transaction, instead of two statements per
//! write: one upsert for the starts, one `UPDATE ... FROM (VALUES ...)` per kind of
//! transition, one insert for all the events. The same conditions as the one-by-one writes
//! (`start_in`, `finish_in`): a cancelled job or a finished execution is not started, a
//! retry does not override a cancel, and only rows that changed get an event.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::{Any, Row, Transaction};
use uuid::Uuid;

use super::lifecycle::START_UPSERT;
use super::row::{json_text, metadata_text, ms};
use super::{db, JobColumns};
use crate::store::{EventKind, NewJob, Start, StartOutcome, StoreError, StoreOp, Transition};

/// Rows per statement (well under SQLite's and PostgreSQL's bind limits).
const CHUNK: usize = 200;

/// A bound value.
#[derive(Clone)]
pub(super) enum V {
    T(Option<String>),
    I(Option<i64>),
}

type AnyQuery<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>;

fn bind_all<'q>(mut q: AnyQuery<'q>, vals: Vec<V>) -> AnyQuery<'q> {
    for v in vals {
        q = match v {
            V::T(t) => q.bind(t),
            V::I(i) => q.bind(i),
        };
    }
    q
}

/// The statement as the database binds it fastest. SQLite looks each named parameter (`$N`) up
/// by a linear scan, so binding a statement of n `$N` parameters costs O(n²): with a few
/// thousand that is most of a batch's time. On SQLite the statement is rewritten to anonymous
/// `?`s, each bound in order (a `$N` used twice is bound twice).
fn positional(tx: &Transaction<'_, Any>, sql: String, vals: Vec<V>) -> (String, Vec<V>) {
    if tx.backend_name() == "SQLite" {
        anonymous(&sql, &vals)
    } else {
        (sql, vals)
    }
}

/// `sql` with each `$N` replaced by `?`, and the values in the order the `?`s bind them.
fn anonymous(sql: &str, vals: &[V]) -> (String, Vec<V>) {
    let mut out = String::with_capacity(sql.len());
    let mut bound = Vec::with_capacity(vals.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            let mut n = 0usize;
            while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                n = n * 10 + d as usize;
                chars.next();
            }
            out.push('?');
            bound.push(vals.get(n.wrapping_sub(1)).cloned().unwrap_or(V::T(None)));
        } else {
            out.push(c);
        }
    }
    (out, bound)
}

/// Inserts a job's log `lines`, numbered from `first`, in multi-row statements (a line whose
/// number is taken already, by a duplicate delivery, is skipped).
pub(super) async fn insert_logs(
    tx: &mut Transaction<'_, Any>,
    id: Uuid,
    first: i64,
    lines: &[crate::store::LogLine],
) -> Result<(), StoreError> {
    for (c, chunk) in lines.chunks(CHUNK).enumerate() {
        let rows = placeholders(chunk.len(), 4, 2, &[]);
        let sql = format!(
            "INSERT INTO pj_job_logs (job_id, n, attempt, at, line)
             SELECT $1, v.column1, v.column2, v.column3, v.column4 FROM (VALUES {rows}) AS v WHERE true
             ON CONFLICT (job_id, n) DO NOTHING"
        );
        let mut vals = vec![V::T(Some(id.to_string()))];
        for (i, l) in chunk.iter().enumerate() {
            vals.extend([
                V::I(Some(first + (c * CHUNK + i) as i64)),
                V::I(Some(i64::from(l.attempt))),
                V::I(Some(ms(l.at))),
                V::T(Some(l.line.clone())),
            ]);
        }
        let (sql, vals) = positional(tx, sql, vals);
        bind_all(sqlx::query(&sql), vals)
            .execute(&mut **tx)
            .await
            .map_err(db("record logs"))?;
    }
    Ok(())
}

/// `($o+1, $o+2, ...)` for `n` values per row, rows from `first`.
fn placeholders(rows: usize, per_row: usize, first: usize, casts: &[&str]) -> String {
    (0..rows)
        .map(|r| {
            let cells: Vec<String> = (0..per_row)
                .map(|c| {
                    let p = first + r * per_row + c;
                    match casts.get(c) {
                        Some(t) if !t.is_empty() => format!("CAST(${p} AS {t})"),
                        _ => format!("${p}"),
                    }
                })
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// An event to append.
struct Event {
    id: Uuid,
    kind: EventKind,
    attempt: u32,
    error: Option<String>,
    detail: Option<serde_json::Value>,
}

/// The job of a write.
pub(super) fn op_id(op: &StoreOp) -> Uuid {
    match op {
        StoreOp::Start(s) => s.id,
        StoreOp::Finish { id, .. } | StoreOp::Progress { id, .. } => *id,
    }
}

/// Applies `ops` (distinct jobs) inside `tx`.
pub(super) async fn apply(
    tx: &mut Transaction<'_, Any>,
    ops: &[StoreOp],
) -> Result<Vec<Option<StartOutcome>>, StoreError> {
    let now = Utc::now();
    let mut out = vec![None; ops.len()];
    let mut events = Vec::new();
    let starts: Vec<(usize, &Start)> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| match op {
            StoreOp::Start(s) => Some((i, s)),
            _ => None,
        })
        .collect();
    for chunk in starts.chunks(CHUNK) {
        let started = start_rows(tx, chunk, now).await?;
        let others: Vec<String> = chunk
            .iter()
            .map(|(_, s)| s.id.to_string())
            .filter(|id| !started.contains(id))
            .collect();
        let statuses = statuses(tx, &others).await?;
        for (i, s) in chunk {
            let id = s.id.to_string();
            out[*i] = Some(if started.contains(&id) {
                events.push(Event {
                    id: s.id,
                    kind: EventKind::Started,
                    attempt: s.attempt,
                    error: None,
                    detail: None,
                });
                StartOutcome::Run
            } else if statuses.get(&id).map(String::as_str) == Some("cancelled") {
                StartOutcome::Cancelled
            } else {
                StartOutcome::AlreadyFinished
            });
        }
    }
    // Progress before the finishes: a job's last lines land while it still runs.
    for op in ops {
        if let StoreOp::Progress {
            id,
            attempt,
            progress,
            logs,
        } = op
        {
            super::lifecycle::progress_in(tx, *id, *attempt, progress.as_ref(), logs).await?;
        }
    }
    let finishes: Vec<(Uuid, u32, &Transition)> = ops
        .iter()
        .filter_map(|op| match op {
            StoreOp::Finish {
                id,
                attempt,
                transition,
            } => Some((*id, *attempt, transition)),
            _ => None,
        })
        .collect();
    for chunk in finishes.chunks(CHUNK) {
        finish_rows(tx, chunk, now, &mut events).await?;
    }
    for chunk in events.chunks(CHUNK) {
        insert_events(tx, chunk, ms(now)).await?;
    }
    Ok(out)
}

/// The multi-row conditional start; returns the ids started.
async fn start_rows(
    tx: &mut Transaction<'_, Any>,
    chunk: &[(usize, &Start)],
    now: DateTime<Utc>,
) -> Result<HashSet<String>, StoreError> {
    let rows = placeholders(chunk.len(), 9, 2, &[]);
    let sql = format!(
        "INSERT INTO pj_jobs (id, job_class, queue, status, attempts, arguments, enqueued_at, started_at, updated_at, queue_ms, published_at, generation, metadata)
         SELECT v.column1, v.column2, v.column3, 'running', v.column4, v.column5, v.column6, $1, $1, v.column7, $1, v.column8, v.column9
         FROM (VALUES {rows}) AS v WHERE true
         {START_UPSERT} RETURNING id"
    );
    let mut vals = vec![V::I(Some(ms(now)))];
    for (_, s) in chunk {
        let queue_ms = (s.attempt <= 1).then(|| (now - s.due_at).num_milliseconds().max(0));
        vals.extend([
            V::T(Some(s.id.to_string())),
            V::T(Some(s.job_class.clone())),
            V::T(Some(s.queue.clone())),
            V::I(Some(i64::from(s.attempt))),
            V::T(Some(json_text(&s.arguments))),
            V::I(Some(ms(s.enqueued_at))),
            V::I(queue_ms),
            V::I(Some(i64::from(s.generation))),
            V::T(metadata_text(&s.metadata)),
        ]);
    }
    let (sql, vals) = positional(tx, sql, vals);
    bind_all(sqlx::query(&sql), vals)
        .fetch_all(&mut **tx)
        .await
        .map_err(db("start jobs"))?
        .iter()
        .map(|r| r.try_get::<String, _>("id").map_err(db("start jobs")))
        .collect()
}

/// Statuses of `ids`.
async fn statuses(
    tx: &mut Transaction<'_, Any>,
    ids: &[String],
) -> Result<HashMap<String, String>, StoreError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let list: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT id, status FROM pj_jobs WHERE id IN ({})",
        list.join(", ")
    );
    let vals = ids.iter().map(|id| V::T(Some(id.clone()))).collect();
    let (sql, vals) = positional(tx, sql, vals);
    bind_all(sqlx::query(&sql), vals)
        .fetch_all(&mut **tx)
        .await
        .map_err(db("start jobs"))?
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<String, _>("id").map_err(db("start jobs"))?,
                r.try_get::<String, _>("status").map_err(db("start jobs"))?,
            ))
        })
        .collect()
}

/// The transitions of `chunk`, one statement per kind; appends the events of rows that changed.
async fn finish_rows(
    tx: &mut Transaction<'_, Any>,
    chunk: &[(Uuid, u32, &Transition)],
    now: DateTime<Utc>,
    events: &mut Vec<Event>,
) -> Result<(), StoreError> {
    // (SET clause, extra condition, casts of the value columns after the id)
    let mut groups: HashMap<&'static str, Vec<(Uuid, u32, &Transition)>> = HashMap::new();
    for item in chunk {
        let key = match item.2 {
            Transition::Succeeded { .. } => "succeeded",
            Transition::Failed { .. } => "failed",
            Transition::RetryScheduled { .. } => "retrying",
            Transition::Interrupted { .. } => "interrupted",
            Transition::Morgued { .. } | Transition::Discarded { .. } => "ended",
        };
        groups.entry(key).or_default().push(*item);
    }
    for (key, items) in groups {
        let (set, cond, casts): (&str, &str, &[&str]) = match key {
            "succeeded" => (
                "status = 'succeeded', finished_at = $1, updated_at = $1, result = v.column2, run_ms = v.column3",
                "",
                &["TEXT", "TEXT", "BIGINT"],
            ),
            "failed" => (
                "status = 'failed', updated_at = $1, last_error = v.column2, run_ms = v.column3,
                 result = COALESCE(v.column4, pj_jobs.result)",
                "",
                &["TEXT", "TEXT", "BIGINT", "TEXT"],
            ),
            "retrying" => (
                "status = 'retrying', scheduled_at = v.column2, updated_at = $1",
                " AND pj_jobs.status <> 'cancelled'",
                &["TEXT", "BIGINT"],
            ),
            "interrupted" => (
                "status = 'pending', updated_at = $1",
                " AND pj_jobs.status = 'running'",
                &["TEXT"],
            ),
            _ => (
                "status = v.column2, finished_at = $1, updated_at = $1, last_error = v.column3",
                "",
                &["TEXT", "TEXT", "TEXT"],
            ),
        };
        let rows = placeholders(items.len(), casts.len(), 2, casts);
        let sql = format!(
            "UPDATE pj_jobs SET {set}, version = pj_jobs.version + 1
             FROM (VALUES {rows}) AS v WHERE pj_jobs.id = v.column1{cond} RETURNING id"
        );
        let mut vals = vec![V::I(Some(ms(now)))];
        let mut pending: HashMap<String, Event> = HashMap::new();
        for (id, attempt, t) in &items {
            vals.push(V::T(Some(id.to_string())));
            let event = |kind, error: Option<&String>, detail| Event {
                id: *id,
                kind,
                attempt: *attempt,
                error: error.cloned(),
                detail,
            };
            let ev = match t {
                Transition::Succeeded { result, run } => {
                    let run_ms = run.as_millis() as i64;
                    vals.extend([V::T(result.as_ref().map(json_text)), V::I(Some(run_ms))]);
                    event(
                        EventKind::Succeeded,
                        None,
                        Some(serde_json::json!({ "run_ms": run_ms })),
                    )
                }
                Transition::Failed { error, run, result } => {
                    let run_ms = run.as_millis() as i64;
                    vals.extend([
                        V::T(Some(error.clone())),
                        V::I(Some(run_ms)),
                        V::T(result.as_ref().map(json_text)),
                    ]);
                    event(
                        EventKind::Failed,
                        Some(error),
                        Some(serde_json::json!({ "run_ms": run_ms })),
                    )
                }
                Transition::RetryScheduled { at } => {
                    vals.push(V::I(Some(ms(*at))));
                    event(
                        EventKind::RetryScheduled,
                        None,
                        Some(serde_json::json!({ "scheduled_at": at })),
                    )
                }
                Transition::Interrupted { resumptions } => event(
                    EventKind::Interrupted,
                    None,
                    Some(serde_json::json!({ "resumptions": resumptions })),
                ),
                Transition::Morgued { error } => {
                    vals.extend([V::T(Some("morgued".into())), V::T(Some(error.clone()))]);
                    event(EventKind::Morgued, Some(error), None)
                }
                Transition::Discarded { error } => {
                    vals.extend([V::T(Some("discarded".into())), V::T(Some(error.clone()))]);
                    event(EventKind::Discarded, Some(error), None)
                }
            };
            pending.insert(id.to_string(), ev);
        }
        let (sql, vals) = positional(tx, sql, vals);
        let changed = bind_all(sqlx::query(&sql), vals)
            .fetch_all(&mut **tx)
            .await
            .map_err(db("record transitions"))?;
        for r in &changed {
            let id: String = r.try_get("id").map_err(db("record transitions"))?;
            if let Some(ev) = pending.remove(&id) {
                events.push(ev);
            }
        }
    }
    Ok(())
}

async fn insert_events(
    tx: &mut Transaction<'_, Any>,
    chunk: &[Event],
    at: i64,
) -> Result<(), StoreError> {
    let stmt = events_statement(chunk, at);
    let (sql, vals) = positional(tx, stmt.sql, stmt.vals);
    bind_all(sqlx::query(&sql), vals)
        .execute(&mut **tx)
        .await
        .map_err(db("append events"))?;
    Ok(())
}

/// One multi-row insert of events, every one at `at` (`$1`).
fn events_statement(chunk: &[Event], at: i64) -> Stmt {
    let rows: Vec<String> = (0..chunk.len())
        .map(|r| {
            let p = 2 + r * 5;
            format!(
                "(${}, ${}, ${}, $1, ${}, ${})",
                p,
                p + 1,
                p + 2,
                p + 3,
                p + 4
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO pj_events (job_id, kind, attempt, at, error, detail) VALUES {}",
        rows.join(", ")
    );
    let mut vals = vec![V::I(Some(at))];
    for e in chunk {
        vals.extend([
            V::T(Some(e.id.to_string())),
            V::T(Some(e.kind.as_str().to_string())),
            V::I(Some(i64::from(e.attempt))),
            V::T(e.error.clone()),
            V::T(e.detail.as_ref().map(|d| d.to_string())),
        ]);
    }
    Stmt { sql, vals }
}
/// Who publishes a new outbox row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Publisher {
    /// Its enqueuer, right after the commit: the row is claimed for [`super::ENQUEUER_CLAIM`].
    Enqueuer,
    /// A relay, as soon as the application's transaction commits: the row is unclaimed.
    Relay,
}

/// A built statement: its text with `$N` parameters, and their values.
pub(super) struct Stmt {
    sql: String,
    vals: Vec<V>,
}

impl Stmt {
    /// The text and the values in binding order; on SQLite with anonymous `?`s (see
    /// [`positional`]).
    pub(super) fn into_parts(self, sqlite: bool) -> (String, Vec<V>) {
        if sqlite {
            anonymous(&self.sql, &self.vals)
        } else {
            (self.sql, self.vals)
        }
    }
}

/// The statements that write new jobs: their rows as multi-row inserts, then their first
/// events. The one INSERT of a new job, whichever way it enters: a submit, a bulk submit, a
/// periodic tick, or the application's own transaction (`tx.rs`, with [`Publisher::Relay`]).
pub(super) fn insert_statements(
    jobs: &[NewJob],
    now: i64,
    publisher: Publisher,
) -> Result<Vec<Stmt>, StoreError> {
    let mut out = Vec::new();
    let mut events = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(CHUNK) {
        let rows = placeholders(chunk.len(), 14, 2, &[]);
        let sql = format!(
            "INSERT INTO pj_jobs (id, job_class, queue, status, arguments, enqueued_at, scheduled_at, dedup_key,
                                  published_at, outbox_claimed_until, outbox_topic, outbox_data, outbox_attributes, metadata, attempts, updated_at)
             SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7, v.column8,
                    v.column9, v.column10, v.column11, v.column12, v.column13, v.column14, 0, $1
             FROM (VALUES {rows}) AS v"
        );
        let mut vals = vec![V::I(Some(now))];
        for job in chunk {
            let mut c = JobColumns::of(job, now)?;
            if publisher == Publisher::Relay && c.claimed_until.is_some() {
                c.claimed_until = Some(0);
            }
            let (kind, detail) = c.event();
            events.push(Event {
                id: job.id,
                kind,
                attempt: 0,
                error: None,
                detail,
            });
            vals.extend([
                V::T(Some(job.id.to_string())),
                V::T(Some(job.job_class.clone())),
                V::T(Some(job.queue.clone())),
                V::T(Some(c.status.as_str().to_string())),
                V::T(Some(json_text(&job.arguments))),
                V::I(Some(ms(job.enqueued_at))),
                V::I(c.due_later.map(ms)),
                V::T(job.dedup.as_ref().map(|d| d.key.clone())),
                V::I(c.published_at),
                V::I(c.claimed_until),
                V::T(c.topic),
                V::T(c.data),
                V::T(c.attributes),
                V::T(metadata_text(&job.metadata)),
            ]);
        }
        out.push(Stmt { sql, vals });
    }
    for chunk in events.chunks(CHUNK) {
        out.push(events_statement(chunk, now));
    }
    Ok(out)
}

/// New jobs (no dedup) inside `tx`, published by their enqueuer (see [`insert_statements`]).
pub(super) async fn insert_jobs(
    tx: &mut Transaction<'_, Any>,
    jobs: &[NewJob],
    now: i64,
) -> Result<(), StoreError> {
    for stmt in insert_statements(jobs, now, Publisher::Enqueuer)? {
        let (sql, vals) = positional(tx, stmt.sql, stmt.vals);
        bind_all(sqlx::query(&sql), vals)
            .execute(&mut **tx)
            .await
            .map_err(db("insert jobs"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollar_parameters_become_anonymous_in_binding_order() {
        let vals = vec![V::I(Some(7)), V::T(Some("a".into())), V::T(None)];
        let (sql, bound) = anonymous(
            "SELECT $1, $2 FROM t WHERE x = $1 AND y = $3 AND z = '$'",
            &vals,
        );
        assert_eq!(sql, "SELECT ?, ? FROM t WHERE x = ? AND y = ? AND z = '$'");
        let shown: Vec<String> = bound
            .iter()
            .map(|v| match v {
                V::I(i) => format!("{i:?}"),
                V::T(t) => format!("{t:?}"),
            })
            .collect();
        assert_eq!(shown, ["Some(7)", "Some(\"a\")", "Some(7)", "None"]);
    }
}
