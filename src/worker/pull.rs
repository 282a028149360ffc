//! Pull: streaming pulls bring messages from a subscription into the worker. Each stream runs in
//! its own task; when a stream ends (network error, emulator restart, subscription deleted) it
//! recreates what is missing and reconnects with backoff, until shutdown.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::broker::{Delivery, DeliveryStream, StreamOptions};
use crate::client::Client;

/// Parameters of one consuming stream.
pub(crate) struct ConsumeParams {
    pub client: Client,
    /// The subscription (prefix included).
    pub subscription: String,
    /// The queue to recreate when the subscription is gone.
    pub queue: String,
    pub options: StreamOptions,
    pub shutdown: CancellationToken,
    /// Counts streams open now, when given.
    pub open_streams: Option<Arc<AtomicU64>>,
}

/// Keeps a count of open streams.
struct OpenGuard(Option<Arc<AtomicU64>>);

impl OpenGuard {
    fn new(counter: &Option<Arc<AtomicU64>>) -> Self {
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::Relaxed);
        }
        Self(counter.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            c.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Feeds every delivery of one stream to `handle` until shutdown. `handle` may wait (that is
/// the backpressure that bounds leased-but-not-running messages); it should return promptly
/// once `shutdown` fires.
///
/// Returns the stream still open: the caller closes it only after it has acked or released what
/// it holds, because the emulator ignores acks and releases of a closed stream's messages.
pub(crate) async fn consume<F, Fut>(
    p: ConsumeParams,
    mut handle: F,
) -> Option<Box<dyn DeliveryStream>>
where
    F: FnMut(Delivery) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut backoff = Duration::from_millis(100);
    let broker = p.client.broker().clone();
    while !p.shutdown.is_cancelled() {
        let mut stream = match broker.subscribe(&p.subscription, p.options.clone()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(subscription = %p.subscription, error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot open a streaming pull; retrying");
                recover(&p, &mut backoff).await;
                continue;
            }
        };
        let _open = OpenGuard::new(&p.open_streams);
        loop {
            let next = tokio::select! {
                _ = p.shutdown.cancelled() => None,
                d = stream.next() => Some(d),
            };
            match next {
                None => return Some(stream),
                Some(None) => {
                    tracing::warn!(subscription = %p.subscription, retry_in_ms = backoff.as_millis() as u64, "streaming pull ended; reconnecting");
                    stream.close().await;
                    recover(&p, &mut backoff).await;
                    break;
                }
                Some(Some(d)) => {
                    backoff = Duration::from_millis(100);
                    handle(d).await;
                    // A stream that always has a message ready (the in-memory broker handing
                    // straight back what a stopping worker releases) must not keep the runtime's
                    // other tasks, the shutdown among them, from running.
                    tokio::task::coop::consume_budget().await;
                }
            }
        }
    }
    None
}

async fn recover(p: &ConsumeParams, backoff: &mut Duration) {
    tokio::select! {
        _ = p.shutdown.cancelled() => return,
        _ = tokio::time::sleep(*backoff) => {}
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(5));
    // The subscription may be gone (emulator restart, deleted by hand). A unary pull tells
    // (no admin call on an ordinary reconnect); only a missing one is created again, by a
    // client that creates queues, and named in an error by one that does not.
    match p.client.check_subscriptions(&p.queue).await {
        Err(e @ crate::Error::QueueMissing { .. }) if p.client.config().create_queues => {
            tracing::warn!(queue = %p.queue, error = %e, "a subscription of the queue is gone; creating it again");
            p.client.forget_resource(&p.client.resource_name(&p.queue));
            p.client
                .forget_resource(&p.client.scheduled_resource_name(&p.queue));
            if let Err(e) = p.client.ensure_queue(&p.queue).await {
                tracing::debug!(queue = %p.queue, error = %e, "could not recreate the queue yet");
            }
        }
        Err(e @ crate::Error::QueueMissing { .. }) => {
            tracing::error!(queue = %p.queue, error = %e, "cannot pull");
        }
        Err(e) if e.broker_code() == Some(crate::error::BrokerCode::PermissionDenied) => {
            tracing::error!(queue = %p.queue, error = %e, "cannot pull");
        }
        Err(e) => tracing::debug!(queue = %p.queue, error = %e, "could not check the queue yet"),
        Ok(()) => {}
    }
}
