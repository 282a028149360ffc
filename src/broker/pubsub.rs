//! [`Broker`] on Google Cloud Pub/Sub (or its emulator) through `gcloud-pubsub` over gRPC.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use gcloud_gax::conn::Environment;
use gcloud_gax::grpc::{Code, Status};
use gcloud_googleapis::pubsub::v1::{
    DeadLetterPolicy, ExpirationPolicy, ModifyAckDeadlineRequest, Subscription,
    UpdateSubscriptionRequest,
};
use gcloud_pubsub::client::{Client as GClient, ClientConfig};
use gcloud_pubsub::subscription::{SeekTo, SubscriptionConfig};
use prost_types::FieldMask;

use super::pubsub_publish::{encode_request, PublishChannels};
use super::pubsub_pull::{connections, PullChannels, StreamingPull};
use super::{Broker, DeadLetter, Delivery, DeliveryStream, OutboundMessage, StreamOptions};
use crate::error::{BrokerCode, Error, Result};

/// How long unacked messages are kept: Pub/Sub's maximum, 7 days.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The project the emulator uses when none is given (any name works there).
pub const EMULATOR_PROJECT: &str = "job-queue";

/// The broker on real Pub/Sub. Cheap to clone.
#[derive(Clone)]
pub struct PubSubBroker {
    client: GClient,
    timeout: Duration,
    project_id: String,
    /// Pulls go over channels of their own, with a larger decode limit.
    pulls: Arc<PullChannels>,
    /// So do publishes, each request encoded once.
    publishes: Arc<PublishChannels>,
}

/// What Application Default Credentials could not do, with what to use instead.
fn credentials_error(e: impl std::fmt::Display) -> Error {
    let message = e.to_string();
    let hint = if message.contains("impersonated_service_account") {
        ": impersonated credentials from `gcloud auth application-default login \
         --impersonate-service-account` are not supported; use the service account's own \
         credentials (GKE Workload Identity or the metadata server, a key file in \
         GOOGLE_APPLICATION_CREDENTIALS), or Workload Identity Federation \
         (an external_account file, with impersonation if needed)"
    } else if message.contains("unsupported account") {
        ": supported are service_account and authorized_user files, external_account \
         (Workload Identity Federation) files, and the metadata server"
    } else {
        ""
    };
    Error::Credentials(format!("{message}{hint}"))
}

/// The project to use: `given` if not empty, else the credentials' own, else
/// `GOOGLE_CLOUD_PROJECT`; on the emulator, [`EMULATOR_PROJECT`] when none is given.
fn resolve_project(
    given: &str,
    from_credentials: Option<&str>,
    emulator: bool,
    google_cloud_project: Option<&str>,
) -> Result<String> {
    let pick = |v: Option<&str>| {
        v.map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    if let Some(p) = pick(Some(given)) {
        return Ok(p);
    }
    if emulator {
        return Ok(EMULATOR_PROJECT.to_string());
    }
    pick(from_credentials)
        .or_else(|| pick(google_cloud_project))
        .ok_or_else(|| {
            Error::Config(
                "no Google Cloud project: set PUBSUB_PROJECT_ID (--project), or \
                 GOOGLE_CLOUD_PROJECT, or use credentials that name one (a service account key, \
                 the metadata server on Google Cloud)"
                    .into(),
            )
        })
}

impl std::fmt::Debug for PubSubBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSubBroker")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

pub(super) fn is_transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::Internal
            | Code::ResourceExhausted
            | Code::Cancelled
    )
}

/// `d` scaled by a random factor in [0.5, 1.5).
pub(super) fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.5 + rand::random::<f64>())
}

fn broker_code(code: Code) -> BrokerCode {
    match code {
        Code::NotFound => BrokerCode::NotFound,
        Code::AlreadyExists => BrokerCode::AlreadyExists,
        Code::InvalidArgument => BrokerCode::InvalidArgument,
        Code::PermissionDenied => BrokerCode::PermissionDenied,
        Code::FailedPrecondition => BrokerCode::FailedPrecondition,
        Code::Unavailable => BrokerCode::Unavailable,
        Code::DeadlineExceeded => BrokerCode::DeadlineExceeded,
        Code::ResourceExhausted => BrokerCode::ResourceExhausted,
        other => BrokerCode::Other(other as i32),
    }
}

fn broker_error(operation: &'static str, resource: &str, status: Status) -> Error {
    let code = broker_code(status.code());
    let mut message = status.message().to_string();
    if code == BrokerCode::PermissionDenied {
        if let Some(needs) = permission_needed(operation) {
            message = format!("{message}; {needs}");
        }
    }
    Error::Broker {
        operation,
        resource: resource.to_string(),
        code,
        message,
    }
}

/// The permission a call needs and the narrowest predefined role that grants it (Pub/Sub's
/// access-control page), for a PERMISSION_DENIED that says what to grant.
pub(crate) fn permission_needed(operation: &str) -> Option<&'static str> {
    Some(match operation {
        "publish" => "publishing needs pubsub.topics.publish on the topic (roles/pubsub.publisher)",
        "pull" | "streaming pull" | "ack" | "modify ack deadline" | "seek" => {
            "consuming needs pubsub.subscriptions.consume on the subscription (roles/pubsub.subscriber)"
        }
        "delete subscription" | "delete topic" => {
            "deleting needs pubsub.subscriptions.delete / pubsub.topics.delete (roles/pubsub.editor)"
        }
        "update subscription" => {
            "changing a subscription needs pubsub.subscriptions.update (roles/pubsub.editor)"
        }
        "get subscription" => {
            "reading a subscription's settings needs pubsub.subscriptions.get (roles/pubsub.viewer)"
        }
        "create topic" => {
            "creating a topic needs pubsub.topics.create (roles/pubsub.editor): create the queues \
             ahead with `worker queues setup Q` and run with PUBSUB_CREATE_QUEUES=false"
        }
        "create subscription" => {
            "creating a subscription needs pubsub.subscriptions.create on the project \
             (roles/pubsub.editor) and pubsub.topics.attachSubscription on the topic: create the \
             queues ahead with `worker queues setup Q` and run with PUBSUB_CREATE_QUEUES=false"
        }
        _ => return None,
    })
}

impl PubSubBroker {
    /// Connects to `project_id`: the emulator at `emulator_host` when given (an empty host
    /// counts as none), otherwise Google Cloud with Application Default Credentials. An empty
    /// `project_id` means the credentials' own project, else `GOOGLE_CLOUD_PROJECT` (on the
    /// emulator, [`EMULATOR_PROJECT`]); none of them is an error. Every call is bounded by
    /// `timeout`.
    pub async fn connect(
        project_id: &str,
        emulator_host: Option<&str>,
        timeout: Duration,
    ) -> Result<Self> {
        let emulator_host = emulator_host.map(str::trim).filter(|h| !h.is_empty());
        // The library's default reads PUBSUB_EMULATOR_HOST itself, an empty one included:
        // what was decided above is what counts.
        let mut config = ClientConfig {
            project_id: None,
            ..ClientConfig::default()
        };
        let project_id = if let Some(host) = emulator_host {
            config.environment = Environment::Emulator(host.to_string());
            resolve_project(project_id, None, true, None)?
        } else {
            config.environment =
                Environment::GoogleCloud(Box::new(token_source::NoopTokenSourceProvider {}));
            config = config.with_auth().await.map_err(credentials_error)?;
            let env_project = std::env::var("GOOGLE_CLOUD_PROJECT").ok();
            resolve_project(
                project_id,
                config.project_id.as_deref(),
                false,
                env_project.as_deref(),
            )?
        };
        config.project_id = Some(project_id.clone());
        let connect_error = |message: String| Error::Connect {
            target: emulator_host
                .map(|h| format!("the emulator {h}"))
                .unwrap_or_else(|| "pubsub.googleapis.com".to_string()),
            message,
        };
        // Our own pulls and publishes each get a pool of channels, as gcloud-pubsub's do.
        let channels = || {
            connections(
                config.pool_size,
                &config.endpoint,
                &config.environment,
                &config.connection_option,
            )
        };
        let pulls = PullChannels::new(channels().await.map_err(|e| connect_error(e.to_string()))?);
        let publishes =
            PublishChannels::new(channels().await.map_err(|e| connect_error(e.to_string()))?);
        let client = GClient::new(config)
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        Ok(Self {
            client,
            timeout,
            project_id,
            pulls: Arc::new(pulls),
            publishes: Arc::new(publishes),
        })
    }

    /// The project this broker talks to (resolved at connect).
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// Runs `op`, retrying transient failures (the service unreachable, restarting, overloaded)
    /// with backoff until the client's timeout; other errors return at once.
    async fn bounded<T, Fut>(
        &self,
        operation: &'static str,
        resource: &str,
        mut op: impl FnMut() -> Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = std::result::Result<T, Status>>,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut backoff = Duration::from_millis(50);
        let timeout = || Error::Timeout {
            operation,
            resource: resource.to_string(),
            after: self.timeout,
        };
        loop {
            match tokio::time::timeout_at(deadline, op()).await {
                Err(_) => return Err(timeout()),
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(status)) if is_transient(status.code()) => {
                    if tokio::time::Instant::now() + backoff >= deadline {
                        return Err(broker_error(operation, resource, status));
                    }
                    tracing::debug!(operation, resource, error = %status.message(), "transient Pub/Sub error; retrying");
                    // Full jitter around the backoff: many workers throttled at once
                    // (RESOURCE_EXHAUSTED) do not come back in step.
                    tokio::time::sleep(jittered(backoff)).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Ok(Err(status)) => return Err(broker_error(operation, resource, status)),
            }
        }
    }

    /// Creates a subscription (7-day retention, no expiry, the dead-letter policy if given);
    /// one that exists is success unless it is detached.
    async fn create_sub(
        &self,
        subscription: &str,
        topic: &str,
        ack_deadline: Duration,
        dead_letter: Option<&DeadLetter>,
    ) -> Result<()> {
        let cfg = SubscriptionConfig {
            ack_deadline_seconds: ack_deadline.as_secs().clamp(10, 600) as i32,
            message_retention_duration: Some(RETENTION),
            expiration_policy: Some(ExpirationPolicy { ttl: None }),
            dead_letter_policy: dead_letter.map(|d| self.dead_letter_policy(d)),
            ..Default::default()
        };
        let client = &self.client;
        let create = || client.create_subscription(subscription, topic, cfg.clone(), None);
        match self
            .bounded("create subscription", subscription, create)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.broker_code() == Some(BrokerCode::AlreadyExists) => {
                // A subscription whose topic was deleted is detached: a topic created again under
                // the same name would not feed it, and what is published there would be dropped.
                let sub = self.client.subscription(subscription);
                let (topic_name, _) = self
                    .bounded("get subscription", subscription, || sub.config(None))
                    .await?;
                if topic_name == "_deleted-topic_" {
                    return Err(Error::Broker {
                        operation: "create subscription",
                        resource: subscription.to_string(),
                        message: format!(
                            "subscription {subscription:?} is detached: its topic was deleted. Messages published to a \
                             new {topic:?} would be dropped, so nothing is published. Drain or delete the subscription, then retry"
                        ),
                        code: BrokerCode::FailedPrecondition,
                    });
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn dead_letter_policy(&self, d: &DeadLetter) -> DeadLetterPolicy {
        DeadLetterPolicy {
            dead_letter_topic: format!("projects/{}/topics/{}", self.project_id, d.topic),
            max_delivery_attempts: d.max_delivery_attempts.clamp(5, 100) as i32,
        }
    }
}

#[async_trait]
impl Broker for PubSubBroker {
    async fn create_topic(&self, topic: &str) -> Result<()> {
        let t = self.client.topic(topic);
        match self
            .bounded("create topic", topic, || t.create(None, None))
            .await
        {
            Err(e) if e.broker_code() == Some(BrokerCode::AlreadyExists) => Ok(()),
            other => other,
        }
    }

    async fn create_subscription(
        &self,
        subscription: &str,
        topic: &str,
        ack_deadline: Duration,
    ) -> Result<()> {
        self.create_sub(subscription, topic, ack_deadline, None)
            .await
    }

    async fn create_dead_lettered_subscription(
        &self,
        subscription: &str,
        topic: &str,
        ack_deadline: Duration,
        dead_letter: &DeadLetter,
    ) -> Result<()> {
        self.create_sub(subscription, topic, ack_deadline, Some(dead_letter))
            .await
    }

    async fn set_dead_letter(&self, subscription: &str, dead_letter: &DeadLetter) -> Result<()> {
        let sub = self.client.subscription(subscription);
        // gcloud-pubsub's `update` leaves this field out of the update mask: the request is
        // ours.
        let req = UpdateSubscriptionRequest {
            subscription: Some(Subscription {
                name: sub.fully_qualified_name().to_string(),
                dead_letter_policy: Some(self.dead_letter_policy(dead_letter)),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["dead_letter_policy".to_string()],
            }),
        };
        let client = sub.get_client();
        self.bounded("update subscription", subscription, || {
            client.update_subscription(req.clone(), None)
        })
        .await
        .map(|_| ())
    }

    async fn delete_pair(&self, name: &str) -> Result<()> {
        let gone = |r: Result<()>| match r {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        };
        let sub = self.client.subscription(name);
        gone(
            self.bounded("delete subscription", name, || sub.delete(None))
                .await,
        )?;
        let topic = self.client.topic(name);
        gone(
            self.bounded("delete topic", name, || topic.delete(None))
                .await,
        )
    }

    async fn subscription_exists(&self, subscription: &str) -> Result<bool> {
        let s = self.client.subscription(subscription);
        self.bounded("get subscription", subscription, || s.exists(None))
            .await
    }

    async fn subscription_settings(
        &self,
        subscription: &str,
    ) -> Result<Option<super::SubscriptionSettings>> {
        let s = self.client.subscription(subscription);
        let (topic, cfg) = match self
            .bounded("get subscription", subscription, || s.config(None))
            .await
        {
            Ok(got) => got,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let short = |name: &str| name.rsplit('/').next().unwrap_or(name).to_string();
        Ok(Some(super::SubscriptionSettings {
            topic: short(&topic),
            retention: cfg.message_retention_duration,
            // No policy: the service's default, 31 days; a policy without a ttl: never.
            expires_after: match cfg.expiration_policy {
                None => Some(Duration::from_secs(31 * 24 * 3600)),
                Some(p) => p
                    .ttl
                    .filter(|t| t.seconds > 0)
                    .map(|t| Duration::from_secs(t.seconds as u64)),
            },
            dead_letter: cfg.dead_letter_policy.map(|d| {
                (
                    short(&d.dead_letter_topic),
                    d.max_delivery_attempts.max(0) as u32,
                )
            }),
        }))
    }

    async fn publish(&self, topic: &str, messages: &[OutboundMessage]) -> Result<Vec<String>> {
        let name = self.client.fully_qualified_topic_name(topic);
        // Encoded once; every attempt sends the same bytes.
        let request = encode_request(&name, messages);
        self.bounded("publish", topic, || {
            self.publishes.publish(&name, request.clone())
        })
        .await
    }

    async fn subscribe(
        &self,
        subscription: &str,
        options: StreamOptions,
    ) -> Result<Box<dyn DeliveryStream>> {
        let name = self.client.subscription(subscription);
        Ok(Box::new(StreamingPull::new(
            self.pulls.clone(),
            name.fully_qualified_name().to_string(),
            options,
        )))
    }

    async fn pull(&self, subscription: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        let sub = self.client.subscription(subscription);
        let name = sub.fully_qualified_name();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msgs = self
                .bounded("pull", subscription, || self.pulls.pull(name, max))
                .await?;
            if !msgs.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(msgs);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn ack(&self, subscription: &str, ack_ids: Vec<String>) -> Result<()> {
        let sub = self.client.subscription(subscription);
        for chunk in ack_ids.chunks(1000) {
            self.bounded("ack", subscription, || sub.ack(chunk.to_vec()))
                .await?;
        }
        Ok(())
    }

    async fn modify_ack_deadline(
        &self,
        subscription: &str,
        ack_ids: Vec<String>,
        seconds: i32,
    ) -> Result<()> {
        let sub = self.client.subscription(subscription);
        let client = sub.get_client();
        for chunk in ack_ids.chunks(1000) {
            let req = ModifyAckDeadlineRequest {
                subscription: sub.fully_qualified_name().to_string(),
                ack_ids: chunk.to_vec(),
                ack_deadline_seconds: seconds,
            };
            self.bounded("modify ack deadline", subscription, || {
                client.modify_ack_deadline(req.clone(), None)
            })
            .await?;
        }
        Ok(())
    }

    async fn seek_to_now(&self, subscription: &str) -> Result<()> {
        let sub = self.client.subscription(subscription);
        self.bounded("seek", subscription, || {
            sub.seek(SeekTo::Timestamp(SystemTime::now()), None)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_project_comes_from_the_setting_then_the_credentials_then_the_environment() {
        let r = |given, creds, emulator, env| resolve_project(given, creds, emulator, env);
        assert_eq!(
            r("mine", Some("theirs"), false, Some("env")).unwrap(),
            "mine"
        );
        assert_eq!(r("", Some("theirs"), false, Some("env")).unwrap(), "theirs");
        assert_eq!(r(" ", None, false, Some("env")).unwrap(), "env");
        assert_eq!(r("", None, true, Some("env")).unwrap(), EMULATOR_PROJECT);
        let err = r("", None, false, Some("")).unwrap_err().to_string();
        assert!(
            err.contains("PUBSUB_PROJECT_ID") && err.contains("GOOGLE_CLOUD_PROJECT"),
            "{err}"
        );
    }

    #[test]
    fn permission_denied_names_the_permission_and_the_role() {
        let denied = || Status::new(Code::PermissionDenied, "User not authorized");
        let err = broker_error("create topic", "q", denied()).to_string();
        assert!(
            err.contains("pubsub.topics.create")
                && err.contains("roles/pubsub.editor")
                && err.contains("worker queues setup")
                && err.contains("PUBSUB_CREATE_QUEUES=false"),
            "{err}"
        );
        let err = broker_error("publish", "q", denied()).to_string();
        assert!(
            err.contains("pubsub.topics.publish") && err.contains("roles/pubsub.publisher"),
            "{err}"
        );
        for op in ["pull", "ack", "modify ack deadline", "seek"] {
            let err = broker_error(op, "q", denied()).to_string();
            assert!(err.contains("roles/pubsub.subscriber"), "{op}: {err}");
        }
        let err = broker_error("get subscription", "q", denied()).to_string();
        assert!(err.contains("roles/pubsub.viewer"), "{err}");
        // Other codes are left as they are.
        let err = broker_error("publish", "q", Status::new(Code::NotFound, "no topic")).to_string();
        assert!(!err.contains("roles/"), "{err}");
    }

    #[test]
    fn unsupported_credentials_say_what_to_use_instead() {
        let err = credentials_error("unsupported account impersonated_service_account").to_string();
        assert!(err.contains("Workload Identity"), "{err}");
        let err = credentials_error("unsupported account gdch_service_account").to_string();
        assert!(err.contains("external_account"), "{err}");
    }
}
