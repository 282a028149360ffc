//! Dispatch: a pulled message becomes a job. The envelope is decoded and checked, the class
//! looked up in the registry, the arguments deserialized; a message that cannot run goes to the
//! morgue with the reason, a job not yet due goes back to the scheduled topic, and the rest is
//! performed and handed to its outcome.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use futures::FutureExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{field, Instrument};

use super::outcome;
use super::Shared;
use crate::broker::{Delivery, OutboundMessage};
use crate::envelope::{Envelope, ReceivedEnvelope};
use crate::job::JobContext;
use crate::store::{Start, StartOutcome};

/// The concurrency slot a job runs in, and the pipeline its outcome is settled in.
pub(crate) struct Slot {
    /// The job's place among the `concurrency` jobs performing at once.
    pub running: OwnedSemaphorePermit,
    /// The jobs whose outcome is being recorded and acked, at most `concurrency`: taken before
    /// the running slot is given back, so a slow store holds new jobs back instead of piling
    /// up finished ones.
    pub settling: Arc<Semaphore>,
}

impl Slot {
    /// `perform` has returned: move to the settling stage and free the slot for the next job
    /// (recording the outcome and acking it do not hold up the next job's start).
    async fn settle(self) -> Option<OwnedSemaphorePermit> {
        let permit = self.settling.acquire_owned().await.ok();
        drop(self.running);
        permit
    }
}

/// Processes one delivery inside the job's span (`job_id`, `job_class`, `queue`, `attempt`):
/// every log line of the job's life carries those fields from it.
///
/// Nothing that happens here can leave the message held: a panic outside `perform` (which
/// catches its own) in a job type's `Deserialize`, a store adapter or our own code is caught
/// here, and a message not yet settled is sent to the morgue with the panic as the reason.
/// Without this, the lease keeper would extend its lease for as long as the worker runs, and
/// on Pub/Sub it would count against flow control for good.
pub(crate) async fn process(shared: Arc<Shared>, mut d: Delivery, slot: Slot) {
    let dispatched = AssertUnwindSafe(dispatch(&shared, &mut d, slot))
        .catch_unwind()
        .await;
    if let Err(payload) = dispatched {
        let reason = format!(
            "the worker panicked while handling this message: {}",
            super::perform::panic_message(payload)
        );
        Box::pin(after_panic(&shared, d, reason)).await;
    }
}

/// A panic in dispatch: the message goes to the morgue with the reason if nothing settled it
/// (the lease keeper still holds it). If even that panics, it is released to come back in
/// ten minutes rather than held.
async fn after_panic(shared: &Shared, mut d: Delivery, reason: String) {
    if !shared.lease.holds(&d.ack_id) {
        tracing::error!(
            message_id = %d.message_id,
            error = %reason,
            "a panic after the message was settled (acked or released); nothing more to do"
        );
        return;
    }
    // The envelope again (decoding does not panic; if it did, the record is made from the body),
    // so that a store records the job as morgued. A body already moved into a morgue record is
    // empty here: the record then comes from the message's attributes.
    let env = std::panic::catch_unwind(|| Envelope::decode(&d.data, &d.attributes))
        .ok()
        .and_then(Result::ok);
    let span = job_span(shared, &d, env.as_ref());
    async {
        tracing::error!(message_id = %d.message_id, error = %reason, "dispatch panicked");
        let morgued = AssertUnwindSafe(outcome::morgue_unrunnable(shared, &mut d, env.as_ref(), reason))
            .catch_unwind()
            .await;
        if morgued.is_err() && shared.lease.holds(&d.ack_id) {
            tracing::error!(
                message_id = %d.message_id,
                "sending the message to the morgue panicked too; it is released and comes back in 600 s"
            );
            shared.lease.forget(&d.ack_id);
            shared.acker.set_deadline(d.ack_id.clone(), 600);
        }
    }
    .instrument(span)
    .await
}

/// The job's span, with every field at once (recording them one by one later costs a pass
/// each). Without an envelope the morgue path fills in what the message says of the job. With
/// OpenTelemetry on, it is the execution's `process` span, made by `telemetry::process_span`.
fn job_span<A>(shared: &Shared, d: &Delivery, env: Option<&Envelope<A>>) -> tracing::Span {
    #[cfg(feature = "opentelemetry")]
    if shared.client.traced() {
        return crate::telemetry::process_span(&shared.queue, &d.message_id, &d.attributes, env);
    }
    #[cfg(not(feature = "opentelemetry"))]
    let _ = d;
    match env {
        Some(env) => tracing::info_span!(
            "job",
            job_id = %env.job_id,
            job_class = env.job_class.as_str(),
            queue = %shared.queue,
            attempt = env.attempt(),
        ),
        None => tracing::info_span!(
            "job",
            job_id = field::Empty,
            job_class = field::Empty,
            queue = %shared.queue,
            attempt = field::Empty,
        ),
    }
}

async fn dispatch(shared: &Arc<Shared>, d: &mut Delivery, slot: Slot) {
    #[cfg(feature = "opentelemetry")]
    if shared.client.traced() {
        crate::telemetry::consumed(&shared.queue);
    }
    match ReceivedEnvelope::decode_received(&d.data, &d.attributes) {
        Ok(env) => {
            let span = job_span(shared, d, Some(&env));
            run(shared, d, env, slot).instrument(span).await
        }
        Err(e) => {
            let span = job_span::<()>(shared, d, None);
            let unrunnable = async {
                outcome::morgue_unrunnable::<()>(shared, d, None, e.to_string()).await;
                drop(slot);
            };
            unrunnable.instrument(span).await
        }
    }
}

/// The paths a job that runs and succeeds does not take (parking it, the morgue, a job store's
/// start) are boxed: their futures would otherwise make every job's future, which is copied
/// into its task, several times larger.
async fn run(shared: &Arc<Shared>, d: &mut Delivery, env: ReceivedEnvelope, slot: Slot) {
    if let Some(at) = env.scheduled_at {
        if at > Utc::now() {
            // Not due (published straight to the queue, or a clock ahead of ours): park it.
            let topic = shared.client.scheduled_resource_name(&shared.queue);
            let msg = OutboundMessage {
                data: std::mem::take(&mut d.data),
                attributes: env.attributes(),
            };
            return Box::pin(outcome::forward(shared, d, &topic, msg)).await;
        }
    }
    let Some(reg) = shared.registry.get(&env.job_class) else {
        let reason = format!(
            "unknown job class {:?}: it is not registered in this worker",
            env.job_class
        );
        return Box::pin(outcome::morgue_unrunnable(shared, d, Some(&env), reason)).await;
    };
    let job = match reg.decode_json(env.arguments.get()) {
        Ok(job) => job,
        Err(msg) => {
            let reason = format!(
                "arguments for job class {} do not deserialize: {msg}",
                env.job_class
            );
            return Box::pin(outcome::morgue_unrunnable(shared, d, Some(&env), reason)).await;
        }
    };
    let ctx = JobContext {
        job_id: env.job_id,
        job_class: env.job_class.clone(),
        queue: shared.queue.clone(),
        attempt: env.attempt(),
        enqueued_at: env.enqueued_at,
        last_error: env.last_error.clone(),
        client: shared.client.clone(),
        checkpoint_in: env.checkpoint.clone(),
        outputs: Default::default(),
        state: shared.state.clone(),
        resumptions: env.resumptions,
        stopping: shared.stopping.clone(),
        metadata: env.metadata.clone(),
        live: shared.live.clone(),
    };
    if let Some(recorder) = &shared.recorder {
        let start = Start {
            id: env.job_id,
            job_class: env.job_class.clone(),
            queue: shared.queue.clone(),
            // JSON text no value holds (a number out of range) is kept as text.
            arguments: env
                .arguments_value()
                .unwrap_or_else(|_| env.arguments.get().into()),
            attempt: env.attempt(),
            enqueued_at: env.enqueued_at,
            due_at: env.scheduled_at.unwrap_or(env.enqueued_at),
            generation: env.generation,
            metadata: env.metadata.clone(),
        };
        match Box::pin(recorder.start_job(start)).await {
            Ok(StartOutcome::Run) => {}
            Ok(StartOutcome::Cancelled) => return outcome::cancelled(shared, d),
            Ok(StartOutcome::AlreadyFinished) => return outcome::duplicate_skipped(shared, d),
            Err(e) => tracing::warn!(
                error = %e,
                "job store: could not record the start (or check for a cancel); running the job anyway"
            ),
        }
    }
    let outputs = ctx.outputs.clone();
    tracing::info!(event = "job.started", "job started");
    shared
        .stats
        .running
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    let result = super::perform::run(
        job,
        ctx,
        match shared.job_timeout {
            Some(default) if reg.timeout() == crate::job::DEFAULT_TIMEOUT => default,
            _ => reg.timeout(),
        },
        shared.client.middleware(),
        env.arguments.get(),
    )
    .await;
    let elapsed = started.elapsed();
    shared
        .stats
        .running
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    shared.stats.record_run(elapsed);
    #[cfg(feature = "opentelemetry")]
    if shared.client.traced() {
        crate::telemetry::processed(&shared.queue, elapsed, result.as_ref().err());
    }
    let outputs = std::mem::take(&mut *outputs.lock().unwrap_or_else(|p| p.into_inner()));
    if outputs.reported {
        if let Some(live) = &shared.live {
            // What it reported last is written before its outcome.
            live.finish(env.job_id);
        }
    }
    let _settling = slot.settle().await;
    outcome::finish(shared, d, env, reg, result, outputs, elapsed).await;
}
