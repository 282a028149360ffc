//! `worker queues setup Q...`: creates (idempotently) what each queue needs, and the morgue,
//! with the settings the worker expects: a topic and a subscription of the same name, the
//! `.scheduled` pair, 7-day retention, no expiry. Run it with create rights (an admin, CI,
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
    if print_gcloud {
        let project = if config.project_id.is_empty() {
            String::new()
        } else {
            format!(" --project={}", config.project_id)
        };
        let ack = config.ack_deadline.as_secs().clamp(10, 600);
        let mut resources: Vec<String> = queues.iter().flat_map(|q| names(q)).collect();
        resources.push(morgue);
        for r in resources {
            println!("gcloud pubsub topics create {r}{project}");
            println!(
                "gcloud pubsub subscriptions create {r} --topic={r} --ack-deadline={ack} \
                 --message-retention-duration=7d --expiration-period=never{project}"
            );
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
    Ok(())
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
        if print_gcloud && v.fixable {
            println!(
                "  gcloud pubsub subscriptions update {} --message-retention-duration=7d --expiration-period=never",
                v.subscription
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
