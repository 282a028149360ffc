//! `worker queues setup Q...`: creates (idempotently) what each queue needs, and the morgue,
//! with the settings the worker expects: a topic and a subscription of the same name, the
//! `.scheduled` pair, 7-day retention, no expiry, and on each queue's own subscription a
//! dead-letter policy to the morgue. Run it with create rights (an admin, CI,
//! infrastructure as code) so that workers and enqueuers can run with `PUBSUB_CREATE_QUEUES=false`
//! and only `roles/pubsub.publisher` + `roles/pubsub.subscriber`. `--print-gcloud` prints the
//! equivalent `gcloud` commands instead of running anything. `worker queues verify Q...` reports
//! every difference from those settings.

use super::common::{client_config, connect_pubsub};
use super::GlobalArgs;

pub(crate) async fn setup(
    g: &GlobalArgs,
    queues: &[String],
    print_gcloud: bool,
) -> anyhow::Result<()> {
    let config = client_config(g)?;
    for q in queues {
        config.validate_queue(q)?;
    }
    let names = |q: &str| {
        [
            format!("{}{q}", config.topic_prefix),
            format!("{}{q}.scheduled", config.topic_prefix),
        ]
    };
    let morgue = format!("{}{}", config.topic_prefix, config.morgue_queue);
    // The gcloud commands are for Google Cloud: its default, whatever this machine points at.
    let attempts = if print_gcloud {
        pubsub_jobs::ClientConfig {
            emulator_host: None,
            ..config.clone()
        }
        .delivery_attempts()
    } else {
        config.delivery_attempts()
    };
    let dead_letter = (attempts > 0)
        .then(|| format!(" --dead-letter-topic={morgue} --max-delivery-attempts={attempts}"));
    if print_gcloud {
        let project = if config.project_id.is_empty() {
            String::new()
        } else {
            format!(" --project={}", config.project_id)
        };
        let ack = config.ack_deadline.as_secs().clamp(10, 600);
        let create = |r: &str, extra: &str| {
            println!("gcloud pubsub topics create {r}{project}");
            println!(
                "gcloud pubsub subscriptions create {r} --topic={r} --ack-deadline={ack} \
                 --message-retention-duration=7d --expiration-period=never{extra}{project}"
            );
        };
        // The morgue first: the queues' dead-letter policies point to it.
        create(&morgue, "");
        for q in queues {
            let [main, scheduled] = names(q);
            create(&main, dead_letter.as_deref().unwrap_or(""));
            create(&scheduled, "");
        }
        if dead_letter.is_some() {
            println!("{}", service_agent_note());
            let agent =
                "serviceAccount:service-PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com";
            println!(
                "gcloud pubsub topics add-iam-policy-binding {morgue} --member={agent} \
                 --role=roles/pubsub.publisher{project}"
            );
            for q in queues {
                let [main, _] = names(q);
                println!(
                    "gcloud pubsub subscriptions add-iam-policy-binding {main} --member={agent} \
                     --role=roles/pubsub.subscriber{project}"
                );
            }
        }
        return Ok(());
    }
    let client = connect_pubsub(g).await?;
    for q in queues {
        client.setup_queue(q).await?;
        let [main, scheduled] = names(q);
        println!("queue {q:?}: topic and subscription {main:?}, {scheduled:?} ready");
    }
    client.setup_morgue().await?;
    println!("the morgue: topic and subscription {morgue:?} ready");
    if dead_letter.is_some() {
        println!(
            "dead-letter policies: after {attempts} deliveries without an outcome a job moves to {morgue:?}"
        );
        if config.emulator_host.is_none() {
            println!("{}", service_agent_note());
            println!("(`worker queues setup --print-gcloud` prints the grants.)");
        }
    }
    Ok(())
}

/// What the dead-letter policy needs on Google Cloud besides the subscriptions.
fn service_agent_note() -> &'static str {
    "# Pub/Sub's service agent moves dead-lettered messages: grant it roles/pubsub.publisher on \
     the morgue topic and roles/pubsub.subscriber on each queue's subscription (PROJECT_NUMBER: \
     gcloud projects describe PROJECT --format='value(projectNumber)'). Without them the \
     policy does nothing."
}

pub(crate) async fn verify(
    g: &GlobalArgs,
    queues: &[String],
    print_gcloud: bool,
) -> anyhow::Result<()> {
    let client = connect_pubsub(g).await?;
    let verdicts = pubsub_jobs::admin::verify(&client, queues).await?;
    let mut bad = 0;
    for v in &verdicts {
        if v.problems.is_empty() {
            println!("{}: ok", v.subscription);
            continue;
        }
        bad += 1;
        for p in &v.problems {
            println!("{}: {p}", v.subscription);
        }
        if print_gcloud && v.fixable && !v.update_flags.is_empty() {
            println!(
                "  gcloud pubsub subscriptions update {} {}",
                v.subscription,
                v.update_flags.join(" ")
            );
        }
    }
    if bad > 0 {
        anyhow::bail!(
            "{bad} of {} subscriptions differ from what `worker queues setup` creates",
            verdicts.len()
        );
    }
    Ok(())
}
