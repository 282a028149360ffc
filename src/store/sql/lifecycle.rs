//! A job's life as the worker records it: starts (which also tell a cancelled job or a duplicate
//! of a finished execution), transitions, and group-commit batches of both.

use super::*;

/// How a start meets an existing row: it runs unless the job was cancelled or the store shows
/// this execution (or a later one of this generation) finished; a started job leaves the
/// outbox. Shared by one-by-one and batched starts.
pub(super) const START_UPSERT: &str =
    "ON CONFLICT (id) DO UPDATE SET status = 'running', attempts = excluded.attempts,
     started_at = excluded.started_at, updated_at = excluded.updated_at,
     finished_at = NULL, queue_ms = COALESCE(pj_jobs.queue_ms, excluded.queue_ms), progress = NULL,
     generation = excluded.generation, version = pj_jobs.version + 1,
     published_at = COALESCE(pj_jobs.published_at, excluded.started_at),
     outbox_data = NULL, outbox_attributes = NULL, outbox_claimed_until = NULL
 WHERE pj_jobs.status <> 'cancelled'
   AND NOT (pj_jobs.status IN ('succeeded', 'morgued', 'discarded')
            AND pj_jobs.generation >= excluded.generation
            AND pj_jobs.attempts >= excluded.attempts)";

/// Marks an execution started inside `tx` (see [`LifecycleStore::start`]).
async fn start_in(tx: &mut Transaction<'_, Any>, s: &Start) -> Result<StartOutcome, StoreError> {
    let now = Utc::now();
    let queue_ms = (s.attempt <= 1).then(|| (now - s.due_at).num_milliseconds().max(0));
    let sql = format!(
        "INSERT INTO pj_jobs (id, job_class, queue, status, attempts, arguments, enqueued_at, started_at, updated_at, queue_ms, published_at, generation, metadata)
         VALUES ($1, $2, $3, 'running', $4, $5, $6, $7, $7, $8, $7, $9, $10)
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
        .bind(metadata_text(&s.metadata))
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

/// Records a transition inside `tx` (see [`LifecycleStore::finish`]).
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
        Transition::Interrupted { resumptions } => {
            let row = sqlx::query(
                "UPDATE pj_jobs SET status = 'pending', updated_at = $2, version = version + 1
                     WHERE id = $1 AND status = 'running' RETURNING id",
            )
            .bind(id_s.clone())
            .bind(now)
            .fetch_optional(&mut **tx)
            .await;
            (
                EventKind::Interrupted,
                None,
                Some(serde_json::json!({ "resumptions": resumptions })),
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

/// Records a running execution's progress and log lines inside `tx` (see
/// [`LifecycleStore::progress`]): nothing unless `attempt` is the job's running execution.
pub(super) async fn progress_in(
    tx: &mut Transaction<'_, Any>,
    id: Uuid,
    attempt: u32,
    progress: Option<&Progress>,
    logs: &[LogLine],
) -> Result<(), StoreError> {
    let running = "status = 'running' AND attempts = $2";
    if let Some(p) = progress {
        let text = serde_json::to_string(p).map_err(|e| StoreError::Corrupt {
            what: "progress",
            detail: e.to_string(),
        })?;
        // The version moves, so that a client polling with an ETag sees the change.
        sqlx::query(&format!(
            "UPDATE pj_jobs SET progress = $3, version = version + 1 WHERE id = $1 AND {running}"
        ))
        .bind(id.to_string())
        .bind(i64::from(attempt))
        .bind(text)
        .execute(&mut **tx)
        .await
        .map_err(db("record progress"))?;
    }
    if logs.is_empty() {
        return Ok(());
    }
    // The next line's number, or nothing when that execution is not the running one.
    let next: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT CAST(COALESCE((SELECT MAX(n) + 1 FROM pj_job_logs WHERE job_id = $1), 0) AS BIGINT)
         FROM pj_jobs WHERE id = $1 AND {running}"
    ))
    .bind(id.to_string())
    .bind(i64::from(attempt))
    .fetch_optional(&mut **tx)
    .await
    .map_err(db("record logs"))?;
    let Some(next) = next else {
        return Ok(());
    };
    let room = (crate::store::MAX_STORED_LOG_LINES as i64 - next).max(0) as usize;
    super::batch::insert_logs(tx, id, next, &logs[..logs.len().min(room)]).await?;
    Ok(())
}

#[async_trait]
impl LifecycleStore for SqlStore {
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

    async fn progress(
        &self,
        id: Uuid,
        attempt: u32,
        progress: Option<&Progress>,
        logs: &[LogLine],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db("begin"))?;
        progress_in(&mut tx, id, attempt, progress, logs).await?;
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
                StoreOp::Progress {
                    id,
                    attempt,
                    progress,
                    logs,
                } => {
                    progress_in(&mut tx, *id, *attempt, progress.as_ref(), logs).await?;
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
}
