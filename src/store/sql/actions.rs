//! Operator actions on stored jobs: cancel, requeue (a retry from the store), delete.

use super::*;

#[async_trait]
impl ActionStore for SqlStore {
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

    async fn cancel_cleared(&self, queue: &str, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let now = ms(Utc::now());
        let mut tx = self.pool.begin().await.map_err(db("begin"))?;
        let rows = sqlx::query(
            "UPDATE pj_jobs SET status = 'cancelled', finished_at = $3, updated_at = $3, version = version + 1,
                 outbox_data = NULL, outbox_attributes = NULL, outbox_claimed_until = NULL
             WHERE queue = $1 AND updated_at <= $2 AND status IN ('pending', 'scheduled', 'retrying')
             RETURNING id, attempts",
        )
        .bind(queue.to_string())
        .bind(ms(before))
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .map_err(db("cancel cleared jobs"))?;
        let detail = serde_json::json!({ "cleared": true });
        for row in &rows {
            let id: String = row.try_get("id").map_err(db("cancel cleared jobs"))?;
            let attempts: i64 = row.try_get("attempts").map_err(db("cancel cleared jobs"))?;
            let id = Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt {
                what: "job id",
                detail: e.to_string(),
            })?;
            append_event(
                &mut tx,
                id,
                EventKind::Cancelled,
                attempts as u32,
                now,
                None,
                Some(detail.clone()),
            )
            .await?;
        }
        tx.commit().await.map_err(db("commit"))?;
        Ok(rows.len() as u64)
    }

    async fn requeue(&self, r: Requeue) -> Result<RequeueOutcome, StoreError> {
        let now = ms(Utc::now());
        let data = String::from_utf8(r.message.data.clone()).map_err(|e| StoreError::Corrupt {
            what: "outbox message",
            detail: format!("body is not UTF-8: {e}"),
        })?;
        let mut tx = self.pool.begin().await.map_err(db("begin"))?;
        let updated = sqlx::query(
            "UPDATE pj_jobs SET status = 'pending', scheduled_at = NULL, finished_at = NULL,
                 updated_at = $3, version = version + 1, generation = $4, published_at = NULL,
                 outbox_topic = $5, outbox_data = $6, outbox_attributes = $7, outbox_claimed_until = $8
             WHERE id = $1 AND version = $2
               AND status IN ('failed', 'morgued', 'discarded', 'cancelled')",
        )
        .bind(r.id.to_string())
        .bind(r.version)
        .bind(now)
        .bind(i64::from(r.generation))
        .bind(r.message.topic.clone())
        .bind(data)
        .bind(serde_json::to_string(&r.message.attributes).unwrap_or_default())
        .bind(now + ENQUEUER_CLAIM.as_millis() as i64)
        .execute(&mut *tx)
        .await
        .map_err(db("requeue job"))?
        .rows_affected();
        if updated == 1 {
            append_event(
                &mut tx,
                r.id,
                EventKind::Enqueued,
                0,
                now,
                None,
                Some(serde_json::json!({ "retry": true, "generation": r.generation })),
            )
            .await?;
        }
        let rec = self.get_in(&mut tx, &r.id.to_string()).await?;
        tx.commit().await.map_err(db("commit"))?;
        Ok(match rec {
            None => RequeueOutcome::NotFound,
            Some(rec) if updated == 1 => RequeueOutcome::Requeued(Box::new(rec)),
            Some(rec) => RequeueOutcome::Conflict(Box::new(rec)),
        })
    }

    async fn delete(&self, id: Uuid) -> Result<DeleteOutcome, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db("begin"))?;
        let deleted = sqlx::query(
            "DELETE FROM pj_jobs WHERE id = $1
               AND status IN ('succeeded', 'failed', 'morgued', 'discarded', 'cancelled')
             RETURNING dedup_key",
        )
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("delete job"))?;
        let Some(row) = deleted else {
            let rec: Option<JobRecord> = self.get_in(&mut tx, &id.to_string()).await?;
            tx.commit().await.map_err(db("commit"))?;
            return Ok(match rec {
                None => DeleteOutcome::NotFound,
                Some(rec) => DeleteOutcome::Conflict(Box::new(rec)),
            });
        };
        for sql in [
            "DELETE FROM pj_events WHERE job_id = $1",
            "DELETE FROM pj_job_logs WHERE job_id = $1",
        ] {
            sqlx::query(sql)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db("delete job"))?;
        }
        if let Some(key) = row
            .try_get::<Option<String>, _>("dedup_key")
            .map_err(db("delete job"))?
        {
            sqlx::query("DELETE FROM pj_dedup WHERE key = $1 AND job_id = $2")
                .bind(key)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db("delete job"))?;
        }
        tx.commit().await.map_err(db("commit"))?;
        Ok(DeleteOutcome::Deleted)
    }
}
