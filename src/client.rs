//! The client: the start of a job's life. `perform_later` turns a job into an [`Envelope`],
//! makes sure its queue exists, publishes it, and returns once Pub/Sub has accepted it.
//!
//! Jobs due now go to the queue's topic; jobs with a delay go to the queue's `.scheduled` topic,
//! whose consumer (in every worker) republishes them when due (see the README).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::broker::{Broker, OutboundMessage, PubSubBroker, RETENTION};
use crate::envelope::Envelope;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::queue::{validate_queue_name, SCHEDULED_SUFFIX};
use crate::store::{Dedup, JobRecord, JobStore, NewJob, Submitted, DEFAULT_DEDUP_WINDOW};

/// The largest message body accepted (Pub/Sub's limit is 10 MB per message, attributes included).
pub const MAX_MESSAGE_BYTES: usize = 10_000_000;
const MAX_BATCH_BYTES: usize = 9_000_000;
const MAX_BATCH_MESSAGES: usize = 1000;
/// Publish requests in flight at once for a bulk enqueue.
const PUBLISH_IN_FLIGHT: usize = 32;

/// Client settings. [`ClientConfig::from_env`] reads them from the environment.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The Google Cloud project (`PUBSUB_PROJECT_ID`, default `job-queue`).
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
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            project_id: "job-queue".into(),
            topic_prefix: String::new(),
            morgue_queue: "morgue".into(),
            timeout: Duration::from_secs(30),
            ack_deadline: Duration::from_secs(60),
            emulator_host: None,
        }
    }
}

impl ClientConfig {
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

struct Inner {
    broker: Arc<dyn Broker>,
    memory: Option<crate::broker::MemoryBroker>,
    config: ClientConfig,
    ensured: Mutex<HashSet<String>>,
    store: Option<Arc<dyn JobStore>>,
}

/// What [`Client::submit`] did.
#[derive(Clone, Debug)]
pub struct Submission {
    /// The job's id: the new job's, or the one holding the dedup key.
    pub job_id: Uuid,
    /// True when the dedup key was taken within its window and nothing was published.
    pub existing: bool,
    /// The job's stored state, when the client has a store.
    pub record: Option<Box<JobRecord>>,
}

/// Publishes jobs and manages queues. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Client {
    /// A client on Pub/Sub configured from the environment (see [`ClientConfig::from_env`];
    /// `PUBSUB_EMULATOR_HOST` selects the emulator, otherwise Application Default Credentials).
    pub async fn from_env() -> Result<Self> {
        Self::connect(ClientConfig::from_env()?).await
    }

    /// A client on Pub/Sub with explicit settings.
    pub async fn connect(config: ClientConfig) -> Result<Self> {
        validate_queue_name(&config.topic_prefix, &config.morgue_queue)?;
        let broker = PubSubBroker::connect(
            &config.project_id,
            config.emulator_host.as_deref(),
            config.timeout,
        )
        .await?;
        Ok(Self::with_broker(Arc::new(broker), config))
    }

    /// A client on any broker, for instance [`MemoryBroker`](crate::broker::MemoryBroker).
    pub fn with_broker(broker: Arc<dyn Broker>, config: ClientConfig) -> Self {
        Self::build(broker, None, config)
    }

    /// A client on an in-memory broker; [`testing`](crate::testing) helpers can inspect it.
    pub fn with_memory_broker(broker: crate::broker::MemoryBroker, config: ClientConfig) -> Self {
        Self::build(Arc::new(broker.clone()), Some(broker), config)
    }

    pub(crate) fn memory_broker(&self) -> Option<crate::broker::MemoryBroker> {
        self.inner.memory.clone()
    }

    fn build(
        broker: Arc<dyn Broker>,
        memory: Option<crate::broker::MemoryBroker>,
        config: ClientConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                broker,
                memory,
                config,
                ensured: Mutex::new(HashSet::new()),
                store: None,
            }),
        }
    }

    /// This client with a job store: every enqueue is recorded there before it is published,
    /// and workers built on it record every transition. See [`store`](crate::store).
    pub fn with_store(self, store: Arc<dyn JobStore>) -> Self {
        let ensured = self
            .inner
            .ensured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Self {
            inner: Arc::new(Inner {
                broker: self.inner.broker.clone(),
                memory: self.inner.memory.clone(),
                config: self.inner.config.clone(),
                ensured: Mutex::new(ensured),
                store: Some(store),
            }),
        }
    }

    /// The job store, if the client has one.
    pub fn store(&self) -> Option<&Arc<dyn JobStore>> {
        self.inner.store.as_ref()
    }

    /// The settings.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    pub(crate) fn broker(&self) -> &Arc<dyn Broker> {
        &self.inner.broker
    }

    /// The topic and subscription name of a queue (prefix included).
    pub fn resource_name(&self, queue: &str) -> String {
        format!("{}{}", self.inner.config.topic_prefix, queue)
    }

    /// The topic and subscription name holding a queue's jobs that are not due yet.
    pub fn scheduled_resource_name(&self, queue: &str) -> String {
        format!(
            "{}{}{}",
            self.inner.config.topic_prefix, queue, SCHEDULED_SUFFIX
        )
    }

    /// The morgue queue's name (without prefix).
    pub fn morgue_queue(&self) -> &str {
        &self.inner.config.morgue_queue
    }

    /// Checks a queue name against Pub/Sub's rules (with this client's prefix).
    pub fn validate_queue(&self, queue: &str) -> Result<()> {
        validate_queue_name(&self.inner.config.topic_prefix, queue)
    }

    async fn ensure_resource(&self, name: &str) -> Result<()> {
        if self.lock_ensured().contains(name) {
            return Ok(());
        }
        let broker = &self.inner.broker;
        broker.create_topic(name).await?;
        broker
            .create_subscription(name, name, self.inner.config.ack_deadline)
            .await?;
        self.lock_ensured().insert(name.to_string());
        Ok(())
    }

    fn lock_ensured(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.inner.ensured.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets that a resource exists, so that the next use creates it again (after a NotFound).
    pub(crate) fn forget_resource(&self, name: &str) {
        self.lock_ensured().remove(name);
    }

    /// Creates the queue's topic and subscription, and its scheduled pair, if missing. Idempotent,
    /// safe when many processes race, and cached per process.
    pub async fn ensure_queue(&self, queue: &str) -> Result<()> {
        self.validate_queue(queue)?;
        self.ensure_resource(&self.resource_name(queue)).await?;
        self.ensure_resource(&self.scheduled_resource_name(queue))
            .await
    }

    /// Creates the morgue's topic and subscription if missing.
    pub async fn ensure_morgue(&self) -> Result<()> {
        self.ensure_resource(&self.resource_name(&self.inner.config.morgue_queue))
            .await
    }

    /// Publishes to a topic whose subscription this client manages; recreates both once if the
    /// broker says they are gone (for instance after an emulator restart).
    pub(crate) async fn publish_to(
        &self,
        resource: &str,
        messages: Vec<OutboundMessage>,
    ) -> Result<Vec<String>> {
        self.ensure_resource(resource).await?;
        match self.inner.broker.publish(resource, messages.clone()).await {
            Err(e) if e.is_not_found() => {
                tracing::warn!(topic = resource, "topic is gone; creating it again");
                self.forget_resource(resource);
                self.ensure_resource(resource).await?;
                self.inner.broker.publish(resource, messages).await
            }
            other => other,
        }
    }

    /// Checks an envelope against the queue-name rules and Pub/Sub's limits; returns its body.
    fn check_envelope(&self, env: &Envelope, now: DateTime<Utc>) -> Result<Vec<u8>> {
        let data = env.to_body();
        self.check_body(env, &data, now)?;
        Ok(data)
    }

    /// Checks an envelope whose body is already serialized.
    fn check_body(&self, env: &Envelope, data: &[u8], now: DateTime<Utc>) -> Result<()> {
        self.validate_queue(&env.queue_name)?;
        if data.len() > MAX_MESSAGE_BYTES {
            return Err(Error::PayloadTooLarge {
                job_class: env.job_class.clone(),
                queue: env.queue_name.clone(),
                size: data.len(),
                limit: MAX_MESSAGE_BYTES,
            });
        }
        if let Some(at) = env.scheduled_at {
            let delay = (at - now).to_std().unwrap_or_default();
            if delay >= RETENTION {
                return Err(Error::DelayTooLong {
                    job_class: env.job_class.clone(),
                    queue: env.queue_name.clone(),
                    delay,
                });
            }
        }
        Ok(())
    }

    /// Enqueues one job: checks it, records it in the store (claiming its dedup key, if any),
    /// then publishes it. With the dedup key held by another job within its window, publishes
    /// nothing and returns that job. A failed publish is taken back out of the store.
    pub async fn submit(&self, env: Envelope, dedup: Option<Dedup>) -> Result<Submission> {
        let body = self.check_envelope(&env, Utc::now())?;
        let Some(store) = self.store() else {
            if dedup.is_some() {
                return Err(Error::Config(format!(
                    "job class {}: a dedup key needs a job store (Client::with_store, --store)",
                    env.job_class
                )));
            }
            let job_id = env.job_id;
            self.publish_envelopes(vec![env], vec![body]).await?;
            return Ok(Submission {
                job_id,
                existing: false,
                record: None,
            });
        };
        let record = match store.submit(new_job(&env, dedup)).await? {
            Submitted::Existing(rec) => {
                tracing::info!(event = "job.deduplicated", job_id = %rec.id, job_class = %rec.job_class, queue = %rec.queue, "dedup key held: returning the existing job");
                return Ok(Submission {
                    job_id: rec.id,
                    existing: true,
                    record: Some(rec),
                });
            }
            Submitted::Created(rec) => rec,
        };
        let job_id = env.job_id;
        if let Err(e) = self.publish_envelopes(vec![env], vec![body]).await {
            if let Err(se) = store.abandon(job_id).await {
                tracing::warn!(job_id = %job_id, error = %se, "could not remove a job whose publish failed from the store");
            }
            return Err(e);
        }
        Ok(Submission {
            job_id,
            existing: false,
            record: Some(record),
        })
    }

    /// Checks envelopes, records them in `store`, then publishes them.
    async fn submit_all(&self, store: &Arc<dyn JobStore>, envelopes: Vec<Envelope>) -> Result<()> {
        let now = Utc::now();
        let bodies = envelopes
            .iter()
            .map(|env| self.check_envelope(env, now))
            .collect::<Result<Vec<_>>>()?;
        let ids: Vec<Uuid> = envelopes.iter().map(|e| e.job_id).collect();
        store
            .submit_many(envelopes.iter().map(|e| new_job(e, None)).collect())
            .await?;
        if let Err(e) = self.publish_envelopes(envelopes, bodies).await {
            // Some may have been published: a job the store forgets still runs, and its worker
            // records it again when it starts.
            for id in ids {
                let _ = store.abandon(id).await;
            }
            return Err(e);
        }
        Ok(())
    }

    /// Publishes envelopes: due ones to their queue, future ones to the queue's scheduled topic,
    /// in batches. Returns once every message was accepted. Records nothing in the job store
    /// (the worker uses it for retries); [`Client::submit`] is the recorded way in.
    pub async fn enqueue_envelopes(&self, envelopes: Vec<Envelope>) -> Result<()> {
        let bodies = envelopes.iter().map(Envelope::to_body).collect();
        self.publish_envelopes(envelopes, bodies).await
    }

    /// [`Client::enqueue_envelopes`] with the bodies already serialized (`bodies[i]` is
    /// `envelopes[i]`'s; the envelopes' arguments are not looked at again).
    async fn publish_envelopes(
        &self,
        envelopes: Vec<Envelope>,
        bodies: Vec<Vec<u8>>,
    ) -> Result<()> {
        let now = Utc::now();
        let mut by_topic: HashMap<String, Vec<(OutboundMessage, usize)>> = HashMap::new();
        for (index, (env, data)) in envelopes.iter().zip(bodies).enumerate() {
            self.check_body(env, &data, now)?;
            let topic = match env.scheduled_at {
                Some(at) if at > now => self.scheduled_resource_name(&env.queue_name),
                _ => self.resource_name(&env.queue_name),
            };
            let msg = OutboundMessage {
                data,
                attributes: env.attributes(),
            };
            by_topic.entry(topic).or_default().push((msg, index));
        }
        let mut queues: Vec<&str> = envelopes.iter().map(|e| e.queue_name.as_str()).collect();
        queues.sort_unstable();
        queues.dedup();
        for q in queues {
            self.ensure_queue(q).await?;
        }
        // Split into requests within Pub/Sub's limits, then send up to PUBLISH_IN_FLIGHT at once.
        let mut requests: Vec<(String, Vec<OutboundMessage>, Vec<usize>)> = Vec::new();
        for (topic, msgs) in by_topic {
            let mut batch: Vec<OutboundMessage> = Vec::new();
            let mut batch_envs: Vec<usize> = Vec::new();
            let mut bytes = 0;
            for (m, env) in msgs {
                if !batch.is_empty()
                    && (batch.len() >= MAX_BATCH_MESSAGES || bytes + m.data.len() > MAX_BATCH_BYTES)
                {
                    requests.push((
                        topic.clone(),
                        std::mem::take(&mut batch),
                        std::mem::take(&mut batch_envs),
                    ));
                    bytes = 0;
                }
                bytes += m.data.len();
                batch.push(m);
                batch_envs.push(env);
            }
            if !batch.is_empty() {
                requests.push((topic, batch, batch_envs));
            }
        }
        use futures::{StreamExt, TryStreamExt};
        futures::stream::iter(requests)
            .map(|(topic, batch, indices)| {
                let envelopes = &envelopes;
                async move { self.publish_batch(&topic, batch, envelopes, indices).await }
            })
            .buffer_unordered(PUBLISH_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn publish_batch(
        &self,
        topic: &str,
        batch: Vec<OutboundMessage>,
        envelopes: &[Envelope],
        indices: Vec<usize>,
    ) -> Result<()> {
        self.publish_to(topic, batch).await?;
        for env in indices.iter().map(|i| &envelopes[*i]) {
            tracing::info!(
                event = "job.enqueued",
                job_id = %env.job_id,
                job_class = %env.job_class,
                queue = %env.queue_name,
                attempt = env.attempt(),
                scheduled_at = env.scheduled_at.map(|t| t.to_rfc3339()),
                "job enqueued"
            );
        }
        Ok(())
    }

    /// Enqueues many jobs in batched publishes (ActiveJob's `perform_all_later`); returns their
    /// ids in order once all were accepted.
    pub async fn perform_all_later<J: Job>(
        &self,
        jobs: impl IntoIterator<Item = J>,
    ) -> Result<Vec<Uuid>> {
        self.bulk(None, jobs).await
    }

    /// Like [`Client::perform_all_later`], but every job goes to `queue`.
    pub async fn perform_all_later_on<J: Job>(
        &self,
        queue: &str,
        jobs: impl IntoIterator<Item = J>,
    ) -> Result<Vec<Uuid>> {
        self.bulk(Some(queue), jobs).await
    }

    async fn bulk<J: Job>(
        &self,
        queue: Option<&str>,
        jobs: impl IntoIterator<Item = J>,
    ) -> Result<Vec<Uuid>> {
        if let Some(store) = self.store() {
            // The store keeps the arguments: build them as JSON values.
            let envelopes = jobs
                .into_iter()
                .map(|j| envelope_for(&j, queue, None))
                .collect::<Result<Vec<_>>>()?;
            let ids = envelopes.iter().map(|e| e.job_id).collect();
            self.submit_all(store, envelopes).await?;
            return Ok(ids);
        }
        // Without a store, serialize each job straight into its message body, once.
        let (mut envelopes, mut bodies) = (Vec::new(), Vec::new());
        for job in jobs {
            let env = Envelope::new(
                J::NAME,
                queue.unwrap_or_else(|| job.queue()),
                serde_json::Value::Null,
            );
            let body = env.body_with(&job).map_err(|source| Error::Serialize {
                job_class: J::NAME.to_string(),
                source,
            })?;
            envelopes.push(env);
            bodies.push(body);
        }
        let ids = envelopes.iter().map(|e| e.job_id).collect();
        self.publish_envelopes(envelopes, bodies).await?;
        Ok(ids)
    }

    /// Enqueues a job given by class name and JSON arguments, as the CLI and the HTTP API do.
    /// The class must be registered in this binary and the arguments must deserialize into it.
    pub async fn enqueue_by_name(
        &self,
        job_class: &str,
        arguments: serde_json::Value,
        queue: Option<&str>,
        scheduled_at: Option<DateTime<Utc>>,
    ) -> Result<Envelope> {
        let registry = crate::registry::Registry::from_inventory()?;
        registry.validate(job_class, &arguments)?;
        let queue = queue.unwrap_or("default");
        let mut env = Envelope::new(job_class, queue, arguments);
        env.scheduled_at = scheduled_at;
        self.submit(env.clone(), None).await?;
        Ok(env)
    }
}

fn new_job(env: &Envelope, dedup: Option<Dedup>) -> NewJob {
    NewJob {
        id: env.job_id,
        job_class: env.job_class.clone(),
        queue: env.queue_name.clone(),
        arguments: env.arguments.clone(),
        enqueued_at: env.enqueued_at,
        scheduled_at: env.scheduled_at,
        dedup,
    }
}

fn envelope_for<J: Job>(
    job: &J,
    queue: Option<&str>,
    at: Option<DateTime<Utc>>,
) -> Result<Envelope> {
    let arguments = serde_json::to_value(job).map_err(|source| Error::Serialize {
        job_class: J::NAME.to_string(),
        source,
    })?;
    let mut env = Envelope::new(J::NAME, queue.unwrap_or_else(|| job.queue()), arguments);
    env.scheduled_at = at;
    Ok(env)
}

/// A job with options for one enqueue, from [`Job::set`].
pub struct ConfiguredJob<'a, J: Job> {
    job: &'a J,
    queue: Option<String>,
    at: Option<DateTime<Utc>>,
    wait: Option<Duration>,
    dedup: Option<Dedup>,
}

impl<'a, J: Job> ConfiguredJob<'a, J> {
    pub(crate) fn new(job: &'a J) -> Self {
        Self {
            job,
            queue: None,
            at: None,
            wait: None,
            dedup: None,
        }
    }

    /// Runs the job no earlier than `wait` from now.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self.at = None;
        self
    }

    /// Runs the job no earlier than `at`.
    pub fn wait_until(mut self, at: DateTime<Utc>) -> Self {
        self.at = Some(at);
        self.wait = None;
        self
    }

    /// At most one job with this key within 5 minutes: a second enqueue returns the first
    /// job's id and publishes nothing. Needs a job store ([`Client::with_store`]).
    pub fn dedup_key(self, key: impl Into<String>) -> Self {
        self.dedup_key_within(key, DEFAULT_DEDUP_WINDOW)
    }

    /// Like [`ConfiguredJob::dedup_key`] with another window.
    pub fn dedup_key_within(mut self, key: impl Into<String>, window: Duration) -> Self {
        self.dedup = Some(Dedup {
            key: key.into(),
            window,
        });
        self
    }

    /// Publishes to another queue than [`Job::queue`].
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Publishes the job; returns its id once Pub/Sub has accepted the message.
    pub async fn perform_later(self, client: &Client) -> Result<Uuid> {
        let at = match (self.at, self.wait) {
            (Some(at), _) => Some(at),
            (None, Some(w)) => {
                if w >= RETENTION {
                    return Err(Error::DelayTooLong {
                        job_class: J::NAME.to_string(),
                        queue: self.queue.unwrap_or_else(|| self.job.queue().to_string()),
                        delay: w,
                    });
                }
                let w = chrono::Duration::from_std(w)
                    .map_err(|_| Error::Config("wait out of range".into()))?;
                Some(Utc::now() + w)
            }
            (None, None) => None,
        };
        let env = envelope_for(self.job, self.queue.as_deref(), at)?;
        Ok(client.submit(env, self.dedup).await?.job_id)
    }
}
