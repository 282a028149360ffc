//! `HttpRequestJob`, a built-in job class: named HTTP steps run in order. A non-2xx answer or a
//! timeout fails the job, which retries by its policy and resumes at the failed step (the
//! finished steps travel in the retry as a checkpoint). Each step's status code and duration go
//! into the result.
//!
//! Only http and https. Hosts resolving to private, loopback, link-local or otherwise internal
//! addresses are refused unless allowed ([`HttpPolicy`]; the ranges: [`internal_range`]), IPv6
//! forms that embed or translate an IPv4 address included; the checked address is the one
//! connected to, so a DNS answer cannot change between check and request. A refused step goes
//! to the morgue at once, with the reason, naming the range.
//!
//! Proxy variables (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`) are ignored: a proxy would connect
//! to an address other than the one checked. A proxy is used only when given explicitly
//! ([`HttpPolicy::proxy`], `PUBSUB_JOBS_HTTP_PROXY`); the guard then checks the address this
//! process resolves, and the proxy's own egress rules must cover what it resolves.
//!
//! A response's body is read (so that a step's time covers the answer) and thrown away, at most
//! [`MAX_BODY_READ`] bytes of it: a huge answer costs neither memory nor time beyond that.
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
    /// A proxy for every request (`http://host:port`); none by default, whatever the proxy
    /// environment variables say.
    pub proxy: Option<String>,
}

impl HttpPolicy {
    /// From `PUBSUB_JOBS_HTTP_ALLOWED_HOSTS` (comma-separated),
    /// `PUBSUB_JOBS_HTTP_ALLOW_PRIVATE` (`true` / `1`) and `PUBSUB_JOBS_HTTP_PROXY`.
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
            proxy: std::env::var("PUBSUB_JOBS_HTTP_PROXY")
                .ok()
                .filter(|p| !p.trim().is_empty()),
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

fn at_least_one_step<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<HttpStep>, D::Error> {
    let steps = Vec::<HttpStep>::deserialize(d)?;
    if steps.is_empty() {
        return Err(serde::de::Error::custom(
            "an HttpRequestJob needs at least one step",
        ));
    }
    Ok(steps)
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
    /// The steps, at least one (checked when the job is submitted).
    #[serde(deserialize_with = "at_least_one_step")]
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

/// The most bytes of a response body a step reads (and throws away) before it closes the
/// connection: 1 MiB.
pub const MAX_BODY_READ: usize = 1 << 20;

/// Whether an address is internal; see [`internal_range`].
pub fn is_internal(ip: IpAddr) -> bool {
    internal_range(ip).is_some()
}

/// The internal or special-purpose range an address lies in, named (`None` for a public
/// address). IPv4: this network `0.0.0.0/8`, private `10/8`, `172.16/12`, `192.168/16`, shared
/// (CGNAT) `100.64/10`, loopback `127/8`, link-local `169.254/16` (the metadata server),
/// IETF protocol assignments `192.0.0.0/24`, documentation, the 6to4 relay `192.88.99.0/24`,
/// benchmarking `198.18/15`, multicast, reserved `240/4` and broadcast. IPv6: unspecified,
/// loopback, IPv4-mapped, IPv4-compatible `::/96` and IPv4-translated `::ffff:0:0/96` (all
/// three refused whatever they embed), NAT64 `64:ff9b::/96` (its embedded IPv4 address is
/// checked), local-use NAT64 `64:ff9b:1::/48`, discard-only `100::/64`, Teredo `2001::/32`,
/// benchmarking `2001:2::/48`, documentation `2001:db8::/32` and `3fff::/20`, 6to4 `2002::/16`,
/// unique-local `fc00::/7`, link-local `fe80::/10`, site-local `fec0::/10` and multicast.
pub fn internal_range(ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V4(v4) => v4_range(v4).map(str::to_string),
        IpAddr::V6(v6) => v6_range(v6),
    }
}

fn v4_range(v4: std::net::Ipv4Addr) -> Option<&'static str> {
    let o = v4.octets();
    let range = match o {
        [0, ..] => "this network 0.0.0.0/8",
        [10, ..] => "private 10.0.0.0/8",
        [100, b, ..] if (64..128).contains(&b) => "shared address space 100.64.0.0/10",
        [127, ..] => "loopback 127.0.0.0/8",
        [169, 254, ..] => "link-local 169.254.0.0/16",
        [172, b, ..] if (16..32).contains(&b) => "private 172.16.0.0/12",
        [192, 0, 0, _] => "IETF protocol assignments 192.0.0.0/24",
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => "documentation",
        [192, 88, 99, _] => "6to4 relay anycast 192.88.99.0/24",
        [192, 168, ..] => "private 192.168.0.0/16",
        [198, 18 | 19, ..] => "benchmarking 198.18.0.0/15",
        [224..=239, ..] => "multicast 224.0.0.0/4",
        [255, 255, 255, 255] => "broadcast",
        [240..=255, ..] => "reserved 240.0.0.0/4",
        _ => return None,
    };
    Some(range)
}

fn v6_range(v6: std::net::Ipv6Addr) -> Option<String> {
    let s = v6.segments();
    let embedded =
        || std::net::Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let range = match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => "unspecified ::",
        [0, 0, 0, 0, 0, 0, 0, 1] => "loopback ::1",
        [0, 0, 0, 0, 0, 0xffff, _, _] => {
            // IPv4-mapped: the socket layer connects to the embedded IPv4 address.
            let v4 = embedded();
            return Some(match v4_range(v4) {
                Some(r) => format!("IPv4-mapped ::ffff:0:0/96 embedding {v4} ({r})"),
                None => "IPv4-mapped ::ffff:0:0/96 (connect to the IPv4 address itself)".into(),
            });
        }
        [0, 0, 0, 0, 0, 0, _, _] => "IPv4-compatible ::/96",
        [0, 0, 0, 0, 0xffff, 0, _, _] => "IPv4-translated ::ffff:0:0:0/96",
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => {
            // NAT64: the gateway connects to the embedded IPv4 address (on an IPv6-only node,
            // 64:ff9b::a9fe:a9fe is the metadata server). A public one is let through.
            let v4 = embedded();
            return v4_range(v4).map(|r| format!("NAT64 64:ff9b::/96 embedding {v4} ({r})"));
        }
        [0x64, 0xff9b, 1, ..] => "local-use NAT64 64:ff9b:1::/48",
        [0x100, 0, 0, 0, ..] => "discard-only 100::/64",
        [0x2001, 0, ..] => "Teredo 2001::/32",
        [0x2001, 2, 0, ..] => "benchmarking 2001:2::/48",
        [0x2001, 0xdb8, ..] => "documentation 2001:db8::/32",
        [0x2002, ..] => "6to4 2002::/16",
        [a, ..] if a & 0xfff0 == 0x3ff0 => "documentation 3fff::/20",
        [a, ..] if a & 0xfe00 == 0xfc00 => "unique-local fc00::/7",
        [a, ..] if a & 0xffc0 == 0xfe80 => "link-local fe80::/10",
        [a, ..] if a & 0xffc0 == 0xfec0 => "site-local fec0::/10",
        [a, ..] if a & 0xff00 == 0xff00 => "multicast ff00::/8",
        _ => return None,
    };
    Some(range.to_string())
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
        if let Some((bad, range)) = addrs
            .iter()
            .find_map(|a| internal_range(a.ip()).map(|r| (a.ip(), r)))
        {
            return Err(refused(format!(
                "{host} resolves to the internal address {bad}, in {range}; set PUBSUB_JOBS_HTTP_ALLOW_PRIVATE or list the host in PUBSUB_JOBS_HTTP_ALLOWED_HOSTS"
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
        // No proxy from the environment: the address checked is the address connected to.
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .resolve(&host, addr)
            .no_proxy();
        if let Some(proxy) = &policy.proxy {
            let proxy = reqwest::Proxy::all(proxy.as_str()).map_err(|e| {
                JobError::new(HttpRefused {
                    step: step.name.clone(),
                    reason: format!("PUBSUB_JOBS_HTTP_PROXY {proxy:?} is not a proxy URL: {e}"),
                })
            })?;
            builder = builder.proxy(proxy);
        }
        let client = builder.build().map_err(JobError::new)?;
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
        // Read the body so that the timing covers the answer, chunk by chunk and thrown away,
        // at most MAX_BODY_READ bytes: then the connection is dropped.
        let mut resp = resp;
        let mut read = 0usize;
        while read < MAX_BODY_READ {
            match resp.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) | Err(_) => break,
            }
        }
        drop(resp);
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
        let total = self.steps.len() as u64;
        for (i, step) in self.steps.iter().enumerate().skip(resume_at) {
            // "2 of 3: notify": steps done, and the one running.
            ctx.progress(
                i as u64,
                total,
                format!("{} of {total}: {}", i + 1, step.name),
            );
            match self.run_step(step, &policy, timeout, ctx.attempt).await {
                Ok(r) => {
                    ctx.log(format!(
                        "{}: {} in {} ms",
                        step.name, r.status, r.duration_ms
                    ));
                    progress.steps.push(r);
                    ctx.save_checkpoint(&progress)?;
                    ctx.set_result(&progress)?;
                }
                Err(e) => {
                    ctx.log(format!("{}: {e}", step.name));
                    ctx.set_result(&progress)?;
                    return Err(e);
                }
            }
        }
        ctx.progress(total, total, format!("{total} of {total}: done"));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[test]
    fn internal_addresses_name_their_range() {
        for (ip, range) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private 10.0.0.0/8"),
            ("172.16.0.1", "private 172.16.0.0/12"),
            ("192.168.1.1", "private 192.168.0.0/16"),
            ("169.254.169.254", "link-local 169.254.0.0/16"),
            ("0.0.0.0", "this network"),
            ("100.64.0.1", "shared address space"),
            ("192.0.0.8", "IETF protocol assignments 192.0.0.0/24"),
            ("192.88.99.1", "6to4 relay anycast 192.88.99.0/24"),
            ("198.18.0.1", "benchmarking"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("::1", "loopback ::1"),
            ("::", "unspecified"),
            ("fc00::1", "unique-local"),
            ("fe80::1", "link-local fe80::/10"),
            (
                "::ffff:127.0.0.1",
                "IPv4-mapped ::ffff:0:0/96 embedding 127.0.0.1 (loopback",
            ),
            ("::ffff:8.8.8.8", "IPv4-mapped"),
            (
                "64:ff9b::a9fe:a9fe",
                "NAT64 64:ff9b::/96 embedding 169.254.169.254 (link-local",
            ),
            (
                "64:ff9b::10.0.0.1",
                "NAT64 64:ff9b::/96 embedding 10.0.0.1 (private",
            ),
            ("64:ff9b:1::a9fe:a9fe", "local-use NAT64 64:ff9b:1::/48"),
            ("2002:a9fe:a9fe::1", "6to4 2002::/16"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo 2001::/32"),
            ("::a9fe:a9fe", "IPv4-compatible ::/96"),
            ("::ffff:0:a9fe:a9fe", "IPv4-translated ::ffff:0:0:0/96"),
            ("fec0::1", "site-local fec0::/10"),
            ("100::1", "discard-only 100::/64"),
            ("2001:2::1", "benchmarking 2001:2::/48"),
            ("2001:db8::1", "documentation 2001:db8::/32"),
            ("3fff::1", "documentation 3fff::/20"),
            ("ff02::1", "multicast"),
        ] {
            let got = internal_range(ip.parse().unwrap());
            assert!(
                got.as_deref().is_some_and(|g| g.contains(range)),
                "{ip}: {got:?}, want {range:?}"
            );
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700::1111",
            "2001:4860:4860::8888",
            "64:ff9b::808:808",
        ] {
            assert_eq!(internal_range(ip.parse().unwrap()), None, "{ip}");
        }
    }

    /// A TCP listener that counts connections and answers each with `200` and a body of
    /// `body_len` bytes, written in 64 KiB chunks until the peer goes away; counts bytes written.
    async fn server(body_len: u64) -> (SocketAddr, Arc<AtomicU64>, Arc<AtomicU64>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (conns, written) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (c, w) = (conns.clone(), written.clone());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let w = w.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|x| x == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {body_len}\r\n\r\n");
                    if sock.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let chunk = vec![b'x'; 64 * 1024];
                    let mut left = body_len;
                    while left > 0 {
                        let n = left.min(chunk.len() as u64) as usize;
                        if sock.write_all(&chunk[..n]).await.is_err() {
                            return;
                        }
                        w.fetch_add(n as u64, Ordering::SeqCst);
                        left -= n as u64;
                    }
                });
            }
        });
        (addr, conns, written)
    }

    fn step(url: &str) -> HttpStep {
        serde_json::from_value(serde_json::json!({"name": "probe", "url": url})).unwrap()
    }

    #[tokio::test]
    async fn every_internal_form_is_refused_naming_its_range_and_proxy_variables_are_ignored() {
        // A proxy from the environment that must see no request: neither the refused steps
        // nor the allowed one go through it.
        let (proxy, proxy_conns, _) = server(0).await;
        for var in [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            std::env::set_var(var, format!("http://{proxy}"));
        }
        let job = HttpRequestJob {
            steps: vec![],
            timeout_seconds: None,
        };
        let strict = HttpPolicy::default();
        for (url, range) in [
            (
                "http://[64:ff9b::a9fe:a9fe]/",
                "NAT64 64:ff9b::/96 embedding 169.254.169.254",
            ),
            (
                "http://[64:ff9b:1::a9fe:a9fe]/",
                "local-use NAT64 64:ff9b:1::/48",
            ),
            ("http://[2002:a9fe:a9fe::]/", "6to4 2002::/16"),
            (
                "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
                "Teredo 2001::/32",
            ),
            ("http://[::a9fe:a9fe]/", "IPv4-compatible ::/96"),
            (
                "http://[::ffff:0:a9fe:a9fe]/",
                "IPv4-translated ::ffff:0:0:0/96",
            ),
            ("http://[fec0::1]/", "site-local fec0::/10"),
            ("http://[100::1]/", "discard-only 100::/64"),
            (
                "http://192.0.0.8/",
                "IETF protocol assignments 192.0.0.0/24",
            ),
            ("http://192.88.99.1/", "6to4 relay anycast 192.88.99.0/24"),
            (&format!("http://{proxy}/"), "loopback 127.0.0.0/8"),
        ] {
            let err = job
                .run_step(&step(url), &strict, Duration::from_secs(5), 1)
                .await
                .expect_err(url);
            let refused = err
                .downcast_ref::<HttpRefused>()
                .unwrap_or_else(|| panic!("{url}: refused, not {err}"));
            assert!(refused.reason.contains(range), "{url}: {}", refused.reason);
        }
        // Allowed (private addresses on): the request goes straight to the server, and a
        // 1 GiB answer is read only up to MAX_BODY_READ, then the connection is dropped.
        let (target, target_conns, written) = server(1 << 30).await;
        let open = HttpPolicy {
            allow_private: true,
            ..HttpPolicy::default()
        };
        let done = job
            .run_step(
                &step(&format!("http://{target}/big")),
                &open,
                Duration::from_secs(30),
                1,
            )
            .await
            .expect("the step succeeds on its status");
        assert_eq!(done.status, 200);
        assert_eq!(
            target_conns.load(Ordering::SeqCst),
            1,
            "the target was reached directly"
        );
        assert_eq!(
            proxy_conns.load(Ordering::SeqCst),
            0,
            "the proxy saw no request"
        );
        // What the server got out before the client closed: the read cap plus socket buffers.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sent = written.load(Ordering::SeqCst);
        assert!(
            sent < 64 << 20,
            "the client stopped reading early: {sent} bytes sent"
        );
        // An explicit proxy is used.
        let via = HttpPolicy {
            allow_private: true,
            proxy: Some(format!("http://{proxy}")),
            ..HttpPolicy::default()
        };
        job.run_step(
            &step(&format!("http://{target}/")),
            &via,
            Duration::from_secs(5),
            1,
        )
        .await
        .expect("the proxy answers 200");
        assert_eq!(
            proxy_conns.load(Ordering::SeqCst),
            1,
            "an explicit proxy is used"
        );
        assert_eq!(target_conns.load(Ordering::SeqCst), 1);
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
            ..HttpPolicy::default()
        };
        assert!(p.listed("api.example.com"));
        assert!(p.listed("a.hooks.example.org"));
        assert!(!p.listed("example.com"));
    }
}
