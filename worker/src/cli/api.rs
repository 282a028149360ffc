//! `worker api`: the JSON HTTP API on a job store (default `sqlite://jobs.db`).

use anyhow::Context;
use pubsub_jobs::api::{parse_tokens, serve, ApiConfig, ApiState};
use pubsub_jobs::Registry;

use pubsub_jobs::relay::Relay;

use super::common::{
    connect_pubsub, maintainer_config, open_store, relay_config, shutdown_on_signals,
};
use super::GlobalArgs;

pub(crate) async fn run(
    g: &GlobalArgs,
    registry: Registry,
    bind: &str,
    tokens: Option<String>,
) -> anyhow::Result<()> {
    let registry = registry.check()?;
    let url = g.store.as_deref().unwrap_or("sqlite://jobs.db");
    let client = connect_pubsub(g).await?.with_store(open_store(url).await?);
    let config = ApiConfig {
        tokens: parse_tokens(&tokens.unwrap_or_default()),
    };
    let relay = Relay::start(client.clone(), relay_config(g)?)?;
    let maintenance = maintainer_config(g)?;
    let maintainer = client
        .store()
        .map(|s| pubsub_jobs::store::maintenance::Maintainer::start(s.clone(), maintenance));
    let state = ApiState::new(client, config)?.with_registry(registry)?;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let served = serve(listener, state, shutdown_on_signals()).await;
    relay.shutdown().await;
    if let Some(m) = maintainer {
        m.shutdown().await;
    }
    Ok(served?)
}
