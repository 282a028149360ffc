//! Client settings: the project, the topic prefix, the morgue, timeouts, the emulator. Read from
//! the environment by [`ClientConfig::from_env`], or built by hand.

use std::time::Duration;

use crate::error::{Error, Result};

/// Client settings. [`ClientConfig::from_env`] reads them from the environment.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The Google Cloud project (`PUBSUB_PROJECT_ID`). Empty (the default): the project of
    /// the credentials, else `GOOGLE_CLOUD_PROJECT`, else an error at connect; on the
    /// emulator, `job-queue`. [`Client::connect`](crate::Client::connect) fills in the one found.
    pub project_id: String,
    /// A prefix for every topic and subscription, so that apps can share a project
    /// (`PUBSUB_TOPIC_PREFIX`, default empty).
    pub topic_prefix: String,
    /// The queue that receives dead jobs (`PUBSUB_MORGUE_QUEUE`, default `morgue`).
    pub morgue_queue: String,
    /// How long any one Pub/Sub call may take (`PUBSUB_TIMEOUT_SECONDS`, default 30).
    pub timeout: Duration,
    /// The ack deadline of subscriptions this client creates (default 60 s).
    pub ack_deadline: Duration,
    /// The emulator's `host:port` (`PUBSUB_EMULATOR_HOST`); `None` means Google Cloud with
    /// Application Default Credentials.
    pub emulator_host: Option<String>,
    /// The largest job accepted, its message (body and attributes) counted
    /// (`PUBSUB_JOBS_MAX_JOB_BYTES`, default and at most Pub/Sub's 10,000,000): a lower cap
    /// keeps what the job store holds, and every page that shows it, small. A job over it is
    /// refused at enqueue, naming the limit.
    pub max_job_bytes: usize,
    /// Whether this client creates the topics and subscriptions it uses
    /// (`PUBSUB_CREATE_QUEUES`, default true). Off, nothing on the start or enqueue paths makes
    /// an admin call (so `roles/pubsub.publisher` and `roles/pubsub.subscriber` suffice), and a
    /// missing topic or subscription is [`Error::QueueMissing`], naming the command that
    /// creates it (`worker queues setup`).
    pub create_queues: bool,
    /// Deliveries of one message without an outcome before Pub/Sub moves it to the morgue
    /// (`PUBSUB_JOBS_MAX_DELIVERY_ATTEMPTS`: 5 to 100, or 0 for no dead-letter policy): the
    /// backstop for a job that kills its worker every time it runs (an abort, an out-of-memory
    /// kill), which nothing else can morgue. Set on each queue's subscription when it is
    /// created; normal runs, retries (a retry is a new message), releases at shutdown and
    /// redeliveries stay far below it. The `.scheduled` subscriptions get none: every time a
    /// waiting job is parked and comes back counts as a delivery. `None` (the default): 20 on
    /// Google Cloud, none on the emulator, which ignores flow control, so that a worker there
    /// hands back what it cannot hold and each hand-back counts as a delivery (set it to test
    /// the policy on the emulator).
    pub max_delivery_attempts: Option<u32>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            project_id: String::new(),
            topic_prefix: String::new(),
            morgue_queue: "morgue".into(),
            timeout: Duration::from_secs(30),
            ack_deadline: Duration::from_secs(60),
            emulator_host: None,
            max_job_bytes: crate::client::MAX_MESSAGE_BYTES,
            create_queues: true,
            max_delivery_attempts: None,
        }
    }
}

impl ClientConfig {
    /// `bytes` if it is a job size cap Pub/Sub allows (1 to 10,000,000), else an error naming
    /// the setting (`--max-job-bytes`, `PUBSUB_JOBS_MAX_JOB_BYTES`).
    pub fn check_max_job_bytes(bytes: usize) -> Result<usize> {
        parse_max_job_bytes(
            "--max-job-bytes (PUBSUB_JOBS_MAX_JOB_BYTES)",
            &bytes.to_string(),
        )
    }

    /// `n` if it is a maximum of delivery attempts Pub/Sub allows (5 to 100) or 0 (no
    /// dead-letter policy), else an error naming the setting (`--max-delivery-attempts`,
    /// `PUBSUB_JOBS_MAX_DELIVERY_ATTEMPTS`).
    pub fn check_max_delivery_attempts(n: u32) -> Result<u32> {
        parse_max_delivery_attempts(
            "--max-delivery-attempts (PUBSUB_JOBS_MAX_DELIVERY_ATTEMPTS)",
            &n.to_string(),
        )
    }

    /// The maximum of delivery attempts in effect: the one set, else
    /// [`DEFAULT_MAX_DELIVERY_ATTEMPTS`] on Google Cloud and 0 (no policy) on the emulator.
    pub fn delivery_attempts(&self) -> u32 {
        self.max_delivery_attempts
            .unwrap_or(if self.emulator_host.is_some() {
                0
            } else {
                DEFAULT_MAX_DELIVERY_ATTEMPTS
            })
    }

    /// Checks a queue name against Pub/Sub's resource name rules with this configuration's
    /// prefix, before any network call: the error names the queue and the rule.
    pub fn validate_queue(&self, queue: &str) -> Result<()> {
        crate::queue::validate_queue_name(&self.topic_prefix, queue)
    }

    /// Reads `PUBSUB_PROJECT_ID`, `PUBSUB_TOPIC_PREFIX`, `PUBSUB_MORGUE_QUEUE`,
    /// `PUBSUB_TIMEOUT_SECONDS` and `PUBSUB_EMULATOR_HOST`, with the defaults above.
    pub fn from_env() -> Result<Self> {
        let mut c = Self::default();
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(v) = var("PUBSUB_PROJECT_ID") {
            c.project_id = v;
        }
        if let Some(v) = var("PUBSUB_TOPIC_PREFIX") {
            c.topic_prefix = v;
        }
        c.emulator_host = var("PUBSUB_EMULATOR_HOST");
        if let Some(v) = var("PUBSUB_MORGUE_QUEUE") {
            c.morgue_queue = v;
        }
        if let Some(v) = var("PUBSUB_CREATE_QUEUES") {
            c.create_queues = match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => {
                    return Err(Error::Config(format!(
                        "PUBSUB_CREATE_QUEUES={v:?} is not true or false"
                    )))
                }
            };
        }
        if let Some(v) = var("PUBSUB_JOBS_MAX_DELIVERY_ATTEMPTS") {
            c.max_delivery_attempts = Some(parse_max_delivery_attempts(
                "PUBSUB_JOBS_MAX_DELIVERY_ATTEMPTS",
                &v,
            )?);
        }
        if let Some(v) = var("PUBSUB_JOBS_MAX_JOB_BYTES") {
            c.max_job_bytes = parse_max_job_bytes("PUBSUB_JOBS_MAX_JOB_BYTES", &v)?;
        }
        if let Some(v) = var("PUBSUB_TIMEOUT_SECONDS") {
            let secs: f64 = v
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite() && *s > 0.0)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "PUBSUB_TIMEOUT_SECONDS={v:?} is not a positive number"
                    ))
                })?;
            c.timeout = Duration::from_secs_f64(secs);
        }
        Ok(c)
    }
}

/// The default of [`ClientConfig::max_delivery_attempts`].
pub const DEFAULT_MAX_DELIVERY_ATTEMPTS: u32 = 20;

/// A maximum of delivery attempts from a setting named `name`: 0 (no dead-letter policy) or
/// Pub/Sub's 5 to 100.
pub(crate) fn parse_max_delivery_attempts(name: &str, value: &str) -> Result<u32> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n == 0 || (5..=100).contains(n))
        .ok_or_else(|| {
            Error::Config(format!(
                "{name}={value:?} is not 0 (no dead-letter policy) or a number of deliveries \
                 from 5 to 100 (Pub/Sub's range)"
            ))
        })
}

/// A job size cap from a setting named `name`: a whole number of bytes from 1 to Pub/Sub's
/// 10,000,000.
pub(crate) fn parse_max_job_bytes(name: &str, value: &str) -> Result<usize> {
    value
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=crate::client::MAX_MESSAGE_BYTES).contains(n))
        .ok_or_else(|| {
            Error::Config(format!(
                "{name}={value:?} is not a number of bytes from 1 to {} (Pub/Sub's limit)",
                crate::client::MAX_MESSAGE_BYTES
            ))
        })
}
