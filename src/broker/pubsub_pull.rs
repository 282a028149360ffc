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
use gcloud_gax::grpc::client::Grpc;
use gcloud_gax::grpc::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use gcloud_gax::grpc::codegen::http::uri::PathAndQuery;
use gcloud_gax::grpc::{Code, IntoStreamingRequest, Status, Streaming};
use gcloud_googleapis::pubsub::v1::subscriber_client::SubscriberClient;
use gcloud_googleapis::pubsub::v1::{ModifyAckDeadlineRequest, PullRequest, StreamingPullRequest};
use prost::bytes::Buf;
use prost::encoding::{self, DecodeContext, WireType};
use prost::Message;

use super::pubsub::is_transient;
use super::{Delivery, DeliveryStream, StreamOptions};

/// The largest response a pull decodes: what Google's clients allow. The service and the
/// emulator fill a response up to about 10 MB and then add at most one more message, so a
/// response stays under 20 MB.
pub const MAX_RESPONSE_BYTES: usize = 20 * 1024 * 1024;

const PULL: &str = "/google.pubsub.v1.Subscriber/Pull";
const STREAMING_PULL: &str = "/google.pubsub.v1.Subscriber/StreamingPull";

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
        let mut grpc = self.grpc().await?;
        let resp = grpc
            .unary(
                request,
                PathAndQuery::from_static(PULL),
                PullCodec::<PullRequest>::new(),
            )
            .await?;
        Ok(resp.into_inner().0)
    }

    /// A gRPC client for our own codec, with the decode limit.
    async fn grpc(&self) -> Result<Grpc<Channel>, Status> {
        let mut grpc = Grpc::new(self.conns.conn())
            .max_decoding_message_size(self.max_response)
            .max_encoding_message_size(self.max_response);
        grpc.ready()
            .await
            .map_err(|e| Status::unknown(format!("the channel is not ready: {e}")))?;
        Ok(grpc)
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
    stream: Option<Streaming<Deliveries>>,
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

    async fn open(&self) -> Result<Streaming<Deliveries>, Status> {
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
        let mut grpc = self.channels.grpc().await?;
        let codec = PullCodec::<StreamingPullRequest>::new();
        Ok(grpc
            .streaming(request, PathAndQuery::from_static(STREAMING_PULL), codec)
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
                Ok(Some(Deliveries(received))) => {
                    self.backoff = Duration::from_millis(50);
                    if self.buffered.is_empty() {
                        self.buffered = received.into();
                    } else {
                        self.buffered.extend(received);
                    }
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

/// The messages of a pull's response (`PullResponse` or `StreamingPullResponse`: both hold
/// them in field 1), decoded straight into deliveries.
#[derive(Debug, Default)]
pub(super) struct Deliveries(pub Vec<Delivery>);

/// Encodes a pull request with prost; decodes the response into [`Deliveries`].
struct PullCodec<Req>(std::marker::PhantomData<fn(Req)>);

impl<Req> PullCodec<Req> {
    fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<Req: Message + 'static> Codec for PullCodec<Req> {
    type Encode = Req;
    type Decode = Deliveries;
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self::Encoder {
        Self::new()
    }

    fn decoder(&mut self) -> Self::Decoder {
        Self::new()
    }
}

impl<Req: Message> Encoder for PullCodec<Req> {
    type Item = Req;
    type Error = Status;

    fn encode(&mut self, item: Req, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("cannot encode the pull request: {e}")))
    }
}

impl<Req> Decoder for PullCodec<Req> {
    type Item = Deliveries;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Deliveries>, Status> {
        decode_deliveries(src)
            .map(|d| Some(Deliveries(d)))
            .map_err(|e| Status::internal(format!("cannot decode the pull response: {e}")))
    }
}

/// The received messages of a pull response, as deliveries: the fields a worker uses and
/// nothing else (the publish time, ordering key, delivery attempt and the stream's
/// confirmations and properties are skipped, not decoded), with no message decoded twice or
/// moved from one type into another. A received message without a message is skipped.
fn decode_deliveries(buf: &mut impl Buf) -> Result<Vec<Delivery>, prost::DecodeError> {
    let ctx = DecodeContext::default();
    let mut out = Vec::new();
    while buf.has_remaining() {
        let (tag, wire_type) = encoding::decode_key(buf)?;
        if tag != 1 {
            encoding::skip_field(wire_type, tag, buf, ctx.clone())?;
            continue;
        }
        encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
        let mut received = Received::default();
        encoding::merge_loop(&mut received, buf, ctx.clone(), |r, buf, ctx| {
            let (tag, wire_type) = encoding::decode_key(buf)?;
            match tag {
                1 => encoding::string::merge(wire_type, &mut r.ack_id, buf, ctx),
                2 => {
                    encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
                    r.has_message = true;
                    encoding::merge_loop(&mut r.message, buf, ctx, merge_message)
                }
                _ => encoding::skip_field(wire_type, tag, buf, ctx),
            }
        })?;
        if received.has_message {
            let Received {
                ack_id,
                message: (message_id, data, attributes),
                ..
            } = received;
            out.push(Delivery {
                ack_id,
                message_id,
                data,
                attributes,
            });
        }
    }
    Ok(out)
}

/// One `ReceivedMessage` while it is decoded.
#[derive(Default)]
struct Received {
    ack_id: String,
    has_message: bool,
    /// The message id, the body and the attributes.
    message: (String, Vec<u8>, std::collections::HashMap<String, String>),
}

/// One field of a `PubsubMessage`.
fn merge_message(
    (message_id, data, attributes): &mut (
        String,
        Vec<u8>,
        std::collections::HashMap<String, String>,
    ),
    buf: &mut impl Buf,
    ctx: DecodeContext,
) -> Result<(), prost::DecodeError> {
    let (tag, wire_type) = encoding::decode_key(buf)?;
    match tag {
        1 => encoding::bytes::merge(wire_type, data, buf, ctx),
        2 => {
            if attributes.capacity() == 0 {
                // Ours carry four: one allocation, not a few growing ones.
                attributes.reserve(4);
            }
            encoding::hash_map::merge(
                encoding::string::merge,
                encoding::string::merge,
                attributes,
                buf,
                ctx,
            )
        }
        3 => encoding::string::merge(wire_type, message_id, buf, ctx),
        _ => encoding::skip_field(wire_type, tag, buf, ctx),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use gcloud_googleapis::pubsub::v1::{
        streaming_pull_response::{AcknowledgeConfirmation, SubscriptionProperties},
        PubsubMessage, PullResponse, ReceivedMessage, StreamingPullResponse,
    };
    use prost::Message;

    use super::*;

    fn received(i: usize) -> ReceivedMessage {
        ReceivedMessage {
            ack_id: format!("ack-{i}"),
            message: Some(PubsubMessage {
                data: if i == 1 {
                    Vec::new()
                } else {
                    format!("body {i} é").into_bytes()
                },
                attributes: (0..i % 5)
                    .map(|k| (format!("k{k}"), format!("v{k}-{i}")))
                    .collect(),
                message_id: format!("m{i}"),
                publish_time: Some(prost_types::Timestamp {
                    seconds: 1_700_000_000 + i as i64,
                    nanos: 7,
                }),
                ordering_key: if i.is_multiple_of(2) {
                    "key".into()
                } else {
                    String::new()
                },
            }),
            delivery_attempt: i as i32,
        }
    }

    type Fields = (String, String, Vec<u8>, HashMap<String, String>);

    fn expected(messages: &[ReceivedMessage]) -> Vec<Fields> {
        messages
            .iter()
            .filter_map(|m| {
                let msg = m.message.clone()?;
                Some((m.ack_id.clone(), msg.message_id, msg.data, msg.attributes))
            })
            .collect()
    }

    fn decoded(bytes: &[u8]) -> Result<Vec<Fields>, prost::DecodeError> {
        let mut buf = bytes;
        Ok(decode_deliveries(&mut buf)?
            .into_iter()
            .map(|d| (d.ack_id, d.message_id, d.data, d.attributes))
            .collect())
    }

    #[test]
    fn responses_decode_into_the_deliveries_prost_would_give() {
        let mut messages: Vec<ReceivedMessage> = (0..12).map(received).collect();
        messages.push(ReceivedMessage {
            ack_id: "no message".into(),
            message: None,
            delivery_attempt: 0,
        });
        let streaming = StreamingPullResponse {
            received_messages: messages.clone(),
            acknowledge_confirmation: Some(AcknowledgeConfirmation {
                ack_ids: vec!["a".into()],
                invalid_ack_ids: vec!["b".into()],
                ..Default::default()
            }),
            subscription_properties: Some(SubscriptionProperties {
                exactly_once_delivery_enabled: true,
                message_ordering_enabled: true,
            }),
            ..Default::default()
        };
        let want = expected(&messages);
        assert_eq!(want.len(), 12);
        assert_eq!(decoded(&streaming.encode_to_vec()).unwrap(), want);
        let unary = PullResponse {
            received_messages: messages,
        };
        assert_eq!(decoded(&unary.encode_to_vec()).unwrap(), want);
        assert_eq!(decoded(b"").unwrap(), Vec::new());
        assert!(want[0].3.is_empty() && want[4].3.len() == 4);
    }

    #[test]
    fn a_cut_response_is_an_error_not_fewer_messages() {
        let response = PullResponse {
            received_messages: (0..3).map(received).collect(),
        };
        let bytes = response.encode_to_vec();
        for cut in [1, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                decoded(&bytes[..cut]).is_err(),
                "cut at {cut} of {}",
                bytes.len()
            );
        }
    }
}
