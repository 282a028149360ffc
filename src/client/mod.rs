//! The client: the start of a job's life. `perform_later` turns a job into an
//! [`Envelope`](crate::envelope::Envelope), makes sure its queue exists, publishes it, and returns once
//! Pub/Sub has accepted it.
//!
//! Jobs due now go to the queue's topic; jobs with a delay go to the queue's `.scheduled` topic,
//! whose consumer (in every worker) republishes them when due (see the README).
//!
//! One file per step of the one enqueue path: [`config`] (settings), `enqueue` (the ways in:
//! one or many, inside a transaction or not; the store's outbox, dedup), `prepare` (checked once:
//! queue name with its prefix, size with the attributes, the 7-day limit; body, attributes,
//! topic), `batch` (concurrent submits share one store transaction), `publish` (split by bytes
//! and by count; the relay's rows and the worker's retries too), `requeue` (a stored job's second
//! life); this file holds the client itself and its queues.

mod batch;
mod config;
mod enqueue;
mod outbox;
pub(crate) mod prepare;
pub(crate) mod publish;
mod requeue;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::broker::{Broker, DeadLetter, PubSubBroker};
use crate::error::Result;
use crate::queue::SCHEDULED_SUFFIX;
use crate::store::JobStore;

pub use config::{ClientConfig, DEFAULT_MAX_DELIVERY_ATTEMPTS};
pub use enqueue::Submission;
pub use prepare::MAX_MESSAGE_BYTES;

struct Inner {
    broker: Arc<dyn Broker>,
    memory: Option<crate::broker::MemoryBroker>,
    config: ClientConfig,
    ensured: Mutex<HashSet<String>>,
    store: Option<Arc<dyn JobStore>>,
    /// Submits waiting for the next store batch.
    submits: batch::SubmitQueue,
    /// Hooks around enqueues and executions, outermost first.
    middleware: crate::middleware::Chain,
    /// OpenTelemetry spans and trace context on every enqueue and execution.
    traced: bool,
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
        config.validate_queue(&config.morgue_queue)?;
        let broker = PubSubBroker::connect(
            &config.project_id,
            config.emulator_host.as_deref(),
            config.timeout,
        )
        .await?;
        let mut config = config;
        config.project_id = broker.project_id().to_string();
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
                submits: Default::default(),
                middleware: Default::default(),
                traced: false,
            }),
        }
    }

    /// This client with a job store: every enqueue is recorded there before it is published,
    /// and workers built on it record every transition. See [`store`](crate::store).
    pub fn with_store(self, store: Arc<dyn JobStore>) -> Self {
        self.rebuilt(
            Some(store),
            self.inner.middleware.clone(),
            self.inner.traced,
        )
    }

    /// This client with OpenTelemetry on: every enqueue gets a `create` span and carries its
    /// W3C trace context, every publish a `send` span, and a worker built on it runs each job
    /// in a `process` span continuing that trace, and records the messaging metrics. Spans are
    /// `tracing` spans: install `tracing-opentelemetry`'s layer. See [`telemetry`](crate::telemetry).
    #[cfg(feature = "opentelemetry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
    pub fn with_opentelemetry(self) -> Self {
        self.rebuilt(
            self.inner.store.clone(),
            self.inner.middleware.clone(),
            true,
        )
    }

    /// Whether OpenTelemetry is on ([`Client::with_opentelemetry`]).
    #[inline]
    pub(crate) fn traced(&self) -> bool {
        cfg!(feature = "opentelemetry") && self.inner.traced
    }

    /// This client with `middleware` added (innermost: after those given before): it wraps
    /// every enqueue of this client and every execution of a worker built on it. See
    /// [`middleware`](crate::middleware).
    pub fn with_middleware(self, middleware: impl crate::Middleware) -> Self {
        self.with_middleware_arc(Arc::new(middleware))
    }

    /// [`Client::with_middleware`] for a middleware already shared.
    pub fn with_middleware_arc(self, middleware: Arc<dyn crate::Middleware>) -> Self {
        let chain = self.inner.middleware.with(middleware);
        self.rebuilt(self.inner.store.clone(), chain, self.inner.traced)
    }

    /// A client on the same broker and settings (and the queues it already made sure of).
    fn rebuilt(
        &self,
        store: Option<Arc<dyn JobStore>>,
        middleware: crate::middleware::Chain,
        traced: bool,
    ) -> Self {
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
                store,
                submits: Default::default(),
                middleware,
                traced,
            }),
        }
    }

    /// The middleware, outermost first.
    pub(crate) fn middleware(&self) -> &crate::middleware::Chain {
        &self.inner.middleware
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
        self.inner.config.validate_queue(queue)
    }

    async fn ensure_resource(&self, name: &str) -> Result<()> {
        if !self.inner.config.create_queues {
            // No admin call: a missing resource shows as NotFound where it is used.
            return Ok(());
        }
        self.create_resource(name).await
    }

    /// Creates a topic and its subscription of the same name (idempotent, cached per process),
    /// whether or not this client creates queues on its own. A queue's own subscription gets
    /// the dead-letter policy (see [`ClientConfig::max_delivery_attempts`]); the morgue it
    /// points to is created first, with its subscription (a dead-letter topic without one
    /// drops what it receives), and if that fails the queue is created without the policy.
    async fn create_resource(&self, name: &str) -> Result<()> {
        if self.lock_ensured().contains(name) {
            return Ok(());
        }
        let mut dead_letter = self.dead_letter_for(name);
        if let Some(d) = &dead_letter {
            // A broken morgue must not stop enqueues: the queue goes on without the backstop
            // (a subscription that exists keeps whatever policy it has).
            if let Err(e) = self.create_pair(&d.topic, None).await {
                tracing::warn!(
                    subscription = name,
                    morgue = %d.topic,
                    error = %e,
                    "cannot ensure the morgue; a new subscription gets no dead-letter policy (`worker queues setup` adds it)"
                );
                dead_letter = None;
            }
        }
        self.create_pair(name, dead_letter.as_ref()).await
    }

    async fn create_pair(&self, name: &str, dead_letter: Option<&DeadLetter>) -> Result<()> {
        if self.lock_ensured().contains(name) {
            return Ok(());
        }
        let broker = &self.inner.broker;
        let ack_deadline = self.inner.config.ack_deadline;
        broker.create_topic(name).await?;
        match dead_letter {
            Some(d) => {
                broker
                    .create_dead_lettered_subscription(name, name, ack_deadline, d)
                    .await?
            }
            None => broker.create_subscription(name, name, ack_deadline).await?,
        }
        self.lock_ensured().insert(name.to_string());
        Ok(())
    }

    /// The dead-letter policy the subscription `name` should have: a queue's own subscription
    /// sends to the morgue; the `.scheduled` ones and the morgue's get none.
    pub(crate) fn dead_letter_for(&self, name: &str) -> Option<DeadLetter> {
        let config = &self.inner.config;
        let morgue = self.resource_name(&config.morgue_queue);
        let queue = name.strip_prefix(config.topic_prefix.as_str())?;
        let attempts = config.delivery_attempts();
        let wanted = attempts > 0 && name != morgue && !queue.ends_with(SCHEDULED_SUFFIX);
        wanted.then_some(DeadLetter {
            topic: morgue,
            max_delivery_attempts: attempts,
        })
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

    /// True when the queue's subscription exists (creates nothing).
    pub async fn queue_exists(&self, queue: &str) -> Result<bool> {
        self.validate_queue(queue)?;
        self.inner
            .broker
            .subscription_exists(&self.resource_name(queue))
            .await
    }

    /// Creates the morgue's topic and subscription if missing.
    pub async fn ensure_morgue(&self) -> Result<()> {
        self.ensure_resource(&self.resource_name(&self.inner.config.morgue_queue))
            .await
    }

    /// Creates everything `queue` needs (its topic and subscription with the dead-letter policy,
    /// and the `.scheduled` pair; 7-day retention, no expiry; the morgue), and sets the policy on
    /// a subscription that exists without it, even when this client does not create queues on its
    /// own: what `worker queues setup` runs with create rights, ahead of least-privilege workers.
    pub async fn setup_queue(&self, queue: &str) -> Result<()> {
        self.validate_queue(queue)?;
        let main = self.resource_name(queue);
        self.create_resource(&main).await?;
        // One created before the policy existed (or by hand) gets it now.
        if let Some(d) = self.dead_letter_for(&main) {
            self.inner.broker.set_dead_letter(&main, &d).await?;
        }
        self.create_resource(&self.scheduled_resource_name(queue))
            .await
    }

    /// [`setup_queue`](Self::setup_queue) for the morgue.
    pub async fn setup_morgue(&self) -> Result<()> {
        self.create_resource(&self.resource_name(&self.inner.config.morgue_queue))
            .await
    }

    /// The queue a topic or subscription name belongs to (prefix and `.scheduled` taken off).
    pub(crate) fn queue_of(&self, resource: &str) -> String {
        let name = resource
            .strip_prefix(self.inner.config.topic_prefix.as_str())
            .unwrap_or(resource);
        name.strip_suffix(SCHEDULED_SUFFIX)
            .unwrap_or(name)
            .to_string()
    }

    /// Checks, without an admin call, that the subscriptions a worker of `queue` reads exist
    /// (a unary pull: `subscriptions.consume`, which the subscriber role grants; a message it
    /// happens to lease is released at once). Only needed when this client does not create
    /// queues: otherwise the worker creates them.
    pub(crate) async fn check_subscriptions(&self, queue: &str) -> Result<()> {
        for sub in [
            self.resource_name(queue),
            self.scheduled_resource_name(queue),
        ] {
            match self
                .inner
                .broker
                .pull(&sub, 1, std::time::Duration::ZERO)
                .await
            {
                Ok(got) => {
                    let ids: Vec<String> = got.into_iter().map(|d| d.ack_id).collect();
                    if !ids.is_empty() {
                        self.inner.broker.modify_ack_deadline(&sub, ids, 0).await?;
                    }
                }
                Err(e) if e.is_not_found() => {
                    return Err(crate::Error::QueueMissing {
                        queue: queue.to_string(),
                        kind: "subscription",
                        resource: sub,
                    })
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::recording::{Call, RecordingBroker};
    use crate::envelope::Envelope;
    use crate::{Error, Worker, WorkerConfig};

    #[tokio::test]
    async fn without_create_rights_nothing_is_created_and_a_missing_queue_is_named() {
        let broker = RecordingBroker::default();
        let client = Client::with_broker(
            Arc::new(broker.clone()),
            ClientConfig {
                create_queues: false,
                ..ClientConfig::default()
            },
        );
        let env = Envelope::new("J", "billing", serde_json::json!({}));
        let err = client
            .publish_envelopes(vec![env.clone()])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::QueueMissing { queue, kind: "topic", resource } if queue == "billing" && resource == "billing"),
            "{err}"
        );
        assert!(
            err.to_string().contains("worker queues setup billing"),
            "{err}"
        );
        // A worker does not start on a queue that is not there, and says which subscription.
        let refused = Worker::new(client.clone(), WorkerConfig::new("billing"))
            .run(tokio_util::sync::CancellationToken::new())
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, Error::QueueMissing { kind: "subscription", resource, .. } if resource == "billing"),
            "{refused}"
        );
        let admin = |calls: &[Call]| calls.iter().any(|c| matches!(c, Call::Admin(..)));
        assert!(!admin(&broker.calls()), "{:?}", broker.calls());
        // Set up ahead (with create rights): enqueues then publish, with no admin call.
        client.setup_queue("billing").await.unwrap();
        client.setup_morgue().await.unwrap();
        let before = broker.calls().len();
        client.publish_envelopes(vec![env]).await.unwrap();
        let after = broker.calls()[before..].to_vec();
        assert!(!admin(&after), "{after:?}");
        assert!(after
            .iter()
            .any(|c| matches!(c, Call::Publish(t, 1) if t == "billing")));
        client.check_subscriptions("billing").await.unwrap();
    }
}
