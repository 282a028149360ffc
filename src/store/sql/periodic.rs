//! Periodic entries and tick claims in SQL: `pj_periodic` (definitions and state) and
//! `pj_periodic_ticks` (one row per claimed tick, primary key (name, tick_at)).

use super::*;
use sqlx::any::AnyRow;
use sqlx::AnyPool;

use super::row::{from_ms, parse_json};

const STATE_COLUMNS: &str =
    "name, schedule, timezone, job_class, queue, arguments, paused, last_tick_at, last_job_id, updated_at";

fn uuid_of(what: &'static str, s: String) -> Result<uuid::Uuid, StoreError> {
    s.parse().map_err(|e: uuid::Error| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

fn state_from_row(r: &AnyRow) -> Result<PeriodicState, StoreError> {
    let get = db("read periodic entry");
    let read = |r: &AnyRow| -> Result<_, sqlx::Error> {
        Ok((
            r.try_get::<String, _>("name")?,
            r.try_get::<String, _>("schedule")?,
            r.try_get::<String, _>("timezone")?,
            r.try_get::<String, _>("job_class")?,
            r.try_get::<String, _>("queue")?,
            r.try_get::<String, _>("arguments")?,
            r.try_get::<i64, _>("paused")?,
            r.try_get::<Option<i64>, _>("last_tick_at")?,
            r.try_get::<Option<String>, _>("last_job_id")?,
            r.try_get::<i64, _>("updated_at")?,
        ))
    };
    let (name, schedule, timezone, job_class, queue, arguments, paused, last, last_job, updated) =
        read(r).map_err(get)?;
    Ok(PeriodicState {
        definition: PeriodicDefinition {
            name,
            schedule,
            timezone,
            job_class,
            queue,
            arguments: parse_json("periodic arguments", &arguments)?,
        },
        paused: paused != 0,
        last_tick_at: last.map(from_ms),
        last_job_id: last_job
            .map(|s| uuid_of("periodic job id", s))
            .transpose()?,
        updated_at: from_ms(updated),
    })
}

async fn state(pool: &AnyPool, name: &str) -> Result<Option<PeriodicState>, StoreError> {
    let sql = format!("SELECT {STATE_COLUMNS} FROM pj_periodic WHERE name = $1");
    sqlx::query(&sql)
        .bind(name.to_string())
        .fetch_optional(pool)
        .await
        .map_err(db("read periodic entry"))?
        .as_ref()
        .map(state_from_row)
        .transpose()
}

#[async_trait]
impl PeriodicStore for SqlStore {
    async fn register_periodic(
        &self,
        definitions: &[PeriodicDefinition],
    ) -> Result<Vec<PeriodicState>, StoreError> {
        let pool = &self.pool;
        let now = ms(Utc::now());
        let mut tx = pool.begin().await.map_err(db("begin"))?;
        for d in definitions {
            sqlx::query(
                "INSERT INTO pj_periodic (name, schedule, timezone, job_class, queue, arguments, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (name) DO UPDATE SET schedule = excluded.schedule, timezone = excluded.timezone,
                     job_class = excluded.job_class, queue = excluded.queue, arguments = excluded.arguments,
                     updated_at = excluded.updated_at",
            )
            .bind(d.name.clone())
            .bind(d.schedule.clone())
            .bind(d.timezone.clone())
            .bind(d.job_class.clone())
            .bind(d.queue.clone())
            .bind(json_text(&d.arguments))
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db("register periodic entry"))?;
        }
        tx.commit().await.map_err(db("commit"))?;
        let mut out = Vec::with_capacity(definitions.len());
        for d in definitions {
            out.extend(state(pool, &d.name).await?);
        }
        Ok(out)
    }

    async fn periodic_entries(&self) -> Result<Vec<PeriodicState>, StoreError> {
        let pool = &self.pool;
        let sql = format!("SELECT {STATE_COLUMNS} FROM pj_periodic ORDER BY name");
        sqlx::query(&sql)
            .fetch_all(pool)
            .await
            .map_err(db("list periodic entries"))?
            .iter()
            .map(state_from_row)
            .collect()
    }

    async fn set_periodic_paused(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<Option<PeriodicState>, StoreError> {
        let pool = &self.pool;
        sqlx::query("UPDATE pj_periodic SET paused = $2 WHERE name = $1")
            .bind(name.to_string())
            .bind(i64::from(paused))
            .execute(pool)
            .await
            .map_err(db("pause periodic entry"))?;
        state(pool, name).await
    }

    async fn claim_tick(
        &self,
        name: &str,
        tick_at: chrono::DateTime<Utc>,
        action: TickAction,
    ) -> Result<TickClaim, StoreError> {
        let pool = &self.pool;
        let now = ms(Utc::now());
        let (outcome, job_id, detail) = match &action {
            TickAction::Enqueue(job) => ("enqueued", Some(job.id.to_string()), None),
            TickAction::Skip { missed } => (
                "skipped",
                None,
                Some(serde_json::json!({ "missed": missed }).to_string()),
            ),
        };
        let mut tx = pool.begin().await.map_err(db("begin"))?;
        // The claim is the first statement, a write: concurrent claimers of one tick serialize on
        // the key and all but one insert nothing.
        let inserted = sqlx::query(
            "INSERT INTO pj_periodic_ticks (name, tick_at, outcome, job_id, detail, claimed_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name, tick_at) DO NOTHING",
        )
        .bind(name.to_string())
        .bind(ms(tick_at))
        .bind(outcome)
        .bind(job_id)
        .bind(detail)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db("claim tick"))?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await.map_err(db("rollback"))?;
            return Ok(TickClaim::AlreadyClaimed);
        }
        let TickAction::Enqueue(job) = action else {
            tx.commit().await.map_err(db("commit"))?;
            return Ok(TickClaim::Claimed);
        };
        let paused = sqlx::query("SELECT paused FROM pj_periodic WHERE name = $1")
            .bind(name.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("claim tick"))?
            .map(|r| r.try_get::<i64, _>("paused"))
            .transpose()
            .map_err(db("claim tick"))?
            .unwrap_or(0)
            != 0;
        if paused {
            sqlx::query(
                "UPDATE pj_periodic_ticks SET outcome = 'paused', job_id = NULL WHERE name = $1 AND tick_at = $2",
            )
            .bind(name.to_string())
            .bind(ms(tick_at))
            .execute(&mut *tx)
            .await
            .map_err(db("claim tick"))?;
            tx.commit().await.map_err(db("commit"))?;
            return Ok(TickClaim::Paused);
        }
        batch::insert_jobs(&mut tx, std::slice::from_ref(&job), now).await?;
        sqlx::query("UPDATE pj_periodic SET last_tick_at = $2, last_job_id = $3 WHERE name = $1")
            .bind(name.to_string())
            .bind(ms(tick_at))
            .bind(job.id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db("claim tick"))?;
        tx.commit().await.map_err(db("commit"))?;
        Ok(TickClaim::Claimed)
    }

    async fn periodic_ticks(&self, name: &str, limit: u32) -> Result<Vec<TickRecord>, StoreError> {
        let pool = &self.pool;
        let rows = sqlx::query(
            "SELECT name, tick_at, outcome, job_id, claimed_at FROM pj_periodic_ticks
             WHERE name = $1 ORDER BY tick_at DESC LIMIT $2",
        )
        .bind(name.to_string())
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        .map_err(db("list ticks"))?;
        rows.iter()
            .map(|r| {
                let read = |r: &AnyRow| -> Result<_, sqlx::Error> {
                    Ok((
                        r.try_get::<String, _>("name")?,
                        r.try_get::<i64, _>("tick_at")?,
                        r.try_get::<String, _>("outcome")?,
                        r.try_get::<Option<String>, _>("job_id")?,
                        r.try_get::<i64, _>("claimed_at")?,
                    ))
                };
                let (name, tick_at, outcome, job_id, claimed_at) =
                    read(r).map_err(db("list ticks"))?;
                Ok(TickRecord {
                    name,
                    tick_at: from_ms(tick_at),
                    outcome,
                    job_id: job_id.map(|s| uuid_of("tick job id", s)).transpose()?,
                    claimed_at: from_ms(claimed_at),
                })
            })
            .collect()
    }

    async fn prune_ticks(&self, before: chrono::DateTime<Utc>) -> Result<u64, StoreError> {
        let pool = &self.pool;
        Ok(
            sqlx::query("DELETE FROM pj_periodic_ticks WHERE claimed_at < $1")
                .bind(ms(before))
                .execute(pool)
                .await
                .map_err(db("prune ticks"))?
                .rows_affected(),
        )
    }
}
