//! The schema: one `.sql` file per version and dialect under `migrations/`, each run once, in
//! order, recorded in `pj_schema`.

use super::*;

/// The schema, version by version, one `.sql` file per version and dialect under
/// `migrations/`. Each runs once, in order, recorded in `pj_schema`.
pub(super) fn migrations(d: Dialect) -> &'static [&'static str] {
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
            include_str!("migrations/sqlite/0009_revoked_sessions.sql"),
            include_str!("migrations/sqlite/0010_metadata.sql"),
            include_str!("migrations/sqlite/0011_progress.sql"),
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
            include_str!("migrations/postgres/0009_revoked_sessions.sql"),
            include_str!("migrations/postgres/0010_metadata.sql"),
            include_str!("migrations/postgres/0011_progress.sql"),
        ],
    }
}

/// The statements of one migration file: `--` comment lines dropped; a statement ends with a
/// line ending in `;`, except inside a `$$`-quoted body (PostgreSQL functions) and a SQLite
/// trigger's `BEGIN ... END;`.
pub(super) fn statements(sql: &str) -> Vec<String> {
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

impl SqlStore {
    pub(super) async fn migrate(&self, dialect: Dialect) -> Result<(), StoreError> {
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
}

#[cfg(test)]
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
