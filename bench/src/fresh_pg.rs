//! A private PostgreSQL database for one benchmark run, so that a figure does not depend on
//! what earlier runs left in a shared database (dead rows, bloated indexes, autovacuum at work).
//! Created on the server of the given URL, dropped at the end.

use anyhow::Context;
use sqlx::{Connection, Executor};

/// A database created for this run.
pub struct FreshDb {
    admin: String,
    name: String,
    /// Its URL.
    pub url: String,
}

/// Creates `pj_bench_<random>` on the server of `base` (a `postgres://.../db` URL).
pub async fn create(base: &str) -> anyhow::Result<FreshDb> {
    let name = format!(
        "pj_bench_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut admin = sqlx::PgConnection::connect(base)
        .await
        .with_context(|| format!("PostgreSQL at {base}"))?;
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .context("create a database for the benchmark")?;
    let root = base.rfind('/').map_or(base, |i| &base[..i]);
    Ok(FreshDb {
        admin: base.to_string(),
        url: format!("{root}/{name}"),
        name,
    })
}

impl FreshDb {
    /// Drops the database (closing what is still connected to it).
    pub async fn drop(self) -> anyhow::Result<()> {
        let mut admin = sqlx::PgConnection::connect(&self.admin).await?;
        admin
            .execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name).as_str())
            .await?;
        Ok(())
    }
}
