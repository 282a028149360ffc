//! `worker enqueue CLASS JSON [--wait S]`: one job by class name; prints its id (or a
//! `job.enqueued` JSON line with `--log-format json`).

use anyhow::Context;
use pubsub_jobs::envelope::due_after;
use pubsub_jobs::envelope::Envelope;
use pubsub_jobs::Registry;

use super::common::{connect, seconds};
use super::{GlobalArgs, LogFormat};

pub(crate) async fn run(
    g: &GlobalArgs,
    registry: &Registry,
    job_class: &str,
    arguments: &str,
    wait: Option<f64>,
) -> anyhow::Result<()> {
    let args: serde_json::Value = serde_json::from_str(arguments)
        .with_context(|| format!("the arguments for {job_class} are not valid JSON"))?;
    // Checked once, before connecting: a bad class, field or queue fails at once.
    registry.validate(job_class, &args)?;
    super::common::client_config(g)?.validate_queue(&g.queue)?;
    let mut env = Envelope::new(job_class, &g.queue, args);
    env.scheduled_at = wait
        .map(|w| seconds("--wait", w).map(due_after))
        .transpose()?;
    let client = connect(g).await?;
    client.submit(env.clone(), None).await?;
    client.flush().await;
    if g.log_format == LogFormat::Json {
        let line = serde_json::json!({
            "timestamp": chrono::Utc::now().to_rfc3339(),
            "event": "job.enqueued",
            "job_id": env.job_id,
            "job_class": env.job_class,
            "queue": env.queue_name,
            "attempt": env.attempt(),
            "scheduled_at": env.scheduled_at.map(|t| t.to_rfc3339()),
        });
        println!("{line}");
    } else {
        println!("{}", env.job_id);
    }
    Ok(())
}
