//! `worker api`: the JSON HTTP API on a job store (default `sqlite://jobs.db`).

use anyhow::Context;
use pubsub_jobs::api::{parse_tokens, serve, ApiConfig, ApiState};
use pubsub_jobs::Registry;

use pubsub_jobs::relay::Relay;

use super::common::{
    connect_pubsub, maintainer_config, open_store, relay_config, shutdown_on_signals,
};
use super::GlobalArgs;

/// Who may use the API: `worker api`'s `--tokens`, `--allow-unauthenticated` and
/// `--allowed-hosts`.
pub(crate) struct Access {
    pub(crate) tokens: Option<String>,
    pub(crate) allow_unauthenticated: bool,
    pub(crate) allowed_hosts: Option<String>,
}

pub(crate) async fn run(
    g: &GlobalArgs,
    registry: Registry,
    bind: &str,
    access: Access,
    limits: pubsub_jobs::api::ServerLimits,
) -> anyhow::Result<()> {
    let registry = registry.check()?;
    let tokens = parse_tokens(&access.tokens.unwrap_or_default());
    let allowed_hosts = parse_tokens(&access.allowed_hosts.unwrap_or_default());
    if tokens.is_empty() && !access.allow_unauthenticated && !is_loopback(bind) {
        anyhow::bail!(
            "refusing to serve the API and dashboard on {bind} without tokens: anyone who reaches \
             it could submit, retry and delete jobs. Set PUBSUB_JOBS_API_TOKENS (--tokens), bind \
             to 127.0.0.1, or pass --allow-unauthenticated (PUBSUB_JOBS_API_ALLOW_UNAUTHENTICATED=true)"
        );
    }
    let url = g.store.as_deref().unwrap_or("sqlite://jobs.db");
    let client = connect_pubsub(g).await?.with_store(open_store(url).await?);
    let config = ApiConfig {
        tokens,
        allowed_hosts,
        limits,
    };
    let relay = Relay::start(client.clone(), relay_config(g)?)?;
    let mut maintenance = maintainer_config(g)?;
    maintenance.process = Some(pubsub_jobs::store::ProcessInfo::this("api", None));
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

/// True when `bind` (HOST:PORT) is a loopback address or `localhost`.
fn is_loopback(bind: &str) -> bool {
    let host = bind.rsplit_once(':').map_or(bind, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn only_loopback_addresses_count_as_loopback() {
        for b in [
            "127.0.0.1:8080",
            "localhost:80",
            "[::1]:8080",
            "127.0.0.2:1",
        ] {
            assert!(is_loopback(b), "{b}");
        }
        for b in ["0.0.0.0:8080", "[::]:8080", "10.0.0.1:80", "example.com:80"] {
            assert!(!is_loopback(b), "{b}");
        }
    }
}
