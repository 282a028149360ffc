//! Publishing to Pub/Sub on our own gRPC channel: each request is encoded once, straight from
//! the caller's messages, and a retry sends the same bytes again.
//!
//! `gcloud-pubsub`'s `publish_immediately` takes its messages by value and clones the whole
//! request for every attempt, so a caller that must keep its messages for a retry of its own (a
//! topic created again, a transient error past the library's retries) copied every body and
//! attribute twice before a byte was sent. Here the request is encoded from borrowed messages
//! into one buffer that every attempt shares.

use gcloud_gax::conn::{Channel, ConnectionManager};
use gcloud_gax::grpc::client::Grpc;
use gcloud_gax::grpc::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use gcloud_gax::grpc::codegen::http::uri::PathAndQuery;
use gcloud_gax::grpc::codegen::Bytes;
use gcloud_gax::grpc::{Request, Status};
use gcloud_googleapis::pubsub::v1::PublishResponse;
use prost::encoding::{self, WireType};
use prost::Message;

use super::OutboundMessage;

const PUBLISH: &str = "/google.pubsub.v1.Publisher/Publish";

/// gRPC channels for publishing.
#[derive(Debug)]
pub(super) struct PublishChannels {
    conns: ConnectionManager,
}

impl PublishChannels {
    /// Publishes over `conns` (see `pubsub_pull::connections`).
    pub(super) fn new(conns: ConnectionManager) -> Self {
        Self { conns }
    }

    /// Sends one encoded publish request (see [`encode_request`]) to `topic` (its full name);
    /// returns the message ids.
    pub(super) async fn publish(&self, topic: &str, request: Bytes) -> Result<Vec<String>, Status> {
        let mut grpc: Grpc<Channel> = Grpc::new(self.conns.conn());
        grpc.ready()
            .await
            .map_err(|e| Status::unknown(format!("the channel is not ready: {e}")))?;
        let request = gcloud_gax::create_request(format!("topic={topic}"), Request::new(request));
        let response = grpc
            .unary(request, PathAndQuery::from_static(PUBLISH), PublishCodec)
            .await?;
        Ok(response.into_inner().message_ids)
    }
}

/// A `PublishRequest` for `topic` (its full name) holding `messages`, in protobuf's wire format:
/// what `gcloud_googleapis::pubsub::v1::PublishRequest::encode_to_vec` gives for the same
/// request, written without building it.
pub(super) fn encode_request(topic: &str, messages: &[OutboundMessage]) -> Bytes {
    let topic = topic.to_string();
    let lens: Vec<usize> = messages.iter().map(message_len).collect();
    let total = encoding::string::encoded_len(1, &topic)
        + lens
            .iter()
            .map(|len| encoding::key_len(2) + encoding::encoded_len_varint(*len as u64) + len)
            .sum::<usize>();
    let mut buf = Vec::with_capacity(total);
    encoding::string::encode(1, &topic, &mut buf);
    for (m, len) in messages.iter().zip(lens) {
        encoding::encode_key(2, WireType::LengthDelimited, &mut buf);
        encoding::encode_varint(len as u64, &mut buf);
        if !m.data.is_empty() {
            encoding::bytes::encode(1, &m.data, &mut buf);
        }
        encoding::hash_map::encode(
            encoding::string::encode,
            encoding::string::encoded_len,
            encoding::string::encode,
            encoding::string::encoded_len,
            2,
            &m.attributes,
            &mut buf,
        );
    }
    Bytes::from(buf)
}

/// The encoded length of one `PubsubMessage` with `m`'s body and attributes.
fn message_len(m: &OutboundMessage) -> usize {
    let data = if m.data.is_empty() {
        0
    } else {
        encoding::bytes::encoded_len(1, &m.data)
    };
    data + encoding::hash_map::encoded_len(
        encoding::string::encoded_len,
        encoding::string::encoded_len,
        2,
        &m.attributes,
    )
}

/// Sends an already encoded request; decodes the response.
#[derive(Clone, Copy, Debug, Default)]
struct PublishCodec;

impl Codec for PublishCodec {
    type Encode = Bytes;
    type Decode = PublishResponse;
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for PublishCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        bytes::BufMut::put(dst, item);
        Ok(())
    }
}

impl Decoder for PublishCodec {
    type Item = PublishResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<PublishResponse>, Status> {
        PublishResponse::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("cannot decode the publish response: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use gcloud_googleapis::pubsub::v1::{PublishRequest, PubsubMessage};

    use super::*;

    #[test]
    fn a_request_encodes_as_prost_encodes_it() {
        let messages = vec![
            OutboundMessage {
                data: br#"{"job_class":"A"}"#.to_vec(),
                attributes: HashMap::from([
                    ("job_class".to_string(), "A".to_string()),
                    ("queue".to_string(), "default".to_string()),
                ]),
            },
            OutboundMessage::default(),
            OutboundMessage {
                data: vec![7; 300],
                attributes: HashMap::new(),
            },
        ];
        let topic = "projects/p/topics/default";
        let ours = encode_request(topic, &messages);
        let decoded = PublishRequest::decode(ours.clone()).expect("decodes");
        let expected = PublishRequest {
            topic: topic.to_string(),
            messages: messages
                .iter()
                .map(|m| PubsubMessage {
                    data: m.data.clone(),
                    attributes: m.attributes.clone(),
                    ..Default::default()
                })
                .collect(),
        };
        assert_eq!(decoded, expected);
        assert_eq!(ours.len(), expected.encoded_len());
        // The first message's attributes may be in another order; the others are byte-equal.
        let one = encode_request(topic, &messages[1..]);
        let theirs = PublishRequest {
            messages: expected.messages[1..].to_vec(),
            ..expected
        };
        assert_eq!(&one[..], &theirs.encode_to_vec()[..]);
    }
}
