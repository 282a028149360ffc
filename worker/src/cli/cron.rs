//! `worker --cron FILE` (periodic entries from a TOML file, scheduled by every worker that has
//! it) and `worker cron list | pause | resume | run | check`.
//!
//! ```toml
//! [[periodic]]
//! name = "nightly-report"
//! schedule = "0 0 3 * * *"      # six fields: with seconds; five fields: minute resolution
//! job_class = "MockJob"
//! arguments = { sleep_duration = 0, raise_error = false }
//! queue = "reports"             # optional: the job's own queue otherwise
//! timezone = "Europe/Berlin"    # optional, IANA name, default UTC
//! catch_up = 0                  # optional: missed ticks to enqueue after downtime
//! grace_seconds = 60            # optional: how late a tick may run before it counts as missed
//! ```

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use pubsub_jobs::envelope::Envelope;
use pubsub_jobs::periodic::{next_run, PeriodicEntry};
use pubsub_jobs::Registry;
use serde::Deserialize;

use super::common::{connect, open_store};
use super::{CronCommand, GlobalArgs};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CronFile {
    #[serde(default)]
    periodic: Vec<RawEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    name: String,
    schedule: String,
    job_class: String,
    #[serde(default)]
    arguments: Option<toml::Table>,
    queue: Option<String>,
    timezone: Option<String>,
    catch_up: Option<u32>,
    grace_seconds: Option<f64>,
}

/// Reads and checks a schedule file: every entry's schedule, timezone, class and arguments
/// (against `registry`), and unique names. The error names the file, the entry and the field.
pub fn load(path: &Path, registry: &Registry) -> anyhow::Result<Vec<PeriodicEntry>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the cron file {}", path.display()))?;
    parse(&text, registry).with_context(|| format!("cron file {}", path.display()))
}

/// [`load`] on the file's text.
pub fn parse(text: &str, registry: &Registry) -> anyhow::Result<Vec<PeriodicEntry>> {
    let file: CronFile = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(
        !file.periodic.is_empty(),
        "no [[periodic]] entries in the file"
    );
    let mut entries: Vec<PeriodicEntry> = Vec::with_capacity(file.periodic.len());
    for raw in file.periodic {
        let arguments = serde_json::to_value(raw.arguments.unwrap_or_default())
            .with_context(|| format!("periodic entry {:?}: arguments", raw.name))?;
        let mut entry = PeriodicEntry::from_class(
            raw.name.clone(),
            &raw.schedule,
            &raw.job_class,
            arguments,
            raw.queue.as_deref(),
            registry,
        )?;
        if let Some(tz) = &raw.timezone {
            entry = entry.timezone(tz)?;
        }
        if let Some(n) = raw.catch_up {
            entry = entry.catch_up(n);
        }
        if let Some(g) = raw.grace_seconds {
            anyhow::ensure!(
                g.is_finite() && g >= 0.0,
                "periodic entry {:?}: grace_seconds: {g} is not a number of seconds >= 0",
                raw.name
            );
            entry = entry.grace(Duration::from_secs_f64(g));
        }
        anyhow::ensure!(
            !entries.iter().any(|e| e.name() == entry.name()),
            "periodic entry {:?}: name: two entries have this name",
            raw.name
        );
        entries.push(entry);
    }
    Ok(entries)
}

pub(crate) async fn run(
    g: &GlobalArgs,
    registry: &Registry,
    cmd: CronCommand,
) -> anyhow::Result<()> {
    if let CronCommand::Check { file } = &cmd {
        let entries = load(file, registry)?;
        let now = Utc::now();
        for e in &entries {
            println!(
                "{}: {} ({}) -> {} on {}; next {}",
                e.name(),
                e.schedule(),
                e.timezone_name(),
                e.job_class(),
                e.queue_name(),
                e.next_after(now)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| "never".into())
            );
        }
        println!("ok: {} entries", entries.len());
        return Ok(());
    }
    let url = g.store.as_deref().context(
        "`worker cron` reads the periodic entries from the job store: pass --store or set PUBSUB_JOBS_STORE",
    )?;
    let store = open_store(url).await?;
    let find = |name: &str, found: Option<_>| {
        found.with_context(|| {
            format!("no periodic entry {name:?} in the store (a worker registers its --cron file's entries when it starts)")
        })
    };
    match cmd {
        CronCommand::Check { .. } => unreachable!("handled above"),
        CronCommand::List { json } => {
            let now = Utc::now();
            let entries = store.periodic_entries().await?;
            if json {
                for s in &entries {
                    let d = &s.definition;
                    println!(
                        "{}",
                        serde_json::json!({
                            "name": d.name, "schedule": d.schedule, "timezone": d.timezone,
                            "job_class": d.job_class, "queue": d.queue, "arguments": d.arguments,
                            "paused": s.paused, "next_run_at": next_run(d, now),
                            "last_run_at": s.last_tick_at, "last_job_id": s.last_job_id,
                        })
                    );
                }
            } else if entries.is_empty() {
                println!("no periodic entries (start a worker with --cron FILE)");
            } else {
                println!(
                    "{:<24} {:<18} {:<16} {:<16} {:<26} {:<26} LAST JOB",
                    "NAME", "SCHEDULE", "TIMEZONE", "CLASS", "NEXT RUN", "LAST RUN"
                );
                for s in &entries {
                    let d = &s.definition;
                    let next = if s.paused {
                        "paused".to_string()
                    } else {
                        next_run(d, now)
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_else(|| "-".into())
                    };
                    println!(
                        "{:<24} {:<18} {:<16} {:<16} {:<26} {:<26} {}",
                        d.name,
                        d.schedule,
                        d.timezone,
                        d.job_class,
                        next,
                        s.last_tick_at
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_else(|| "-".into()),
                        s.last_job_id
                            .map(|i| i.to_string())
                            .unwrap_or_else(|| "-".into())
                    );
                }
            }
        }
        CronCommand::Pause { name } => {
            find(&name, store.set_periodic_paused(&name, true).await?)?;
            println!("paused {name}: its ticks enqueue nothing until `worker cron resume {name}`");
        }
        CronCommand::Resume { name } => {
            find(&name, store.set_periodic_paused(&name, false).await?)?;
            println!("resumed {name}");
        }
        CronCommand::Run { name } => {
            let entries = store.periodic_entries().await?;
            let entry = find(
                &name,
                entries.into_iter().find(|e| e.definition.name == name),
            )?;
            let d = entry.definition;
            registry.validate(&d.job_class, &d.arguments)?;
            let client = connect(g).await?;
            let env = Envelope::new(&d.job_class, &d.queue, d.arguments);
            let submission = client.submit(env, None).await?;
            client.flush().await;
            println!("{}", submission.job_id);
        }
    }
    Ok(())
}
