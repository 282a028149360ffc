//! `HttpRequestJob`, a built-in job class: named HTTP steps run in order. A non-2xx answer or a
//! timeout fails the job, which retries by its policy and resumes at the failed step (the
//! finished steps travel in the retry as a checkpoint). Each step's status code and duration go
//! into the result.
//!
//! Only http and https. Hosts resolving to private, loopback, link-local or otherwise internal
//! addresses are refused unless allowed ([`HttpPolicy`]); the checked address is the one
//! connected to, so a DNS answer cannot change between check and request. A refused step goes
//! to the morgue at once, with the reason.
//!
//! Opt-in: the library never registers it. The `worker` binary does; an application that wants
//! it registers it by hand:
//!
//! ```no_run
//! # fn demo() -> pubsub_jobs::Result<()> {
//! use pubsub_jobs::{http_job::HttpRequestJob, Registry};
//! let registry = Registry::from_inventory()?.register::<HttpRequestJob>();
//! # Ok(()) }
//! ```
//!
//! ```json
//! {"job_class": "HttpRequestJob", "arguments": {"steps": [
//!   {"name": "create", "method": "POST", "url": "https://api.example.com/things", "body": {"a": 1}},
//!   {"name": "notify", "url": "https://hooks.example.com/done"}]}}
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{Job, JobContext, JobError, RetryPolicy, Wait};

/// Which hosts HttpRequestJob may reach.
#[derive(Clone, Debug, Default)]
pub struct HttpPolicy {
    /// When not empty, only these hosts (exact, or `.example.com` for subdomains); a listed
    /// host may resolve to a private address.
    pub allowed_hosts: Vec<String>,
    /// Allow private, loopback and link-local addresses for every host.
    pub allow_private: bool,
}

impl HttpPolicy {
    /// From `PUBSUB_JOBS_HTTP_ALLOWED_HOSTS` (comma-separated) and
    /// `PUBSUB_JOBS_HTTP_ALLOW_PRIVATE` (`true` / `1`).
    pub fn from_env() -> Self {
        Self {
            allowed_hosts: std::env::var("PUBSUB_JOBS_HTTP_ALLOWED_HOSTS")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(str::to_string)
                .collect(),
            allow_private: matches!(
                std::env::var("PUBSUB_JOBS_HTTP_ALLOW_PRIVATE").as_deref(),
                Ok("1") | Ok("true")
            ),
        }
    }

    fn listed(&self, host: &str) -> bool {
        self.allowed_hosts.iter().any(|h| {
            h.eq_ignore_ascii_case(host)
                || (h.starts_with('.')
                    && host.to_ascii_lowercase().ends_with(&h.to_ascii_lowercase()))
        })
    }
}

static POLICY: RwLock<Option<HttpPolicy>> = RwLock::new(None);

/// Sets the policy of this process (default: [`HttpPolicy::from_env`]).
pub fn set_policy(policy: HttpPolicy) {
    *POLICY.write().unwrap_or_else(|p| p.into_inner()) = Some(policy);
}

fn policy() -> HttpPolicy {
    if let Some(p) = POLICY.read().unwrap_or_else(|p| p.into_inner()).clone() {
        return p;
    }
    let p = HttpPolicy::from_env();
    set_policy(p.clone());
    p
}

/// An http or https URL, checked when the job is submitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HttpUrl(reqwest::Url);

impl TryFrom<String> for HttpUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let url = reqwest::Url::parse(&s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "{s:?}: only http and https URLs are allowed, not {}",
                url.scheme()
            ));
        }
        if url.host_str().is_none() {
            return Err(format!("{s:?} has no host"));
        }
        Ok(Self(url))
    }
}

impl From<HttpUrl> for String {
    fn from(u: HttpUrl) -> String {
        u.0.into()
    }
}

/// An HTTP method name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HttpMethod(reqwest::Method);

impl TryFrom<String> for HttpMethod {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => Ok(Self(
                reqwest::Method::from_bytes(m.as_bytes()).map_err(|e| e.to_string())?,
            )),
            _ => Err(format!(
                "unsupported method {s:?}: GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS"
            )),
        }
    }
}

impl From<HttpMethod> for String {
    fn from(m: HttpMethod) -> String {
        m.0.to_string()
    }
}

impl Default for HttpMethod {
    fn default() -> Self {
        Self(reqwest::Method::GET)
    }
}

/// One request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpStep {
    /// The step's name, in the result.
    pub name: String,
    /// GET unless given.
    #[serde(default)]
    pub method: HttpMethod,
    /// http or https.
    pub url: HttpUrl,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A string is sent as is; anything else as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
}

/// What one step did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    /// The step's name.
    pub name: String,
    /// The HTTP status code.
    pub status: u16,
    /// How long the request took.
    pub duration_ms: u64,
    /// The execution that ran it.
    pub attempt: u32,
}

/// Named HTTP steps run in order; see the [module docs](self).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRequestJob {
    /// The steps, at least one.
    pub steps: Vec<HttpStep>,
    /// Per-step timeout in seconds (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
}

/// A step answered outside 2xx, or did not answer.
#[derive(Debug, thiserror::Error)]
#[error("step {step:?} failed: {reason}")]
pub struct HttpStepFailed {
    /// The step.
    pub step: String,
    /// Status code or transport error.
    pub reason: String,
}

/// A step's address is not allowed: not retried, the job goes to the morgue.
#[derive(Debug, thiserror::Error)]
#[error("step {step:?} refused: {reason}")]
pub struct HttpRefused {
    /// The step.
    pub step: String,
    /// Why.
    pub reason: String,
}

/// Whether an address is internal: loopback, private, link-local, unspecified, CGNAT,
/// unique-local, multicast, documentation or benchmarking ranges.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19))
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
        }
    }
}

/// Resolves the step's host and checks it against the policy; returns the address to use.
async fn resolve(step: &HttpStep, policy: &HttpPolicy) -> Result<(String, SocketAddr), JobError> {
    let refused = |reason: String| {
        JobError::new(HttpRefused {
            step: step.name.clone(),
            reason,
        })
    };
    let url = &step.url.0;
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string();
    let listed = policy.listed(&host);
    if !policy.allowed_hosts.is_empty() && !listed {
        return Err(refused(format!("host {host} is not in the allowlist")));
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| {
            JobError::new(HttpStepFailed {
                step: step.name.clone(),
                reason: format!("cannot resolve {host}: {e}"),
            })
        })?
        .collect();
    let Some(first) = addrs.first().copied() else {
        return Err(JobError::new(HttpStepFailed {
            step: step.name.clone(),
            reason: format!("{host} resolves to no address"),
        }));
    };
    if !(policy.allow_private || listed) {
        if let Some(bad) = addrs.iter().find(|a| is_internal(a.ip())) {
            return Err(refused(format!(
                "{host} resolves to the internal address {}; set PUBSUB_JOBS_HTTP_ALLOW_PRIVATE or list the host in PUBSUB_JOBS_HTTP_ALLOWED_HOSTS",
                bad.ip()
            )));
        }
    }
    Ok((host, first))
}

impl HttpRequestJob {
    async fn run_step(
        &self,
        step: &HttpStep,
        policy: &HttpPolicy,
        timeout: Duration,
        attempt: u32,
    ) -> Result<StepResult, JobError> {
        let (host, addr) = resolve(step, policy).await?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .resolve(&host, addr)
            .build()
            .map_err(JobError::new)?;
        let mut req = client.request(step.method.0.clone(), step.url.0.clone());
        for (k, v) in &step.headers {
            req = req.header(k, v);
        }
        match &step.body {
            Some(serde_json::Value::String(s)) => req = req.body(s.clone()),
            Some(v) => req = req.json(v),
            None => {}
        }
        let started = Instant::now();
        let failed = |reason: String| {
            JobError::new(HttpStepFailed {
                step: step.name.clone(),
                reason,
            })
        };
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                failed(format!("no answer within {timeout:?}"))
            } else {
                failed(format!("request error: {e}"))
            }
        })?;
        let status = resp.status();
        // Read the body so that the timing covers the whole answer.
        let _ = resp.bytes().await;
        let result = StepResult {
            name: step.name.clone(),
            status: status.as_u16(),
            duration_ms: started.elapsed().as_millis() as u64,
            attempt,
        };
        if !status.is_success() {
            return Err(failed(format!("HTTP {status}")));
        }
        Ok(result)
    }
}

/// The checkpoint and result: the steps done so far.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Progress {
    steps: Vec<StepResult>,
}

impl Job for HttpRequestJob {
    const NAME: &'static str = "HttpRequestJob";

    fn queue(&self) -> &str {
        "default"
    }

    fn retry_policy() -> RetryPolicy {
        RetryPolicy::default()
            .retry_on::<HttpRefused>(Wait::fixed(Duration::ZERO), 1)
            .otherwise(Wait::polynomially_longer(), 5)
    }

    async fn perform(&self, ctx: &JobContext) -> Result<(), JobError> {
        if self.steps.is_empty() {
            return Err(JobError::new(HttpRefused {
                step: String::new(),
                reason: "no steps".into(),
            }));
        }
        let timeout =
            Duration::from_secs_f64(self.timeout_seconds.unwrap_or(30.0).clamp(0.001, 3600.0));
        let policy = policy();
        let mut progress: Progress = ctx.checkpoint().unwrap_or_default();
        let resume_at = progress.steps.len().min(self.steps.len());
        if resume_at > 0 {
            tracing::info!(job_id = %ctx.job_id, resume_at = %self.steps[resume_at.min(self.steps.len() - 1)].name, "resuming after the finished steps");
        }
        for step in &self.steps[resume_at..] {
            match self.run_step(step, &policy, timeout, ctx.attempt).await {
                Ok(r) => {
                    progress.steps.push(r);
                    ctx.save_checkpoint(&progress)?;
                    ctx.set_result(&progress)?;
                }
                Err(e) => {
                    ctx.set_result(&progress)?;
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_and_methods_checked_at_decode() {
        let bad = serde_json::json!({"steps": [{"name": "a", "url": "ftp://x/y"}]});
        let err = serde_path_to_error::deserialize::<_, HttpRequestJob>(bad).unwrap_err();
        assert_eq!(err.path().to_string(), "steps[0].url");
        assert!(err.to_string().contains("only http and https"), "{err}");
        let bad =
            serde_json::json!({"steps": [{"name": "a", "url": "http://x/", "method": "BREW"}]});
        let err = serde_path_to_error::deserialize::<_, HttpRequestJob>(bad).unwrap_err();
        assert_eq!(err.path().to_string(), "steps[0].method");
    }

    #[test]
    fn allowlist() {
        let p = HttpPolicy {
            allowed_hosts: vec!["api.example.com".into(), ".hooks.example.org".into()],
            allow_private: false,
        };
        assert!(p.listed("api.example.com"));
        assert!(p.listed("a.hooks.example.org"));
        assert!(!p.listed("example.com"));
    }
}
