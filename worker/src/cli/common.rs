//! What the commands share: the client settings from the flags, connecting to Pub/Sub (and the
//! store), confirmations, second-valued flags and signal handling.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use pubsub_jobs::store::JobStore;
use pubsub_jobs::{Client, ClientConfig};
use tokio_util::sync::CancellationToken;

use super::GlobalArgs;

/// The client settings the flags and environment give.
pub(crate) fn client_config(g: &GlobalArgs) -> anyhow::Result<ClientConfig> {
    if !(g.pubsub_timeout.is_finite() && g.pubsub_timeout > 0.0) {
        bail!(
            "--pubsub-timeout must be a positive number of seconds, got {}",
            g.pubsub_timeout
        );
    }
    Ok(ClientConfig {
        project_id: g
            .project
            .clone()
            .or_else(|| {
                // The Kisi job system's name for it.
                std::env::var("PUBSUB_JOB_QUEUE_PROJECT_ID")
                    .ok()
                    .filter(|p| !p.trim().is_empty())
            })
            .unwrap_or_default(),
        topic_prefix: g.topic_prefix.clone(),
        morgue_queue: g.morgue_queue.clone(),
        timeout: Duration::from_secs_f64(g.pubsub_timeout),
        emulator_host: std::env::var("PUBSUB_EMULATOR_HOST")
            .ok()
            .filter(|h| !h.is_empty()),
        max_job_bytes: pubsub_jobs::ClientConfig::check_max_job_bytes(g.max_job_bytes)?,
        create_queues: g.create_queues,
        max_delivery_attempts: g
            .max_delivery_attempts
            .map(pubsub_jobs::ClientConfig::check_max_delivery_attempts)
            .transpose()?,
        ..ClientConfig::default()
    })
}

/// A client on Pub/Sub, without the job store (the operator tools that only touch Pub/Sub).
pub(crate) async fn connect_pubsub(g: &GlobalArgs) -> anyhow::Result<Client> {
    let client = Client::connect(client_config(g)?).await?;
    let client = if super::telemetry::enabled() {
        client.with_opentelemetry()
    } else {
        client
    };
    Ok(g.middleware.apply(client))
}

/// A client, with the job store when one is configured.
pub(crate) async fn connect(g: &GlobalArgs) -> anyhow::Result<Client> {
    let client = connect_pubsub(g).await?;
    Ok(match &g.store {
        Some(url) => client.with_store(open_store(url).await?),
        None => client,
    })
}

/// Opens the job store at `url`; the error names it.
pub(crate) async fn open_store(url: &str) -> anyhow::Result<Arc<dyn JobStore>> {
    pubsub_jobs::store::connect(url).await.with_context(|| {
        format!(
            "opening the job store {}",
            pubsub_jobs::store::redact_url(url)
        )
    })
}

/// A flag in seconds, refused (naming the flag) unless a finite number >= 0.
pub(crate) fn seconds(name: &str, v: f64) -> anyhow::Result<Duration> {
    if !(v.is_finite() && v >= 0.0) {
        bail!("{name} must be a non-negative number of seconds, got {v}");
    }
    Ok(Duration::from_secs_f64(v))
}

/// Asks on a terminal; elsewhere requires `--yes`.
pub(crate) fn confirm(yes: bool, question: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("{question} Refusing without confirmation: not a terminal; pass --yes");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        bail!("cancelled: nothing was changed")
    }
}

/// Empties the morgue after a confirmation (`clear --morgue` and `morgue purge`); `verb` is the
/// past tense printed.
pub(crate) async fn purge_morgue(client: &Client, yes: bool, verb: &str) -> anyhow::Result<()> {
    let name = client.morgue_queue().to_string();
    confirm(
        yes,
        &format!("Delete every dead job in the morgue {name:?}?"),
    )?;
    pubsub_jobs::admin::morgue::purge(client).await?;
    println!("{verb} the morgue {name:?}: every dead job published before now is gone.");
    Ok(())
}

/// The relay settings the flags give.
pub(crate) fn relay_config(g: &GlobalArgs) -> anyhow::Result<pubsub_jobs::relay::RelayConfig> {
    Ok(pubsub_jobs::relay::RelayConfig {
        grace: seconds("--relay-grace", g.relay_grace)?,
        ..Default::default()
    })
}

/// A period like `7d`, `12h`, `30m`, `45s` (or plain seconds); `forever` keeps everything.
pub(crate) fn period(flag: &str, v: &str) -> anyhow::Result<Option<std::time::Duration>> {
    let v = v.trim();
    if v.eq_ignore_ascii_case("forever") {
        return Ok(None);
    }
    let (num, unit) = match v.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&v[..i], &v[i..]),
        None => (v, "s"),
    };
    let scale = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => anyhow::bail!("{flag} {v:?}: use a number with s, m, h or d (like 7d), or forever"),
    };
    let n: f64 = num
        .trim()
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)
        .ok_or_else(|| {
            anyhow::anyhow!("{flag} {v:?}: use a number with s, m, h or d (like 7d), or forever")
        })?;
    Ok(Some(std::time::Duration::from_secs_f64(n * scale)))
}

/// The store's housekeeping from `--keep-succeeded` / `--keep-finished`.
pub(crate) fn maintainer_config(
    g: &GlobalArgs,
) -> anyhow::Result<pubsub_jobs::store::maintenance::MaintainerConfig> {
    Ok(pubsub_jobs::store::maintenance::MaintainerConfig {
        retention: retention(g)?,
        ..Default::default()
    })
}

/// What to keep, from `--keep-succeeded` / `--keep-finished`.
pub(crate) fn retention(g: &GlobalArgs) -> anyhow::Result<pubsub_jobs::store::Retention> {
    let finished = period("--keep-finished", &g.keep_finished)?;
    Ok(pubsub_jobs::store::Retention {
        succeeded: period("--keep-succeeded", &g.keep_succeeded)?,
        failed: finished,
        morgued: finished,
        discarded: finished,
        cancelled: finished,
    })
}

/// A token cancelled on the first SIGINT / SIGTERM; the second exits at once.
pub(crate) fn shutdown_on_signals() -> CancellationToken {
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    shutdown
}

/// First SIGINT / SIGTERM: graceful shutdown. Second: exit at once.
async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    let first = tokio::select! { _ = term.recv() => "SIGTERM", _ = int.recv() => "SIGINT" };
    tracing::info!(
        signal = first,
        "shutting down gracefully; send the signal again to exit at once"
    );
    shutdown.cancel();
    let second = tokio::select! { _ = term.recv() => "SIGTERM", _ = int.recv() => "SIGINT" };
    tracing::warn!(signal = second, "second signal: exiting at once");
    std::process::exit(130);
}
