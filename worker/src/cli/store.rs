//! `worker relay` (the outbox relay alone) and `worker store status` (the outbox's backlog).

use anyhow::Context;
use pubsub_jobs::relay::Relay;
use pubsub_jobs::store::maintenance::Maintainer;

use super::common::{connect, relay_config, shutdown_on_signals};
use super::GlobalArgs;

/// Runs the relay until SIGTERM / SIGINT.
pub(crate) async fn relay(g: &GlobalArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        g.store.is_some(),
        "the relay needs a job store: pass --store or set PUBSUB_JOBS_STORE"
    );
    let client = connect(g).await?;
    let mut maintenance = super::common::maintainer_config(g)?;
    maintenance.process = Some(pubsub_jobs::store::ProcessInfo::this("relay", None));
    let maintainer = client
        .store()
        .map(|s| Maintainer::start(s.clone(), maintenance));
    let relay = Relay::start(client, relay_config(g)?)?;
    shutdown_on_signals().cancelled().await;
    relay.shutdown().await;
    if let Some(m) = maintainer {
        m.shutdown().await;
    }
    Ok(())
}

/// Prints how many recorded jobs are unpublished and how old the oldest is.
pub(crate) async fn status(g: &GlobalArgs, json: bool) -> anyhow::Result<()> {
    let url = g.store.as_deref().context(
        "`worker store status` needs a job store: pass --store or set PUBSUB_JOBS_STORE",
    )?;
    let store = super::common::open_store(url).await?;
    let s = store.outbox_status().await?;
    let age = s
        .oldest
        .map(|t| (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0);
    if json {
        println!(
            "{}",
            serde_json::json!({"unpublished": s.unpublished, "oldest_age_seconds": age})
        );
    } else {
        match age {
            Some(age) => println!(
                "outbox: {} job(s) recorded but not published yet; the oldest for {age:.1} s",
                s.unpublished
            ),
            None => println!("outbox: empty (every recorded job is published)"),
        }
    }
    Ok(())
}

/// Prunes finished jobs past their retention (or older than `older_than`) now.
pub(crate) async fn prune(
    g: &GlobalArgs,
    older_than: Option<&str>,
    dry_run: bool,
) -> anyhow::Result<()> {
    let url = g
        .store
        .as_deref()
        .context("`worker store prune` needs a job store: pass --store or set PUBSUB_JOBS_STORE")?;
    let retention = match older_than {
        Some(v) => match super::common::period("--older-than", v)? {
            Some(d) => pubsub_jobs::store::Retention::all(d),
            None => pubsub_jobs::store::Retention::keep_all(),
        },
        None => super::common::retention(g)?,
    };
    let store = super::common::open_store(url).await?;
    let r = store.prune_now(&retention, None, dry_run).await?;
    if dry_run {
        println!("would prune {} finished job(s)", r.jobs);
    } else {
        println!(
            "pruned {} finished job(s), {} event(s), {} expired dedup key(s)",
            r.jobs, r.events, r.dedup_keys
        );
    }
    Ok(())
}
