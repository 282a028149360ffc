//! Pulling from Pub/Sub on our own gRPC channel: streaming pull and unary pull.
//!
//! `gcloud-pubsub` decodes responses up to 10 MiB, a constant it does not let us change. A
//! response carries several messages, so a few large ones (the service takes messages up to
//! 10 MB) exceed it: the stream fails, what the response leased is delivered to nobody and comes
//! back after its lease in the same batch, forever. Google's own clients accept responses up to
//! 20 MiB, the service's largest; so do these pulls. Publishing is ours too
//! (`pubsub_publish.rs`); acks and admin calls stay on `gcloud-pubsub`.

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use gcloud_gax::conn::{Channel, ConnectionManager, ConnectionOptions, Environment};
use gcloud_gax::grpc::{Code, IntoStreamingRequest, Status, Streaming};
use gcloud_googleapis::pubsub::v1::subscriber_client::SubscriberClient;
use gcloud_googleapis::pubsub::v1::{
    ModifyAckDeadlineRequest, PullRequest, PullResponse, ReceivedMessage, StreamingPullRequest,
    StreamingPullResponse,
};

use super::pubsub::is_transient;
use super::{Delivery, DeliveryStream, StreamOptions};

/// The largest response a pull decodes: what Google's clients allow. The service and the
/// emulator fill a response up to about 10 MB and then add at most one more message, so a
/// response stays under 20 MB.
pub const MAX_RESPONSE_BYTES: usize = 20 * 1024 * 1024;

/// How often an open stream sends an empty request, so that idle streams stay up.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// gRPC channels for pulls, with their own decode limit.
#[derive(Debug)]
pub(super) struct PullChannels {
    conns: ConnectionManager,
    max_response: usize,
}

impl PullChannels {
    /// Pulls over `conns` (see [`connections`]).
    pub(super) fn new(conns: ConnectionManager) -> Self {
        Self {
            conns,
            max_response: MAX_RESPONSE_BYTES,
        }
    }

    fn client(&self) -> SubscriberClient<Channel> {
        SubscriberClient::new(self.conns.conn())
            .max_decoding_message_size(self.max_response)
            .max_encoding_message_size(self.max_response)
    }

    /// One unary pull of `subscription` (its full name).
    pub(super) async fn pull(
        &self,
        subscription: &str,
        max: usize,
    ) -> Result<Vec<Delivery>, Status> {
        #[allow(deprecated)]
        let req = PullRequest {
            subscription: subscription.to_string(),
            // Never leave a pull pending: an abandoned one would lease messages to nobody.
            return_immediately: true,
            max_messages: max.clamp(1, 1000) as i32,
        };
        let request = with_routing(subscription, req);
        let resp: PullResponse = self.client().pull(request).await?.into_inner();
        Ok(deliveries(resp.received_messages).collect())
    }

    /// Releases messages at once (a lease of 0 s).
    async fn release(&self, subscription: &str, ack_ids: Vec<String>) -> Result<(), Status> {
        for chunk in ack_ids.chunks(1000) {
            let req = ModifyAckDeadlineRequest {
                subscription: subscription.to_string(),
                ack_ids: chunk.to_vec(),
                ack_deadline_seconds: 0,
            };
            self.client()
                .modify_ack_deadline(with_routing(subscription, req))
                .await?;
        }
        Ok(())
    }
}

/// A pool of `pool_size` gRPC channels to the same place as the `gcloud-pubsub` client with
/// `environment` (for our own pulls and publishes).
pub(super) async fn connections(
    pool_size: usize,
    domain: &str,
    environment: &Environment,
    options: &ConnectionOptions,
) -> Result<ConnectionManager, gcloud_gax::conn::Error> {
    let audience = format!("https://{domain}/");
    ConnectionManager::new(pool_size, domain, &audience, environment, options).await
}

/// The routing header the service expects on every subscription call.
fn with_routing<T>(subscription: &str, req: T) -> gcloud_gax::grpc::Request<T> {
    gcloud_gax::create_request(format!("subscription={subscription}"), req)
}

fn deliveries(received: Vec<ReceivedMessage>) -> impl Iterator<Item = Delivery> {
    received.into_iter().filter_map(|m| {
        let msg = m.message?;
        Some(Delivery {
            ack_id: m.ack_id,
            message_id: msg.message_id,
            data: msg.data,
            attributes: msg.attributes,
        })
    })
}

/// What a refused stream needs, when the refusal is a missing permission.
fn needs(status: &Status) -> &'static str {
    match status.code() {
        Code::PermissionDenied => super::pubsub::permission_needed("streaming pull").unwrap_or(""),
        _ => "",
    }
}

/// One streaming pull. It opens on the first [`DeliveryStream::next`] (a server may send no
/// response headers before its first message, so opening must be cancellable like a read),
/// reconnects by itself after transient errors and the server's routine closes, and ends on
/// anything else (the subscription gone, permission denied).
pub(super) struct StreamingPull {
    channels: std::sync::Arc<PullChannels>,
    subscription: String,
    options: StreamOptions,
    stream: Option<Streaming<StreamingPullResponse>>,
    /// Received, not yet handed out: released on close.
    buffered: VecDeque<Delivery>,
    backoff: Duration,
    ended: bool,
    /// This stream's own id, the same across its reconnects, so that the service can hand the
    /// old stream's state to the new one; the API asks that no two client instances share one.
    client_id: String,
}

impl StreamingPull {
    pub(super) fn new(
        channels: std::sync::Arc<PullChannels>,
        subscription: String,
        options: StreamOptions,
    ) -> Self {
        Self {
            channels,
            subscription,
            options,
            stream: None,
            buffered: VecDeque::new(),
            backoff: Duration::from_millis(50),
            ended: false,
            client_id: format!("pubsub-jobs-{:016x}", rand::random::<u64>()),
        }
    }

    async fn open(&self) -> Result<Streaming<StreamingPullResponse>, Status> {
        let first = StreamingPullRequest {
            subscription: self.subscription.clone(),
            stream_ack_deadline_seconds: self.options.ack_deadline.as_secs().clamp(10, 600) as i32,
            max_outstanding_messages: self.options.max_outstanding,
            client_id: self.client_id.clone(),
            ..Default::default()
        };
        let keepalive = futures::stream::unfold((), |()| async {
            tokio::time::sleep(KEEPALIVE).await;
            Some((StreamingPullRequest::default(), ()))
        });
        let requests = futures::stream::once(async move { first }).chain(keepalive);
        let mut request = requests.into_streaming_request();
        if let Ok(v) = format!("subscription={}", self.subscription).parse() {
            request.metadata_mut().append("x-goog-request-params", v);
        }
        Ok(self
            .channels
            .client()
            .streaming_pull(request)
            .await?
            .into_inner())
    }

    /// Waits before reconnecting: jittered, doubling up to 5 s.
    async fn pause(&mut self) {
        tokio::time::sleep(super::pubsub::jittered(self.backoff)).await;
        self.backoff = (self.backoff * 2).min(Duration::from_secs(5));
    }
}

#[async_trait]
impl DeliveryStream for StreamingPull {
    async fn next(&mut self) -> Option<Delivery> {
        loop {
            if let Some(d) = self.buffered.pop_front() {
                return Some(d);
            }
            if self.ended {
                return None;
            }
            let Some(stream) = self.stream.as_mut() else {
                match self.open().await {
                    Ok(s) => self.stream = Some(s),
                    Err(status) if is_transient(status.code()) => {
                        tracing::debug!(subscription = %self.subscription, error = %status.message(), "cannot open a streaming pull yet");
                        self.pause().await;
                    }
                    Err(status) => {
                        tracing::warn!(subscription = %self.subscription, code = ?status.code(), error = %status.message(), needs = needs(&status), "streaming pull refused");
                        self.ended = true;
                    }
                }
                continue;
            };
            match stream.message().await {
                Ok(Some(resp)) => {
                    self.backoff = Duration::from_millis(50);
                    self.buffered.extend(deliveries(resp.received_messages));
                }
                // The service ends every stream now and then; a new one picks up.
                Ok(None) => self.stream = None,
                Err(status) if is_transient(status.code()) => {
                    tracing::debug!(subscription = %self.subscription, error = %status.message(), "streaming pull interrupted; reopening");
                    self.stream = None;
                    self.pause().await;
                }
                Err(status) => {
                    tracing::warn!(subscription = %self.subscription, code = ?status.code(), error = %status.message(), needs = needs(&status), "streaming pull ended");
                    self.stream = None;
                    self.ended = true;
                }
            }
        }
    }

    async fn close(mut self: Box<Self>) {
        // Released while the stream is still open (the emulator ignores releases of a closed
        // stream's messages); dropping the stream then ends it.
        let held: Vec<String> = self.buffered.drain(..).map(|d| d.ack_id).collect();
        if !held.is_empty() {
            let n = held.len();
            if let Err(e) = self.channels.release(&self.subscription, held).await {
                tracing::debug!(subscription = %self.subscription, error = %e.message(), "could not release {n} unhandled messages; they come back when their lease ends");
            }
        }
        self.stream = None;
    }
}
