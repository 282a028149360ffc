//! Enqueue and the outbox: new jobs (one INSERT for every way in: `batch::insert_jobs`), dedup
//! keys, and the rows the relay claims, publishes and marks.

use super::*;

#[async_trait]
impl OutboxStore for SqlStore {
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
        batch::insert_jobs(&mut tx, std::slice::from_ref(&job), now).await?;
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
            "DELETE FROM pj_job_logs WHERE job_id = $1",
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
}
