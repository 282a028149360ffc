//! Process heartbeats: who is alive.

use super::*;

/// A process that uses the store: a worker, `worker api`, a relay. Each reports itself every
/// [`HEARTBEAT_INTERVAL`] through its [`Maintainer`](maintenance::Maintainer).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct ProcessInfo {
    /// Unique per process: host, pid and a random suffix.
    pub id: String,
    /// What it is: `worker`, `api`, `relay`.
    pub kind: String,
    /// Its queue, for a worker.
    pub queue: Option<String>,
    /// The host name.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it last reported (set by the store).
    pub seen_at: DateTime<Utc>,
}

impl ProcessInfo {
    /// This process, as `kind` (serving `queue`, for a worker).
    pub fn this(kind: &str, queue: Option<&str>) -> Self {
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
            })
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown".into());
        let pid = std::process::id();
        let now = Utc::now();
        Self {
            id: format!("{host}:{pid}:{}", &Uuid::new_v4().simple().to_string()[..8]),
            kind: kind.to_string(),
            queue: queue.map(str::to_string),
            host,
            pid,
            started_at: now,
            seen_at: now,
        }
    }
}

/// How often a process reports itself to the store.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
