//! `worker morgue list | retry | purge`: inspect and act on dead jobs.

use std::io::Write;

use anyhow::bail;
use pubsub_jobs::admin::morgue as tools;

use super::common::{connect_pubsub, purge_morgue};
use super::{GlobalArgs, MorgueCommand};

pub(crate) async fn run(g: &GlobalArgs, cmd: MorgueCommand) -> anyhow::Result<()> {
    let client = connect_pubsub(g).await?;
    match cmd {
        MorgueCommand::List { limit, json } => {
            let listing = tools::list(&client, limit).await?;
            let entries = &listing.entries;
            let mut out = std::io::stdout().lock();
            if json {
                for e in entries {
                    let r = &e.record;
                    let line = serde_json::json!({
                        "job_id": r.job_id,
                        "job_class": r.job_class,
                        "source_queue": r.source_queue,
                        "attempts": r.executions,
                        "error": r.error,
                        "failed_at": r.failed_at.to_rfc3339(),
                        "message_id": e.message_id,
                    });
                    writeln!(out, "{line}")?;
                }
            } else {
                writeln!(
                    out,
                    "{:<36}  {:<16}  {:<16}  {:>8}  {:<25}  error",
                    "job_id", "class", "source queue", "attempts", "failed_at"
                )?;
                for e in entries {
                    let r = &e.record;
                    writeln!(
                        out,
                        "{:<36}  {:<16}  {:<16}  {:>8}  {:<25}  {}",
                        r.job_id.as_deref().unwrap_or("-"),
                        r.job_class.as_deref().unwrap_or("-"),
                        r.source_queue,
                        r.executions
                            .map(|n| n.to_string())
                            .unwrap_or_else(|| "-".into()),
                        r.failed_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                        truncate(&r.error, 200)
                    )?;
                }
                writeln!(
                    out,
                    "{} dead job(s) listed; all left in the morgue.",
                    entries.len()
                )?;
            }
            Ok(())
        }
        MorgueCommand::Retry { job_id, all } => {
            let select = match (job_id, all) {
                (Some(id), _) => tools::Select::JobId(id),
                (None, true) => tools::Select::All,
                (None, false) => bail!("pass --job-id ID or --all"),
            };
            let wanted = select.clone();
            let report = tools::retry(&client, select).await?;
            for (id, queue) in &report.retried {
                println!("retried {id} -> queue {queue:?}");
            }
            for (id, why) in &report.skipped {
                println!("skipped {id}: {why}");
            }
            for (id, why) in &report.failed {
                println!("failed {id}: {why}");
            }
            println!(
                "{} job(s) republished with executions reset, {} skipped, {} failed (left in the morgue).",
                report.retried.len(),
                report.skipped.len(),
                report.failed.len()
            );
            if let Some((id, why)) = report.failed.first() {
                bail!(
                    "{} job(s) could not be republished and stay in the morgue; the first, {id}: {why}",
                    report.failed.len()
                );
            }
            if let tools::Select::JobId(id) = wanted {
                if report.retried.is_empty() {
                    bail!("job {id} is not in the morgue");
                }
            }
            Ok(())
        }
        MorgueCommand::Purge { yes } => purge_morgue(&client, yes, "Purged").await,
    }
}

/// `s` in at most `max` characters, for one table line.
fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max.saturating_sub(3)) {
        Some((end, _)) if s.chars().count() > max => format!("{}...", &s[..end]),
        _ => s.to_string(),
    }
}
