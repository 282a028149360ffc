//! Process heartbeats: every worker, API server and relay reports every 10 s.

use super::*;

#[async_trait]
impl ProcessStore for SqlStore {
    async fn heartbeat(&self, p: &ProcessInfo) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO pj_processes (id, kind, queue, host, pid, started_at, seen_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at",
        )
        .bind(p.id.clone())
        .bind(p.kind.clone())
        .bind(p.queue.clone())
        .bind(p.host.clone())
        .bind(i64::from(p.pid))
        .bind(ms(p.started_at))
        .bind(ms(Utc::now()))
        .execute(&self.pool)
        .await
        .map_err(db("heartbeat"))?;
        Ok(())
    }

    async fn revoke_session(
        &self,
        id: &str,
        expires_at: chrono::DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db("revoke session"))?;
        sqlx::query("DELETE FROM pj_revoked_sessions WHERE expires_at < $1")
            .bind(ms(Utc::now()))
            .execute(&mut *tx)
            .await
            .map_err(db("revoke session"))?;
        sqlx::query(
            "INSERT INTO pj_revoked_sessions (id, expires_at) VALUES ($1, $2)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id.to_string())
        .bind(ms(expires_at))
        .execute(&mut *tx)
        .await
        .map_err(db("revoke session"))?;
        tx.commit().await.map_err(db("revoke session"))?;
        Ok(())
    }

    async fn session_revoked(&self, id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 AS one FROM pj_revoked_sessions WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db("check session"))?;
        Ok(row.is_some())
    }

    async fn forget_process(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM pj_processes WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(db("forget process"))?;
        Ok(())
    }

    async fn processes(
        &self,
        since: chrono::DateTime<Utc>,
    ) -> Result<Vec<ProcessInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind, queue, host, pid, started_at, seen_at FROM pj_processes
             WHERE seen_at >= $1 ORDER BY kind, id",
        )
        .bind(ms(since))
        .fetch_all(&self.pool)
        .await
        .map_err(db("list processes"))?;
        let at = |v: i64| DateTime::from_timestamp_millis(v).unwrap_or_default();
        rows.iter()
            .map(|r| {
                Ok(ProcessInfo {
                    id: r.try_get("id").map_err(db("list processes"))?,
                    kind: r.try_get("kind").map_err(db("list processes"))?,
                    queue: r.try_get("queue").map_err(db("list processes"))?,
                    host: r.try_get("host").map_err(db("list processes"))?,
                    pid: r.try_get::<i64, _>("pid").map_err(db("list processes"))? as u32,
                    started_at: at(r.try_get("started_at").map_err(db("list processes"))?),
                    seen_at: at(r.try_get("seen_at").map_err(db("list processes"))?),
                })
            })
            .collect()
    }
}
