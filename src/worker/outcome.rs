//! Outcome: the end of one execution. Success is acked; a failure is retried (the job is
//! published again with `executions + 1` and `scheduled_at = now + wait`), discarded, or sent to
//! the morgue, as the job's retry policy decides. The original message is acked only after the
//! outcome's publish succeeded; if that publish fails the message is left to come back.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::Shared;
use crate::broker::{Delivery, OutboundMessage};
use crate::envelope::{Envelope, ReceivedEnvelope};
use crate::error::{JobError, JobInterrupted};
use crate::job::Outputs;
use crate::middleware::{Failure, FailureDecision};
use crate::morgue::MorgueRecord;
use crate::registry::JobRegistration;
use crate::retry_policy::Decision;
use crate::store::Transition;

/// How soon a message whose outcome could not be published comes back.
const REDELIVER_AFTER_FAILED_OUTCOME_SECS: i32 = 10;

fn ack(shared: &Shared, d: &Delivery) {
    shared.lease.forget(&d.ack_id);
    shared.acker.ack(d.ack_id.clone());
}

fn outcome_failed(shared: &Shared, d: &Delivery, what: &str, error: &crate::Error) {
    tracing::error!(
        message_id = %d.message_id,
        error = %error,
        "could not publish the {what}; the message is not acked and will be delivered again in {REDELIVER_AFTER_FAILED_OUTCOME_SECS} s"
    );
    shared.lease.forget(&d.ack_id);
    shared
        .acker
        .set_deadline(d.ack_id.clone(), REDELIVER_AFTER_FAILED_OUTCOME_SECS);
}

/// Records a transition in the job store, if there is one. The store is the record, not the
/// queue: a failed write is logged and the job goes on.
async fn record(shared: &Shared, id: uuid::Uuid, attempt: u32, mut t: Transition) {
    if let Some(recorder) = &shared.recorder {
        // An error is stored (and shown) as the retry's last_error is: at most 4,096 bytes.
        if let Transition::Failed { error, .. }
        | Transition::Discarded { error }
        | Transition::Morgued { error } = &mut t
        {
            if error.len() > STORED_ERROR_BYTES {
                *error = crate::morgue::truncate(error, STORED_ERROR_BYTES);
            }
        }
        // Boxed: without a store, a job's future need not hold room for this one.
        Box::pin(recorder.finish(id, attempt, t)).await;
    }
}

/// The longest error a transition stores, as a retry's `last_error`.
const STORED_ERROR_BYTES: usize = 4096;

/// A job cancelled before it started: acked without running (its cancel event is recorded).
pub(crate) fn cancelled(shared: &Shared, d: &Delivery) {
    shared.stats.processed.fetch_add(1, Relaxed);
    tracing::info!(
        event = "job.cancelled",
        "job cancelled: acked without running"
    );
    ack(shared, d);
}

/// A duplicate delivery of an execution the store shows finished: acked without running.
pub(crate) fn duplicate_skipped(shared: &Shared, d: &Delivery) {
    shared.stats.processed.fetch_add(1, Relaxed);
    tracing::info!(
        event = "job.duplicate_skipped",
        "the job store shows this execution finished: a duplicate delivery, acked without running"
    );
    ack(shared, d);
}

/// Moves a message to another topic unchanged (a job that is not due yet), then acks it.
pub(crate) async fn forward(shared: &Shared, d: &Delivery, topic: &str, msg: OutboundMessage) {
    match shared.client.publish_to(topic, vec![msg]).await {
        Ok(_) => ack(shared, d),
        Err(e) => outcome_failed(shared, d, "job that is not due yet", &e),
    }
}

/// Publishes to the morgue and acks; false if the publish failed (the message comes back).
async fn morgue(shared: &Shared, d: &Delivery, record: MorgueRecord) -> bool {
    let record = record.fit();
    let error = record.error.clone();
    let morgue = shared.client.resource_name(shared.client.morgue_queue());
    match shared
        .client
        .publish_to(&morgue, vec![record.into_message()])
        .await
    {
        Ok(_) => {
            shared.stats.morgued.fetch_add(1, Relaxed);
            tracing::warn!(
                event = "job.morgued",
                error = %error,
                "job sent to the morgue"
            );
            ack(shared, d);
            true
        }
        Err(e) => {
            outcome_failed(shared, d, "morgue message", &e);
            false
        }
    }
}

/// Sends a message that cannot run to the morgue, with the reason. The body moves into the
/// morgue record (it may be 10 MB; nothing reads it afterwards).
pub(crate) async fn morgue_unrunnable<A>(
    shared: &Shared,
    d: &mut Delivery,
    env: Option<&Envelope<A>>,
    reason: String,
) {
    shared.stats.processed.fetch_add(1, Relaxed);
    let body = std::mem::take(&mut d.data);
    let record = MorgueRecord::new(body, reason, &shared.queue, env, &d.attributes);
    if env.is_none() {
        // A message that did not decode: its span knows only what the morgue record says of
        // the job, with its executions as the attempt.
        let span = tracing::Span::current();
        span.record("job_id", record.job_id.as_deref().unwrap_or(""));
        span.record("job_class", record.job_class.as_deref().unwrap_or(""));
        span.record("attempt", record.executions.unwrap_or(0));
    }
    let error = record.error.clone();
    if morgue(shared, d, record).await {
        if let Some(env) = env {
            report(
                shared,
                env,
                env.attempt(),
                None,
                &error,
                FailureDecision::Morgue,
            );
            let t = Transition::Morgued { error };
            self::record(shared, env.job_id, env.attempt(), t).await;
        }
    }
}

/// Handles the result of an execution.
pub(crate) async fn finish(
    shared: &Shared,
    d: &Delivery,
    env: ReceivedEnvelope,
    reg: &JobRegistration,
    result: Result<(), JobError>,
    outputs: Outputs,
    elapsed: Duration,
) {
    shared.stats.processed.fetch_add(1, Relaxed);
    let duration_ms = elapsed.as_millis() as u64;
    let attempt = env.attempt();
    let error = match result {
        Ok(()) => {
            let t = Transition::Succeeded {
                result: outputs.result,
                run: elapsed,
            };
            record(shared, env.job_id, attempt, t).await;
            shared.stats.succeeded.fetch_add(1, Relaxed);
            tracing::info!(event = "job.succeeded", duration_ms, "job succeeded");
            return ack(shared, d);
        }
        Err(e) if e.is::<JobInterrupted>() => {
            return Box::pin(interrupted(shared, d, env, outputs)).await;
        }
        Err(e) => e,
    };
    // Boxed: the failure path (a retry's publish, the morgue) is most of this future's size,
    // and a job that succeeds should not carry it.
    Box::pin(failed(shared, d, env, reg, error, outputs, elapsed)).await
}

/// An execution that stopped early ([`JobInterrupted`]): published again at once with the
/// checkpoint it saved, the same execution count and one more resumption, then acked. A job
/// store records it first (`interrupted`): the job is pending until the resumption starts, which
/// counts as the same attempt's. If the publish fails, the message comes back as it was.
async fn interrupted(shared: &Shared, d: &Delivery, env: ReceivedEnvelope, outputs: Outputs) {
    let mut next = match env.into_parsed() {
        Ok(next) => next,
        Err(refused) => {
            let (env, e) = *refused;
            let error = format!(
                "the arguments are JSON text that no JSON value holds ({e}), so the interrupted job cannot be published again"
            );
            return morgue_job(shared, d, d.data.clone(), error, &env, env.attempt(), None).await;
        }
    };
    if outputs.checkpoint.is_some() {
        next.checkpoint = outputs.checkpoint;
    }
    next.resumptions = next.resumptions.saturating_add(1);
    next.scheduled_at = None;
    // Pending again in a store before the resumption can start (its start makes it running).
    let t = Transition::Interrupted {
        resumptions: next.resumptions,
    };
    record(shared, next.job_id, next.attempt(), t).await;
    match shared.client.publish_envelopes(vec![next.clone()]).await {
        Ok(()) => {
            tracing::info!(
                event = "job.interrupted",
                resumptions = next.resumptions,
                "job interrupted: published again to resume from its checkpoint"
            );
            ack(shared, d);
        }
        Err(e) => outcome_failed(shared, d, "interrupted job", &e),
    }
}

/// The failure of an execution: retried, discarded or sent to the morgue, as the job's retry
/// policy decides.
async fn failed(
    shared: &Shared,
    d: &Delivery,
    env: ReceivedEnvelope,
    reg: &JobRegistration,
    cause: JobError,
    outputs: Outputs,
    elapsed: Duration,
) {
    let error = &cause;
    let duration_ms = elapsed.as_millis() as u64;
    let attempt = env.attempt();
    shared.stats.failed.fetch_add(1, Relaxed);
    tracing::warn!(
        event = "job.failed",
        duration_ms,
        error = %error,
        error_type = error.type_name(),
        "job failed"
    );
    let t = Transition::Failed {
        error: format!("{}: {error}", error.type_name()),
        run: elapsed,
        result: outputs.result,
    };
    record(shared, env.job_id, attempt, t).await;
    // A retry is a new envelope: its arguments as a value from here on.
    let env = match env.into_parsed() {
        Ok(env) => env,
        Err(refused) => {
            let (env, e) = *refused;
            let error = format!(
                "the arguments are JSON text that no JSON value holds ({e}), so no retry can be built: {}: {error}",
                error.type_name()
            );
            return morgue_job(
                shared,
                d,
                d.data.clone(),
                error,
                &env,
                attempt,
                Some(&cause),
            )
            .await;
        }
    };
    let mut next = env.clone();
    if outputs.checkpoint.is_some() {
        next.checkpoint = outputs.checkpoint;
    }
    next.executions = next.executions.saturating_add(1);
    next.last_error = Some(crate::morgue::truncate(
        &format!("{}: {error}", error.type_name()),
        4096,
    ));
    let decision = reg
        .retry_policy()
        .decide(error, &mut next.exception_executions);
    match decision {
        Decision::Retry { wait } => {
            // Pub/Sub keeps a message 7 days: a longer wait is capped a little below that.
            let wait = wait.min(crate::broker::RETENTION - Duration::from_secs(3600));
            let at = crate::envelope::due_after(wait);
            next.scheduled_at = Some(at);
            let mut published = shared.client.publish_envelopes(vec![next.clone()]).await;
            if matches!(published, Err(crate::Error::PayloadTooLarge { .. })) {
                // Near the size limit, the retry's last_error can tip it over: try it short,
                // then without it.
                for cut in [Some(256), None] {
                    next.last_error = cut.and_then(|n| {
                        next.last_error
                            .as_deref()
                            .map(|e| crate::morgue::truncate(e, n))
                    });
                    published = shared.client.publish_envelopes(vec![next.clone()]).await;
                    if !matches!(published, Err(crate::Error::PayloadTooLarge { .. })) {
                        break;
                    }
                }
            }
            if let Err(too_large @ crate::Error::PayloadTooLarge { .. }) = published {
                // The retry cannot be published at all: the job dies with the reason, never a
                // loop of failed publishes.
                let error = format!(
                    "the retry does not fit in a Pub/Sub message ({too_large}): {}: {error}",
                    error.type_name()
                );
                return morgue_job(
                    shared,
                    d,
                    d.data.clone(),
                    error,
                    &env,
                    attempt,
                    Some(&cause),
                )
                .await;
            }
            match published {
                Ok(()) => {
                    report(
                        shared,
                        &env,
                        attempt,
                        Some(&cause),
                        "",
                        FailureDecision::Retry { at },
                    );
                    shared.stats.retried.fetch_add(1, Relaxed);
                    tracing::info!(
                        event = "job.retry_scheduled",
                        scheduled_at = %at.to_rfc3339(),
                        wait_ms = wait.as_millis() as u64,
                        error = %error,
                        "retry scheduled"
                    );
                    record(
                        shared,
                        env.job_id,
                        attempt,
                        Transition::RetryScheduled { at },
                    )
                    .await;
                    ack(shared, d);
                }
                Err(e) => outcome_failed(shared, d, "retry", &e),
            }
        }
        Decision::Discard => {
            shared.stats.discarded.fetch_add(1, Relaxed);
            tracing::info!(
                event = "job.discarded",
                error = %error,
                "job discarded"
            );
            report(
                shared,
                &env,
                attempt,
                Some(&cause),
                "",
                FailureDecision::Discard,
            );
            let t = Transition::Discarded {
                error: format!("{}: {error}", error.type_name()),
            };
            record(shared, env.job_id, attempt, t).await;
            ack(shared, d);
        }
        Decision::Morgue { rule, failures } => {
            let error = format!(
                "retries spent ({failures} failures under rule {rule}): {}: {error}",
                error.type_name()
            );
            morgue_job(
                shared,
                d,
                next.to_body(),
                error,
                &next,
                attempt,
                Some(&cause),
            )
            .await;
        }
    }
}

/// Sends the job `job` (its message `body`) to the morgue with `error`, and records it there
/// once the morgue has it.
/// `cause` is what the execution failed with, for the middleware's `failed` hooks (without one,
/// they get `error`).
async fn morgue_job<A>(
    shared: &Shared,
    d: &Delivery,
    body: Vec<u8>,
    error: String,
    job: &Envelope<A>,
    attempt: u32,
    cause: Option<&JobError>,
) {
    let record = MorgueRecord::new(body, error, &shared.queue, Some(job), &d.attributes);
    let error = record.error.clone();
    if morgue(shared, d, record).await {
        report(shared, job, attempt, cause, &error, FailureDecision::Morgue);
        self::record(shared, job.job_id, attempt, Transition::Morgued { error }).await;
    }
}

/// Tells the middleware's `failed` hooks, if there are any, of a failure and its decision.
fn report<A>(
    shared: &Shared,
    job: &Envelope<A>,
    attempt: u32,
    cause: Option<&JobError>,
    reason: &str,
    decision: FailureDecision,
) {
    let chain = shared.client.middleware();
    if chain.is_empty() {
        return;
    }
    let owned;
    let error = match cause {
        Some(e) => e,
        None => {
            owned = JobError::msg(reason);
            &owned
        }
    };
    chain.failed(&Failure {
        job_id: job.job_id,
        job_class: &job.job_class,
        queue: &shared.queue,
        attempt,
        metadata: &job.metadata,
        error,
        decision,
    });
}

#[cfg(test)]
mod tests {
    //! Retry decisions and outcomes, end to end on the in-memory broker (fast; the same paths
    //! run against the emulator in tests/worker.rs).

    use std::time::Duration;

    use chrono::Utc;
    use serde::{Deserialize, Serialize};

    use crate::broker::{Broker, OutboundMessage};
    use crate::testing::{memory_client, perform_enqueued_jobs, scheduled_jobs};
    use crate::{register_job, Job, JobContext, JobError, RetryPolicy, Wait};

    #[derive(Debug, thiserror::Error)]
    #[error("flaky")]
    struct Flaky;

    #[derive(Debug, thiserror::Error)]
    #[error("gone")]
    struct Gone;

    #[derive(Serialize, Deserialize)]
    struct Outcome {
        fail: String,
    }

    impl Job for Outcome {
        const NAME: &'static str = "OutcomeProbe";
        fn retry_policy() -> RetryPolicy {
            RetryPolicy::default()
                .retry_on::<Flaky>(Wait::fixed(Duration::from_secs(600)), 3)
                .discard_on::<Gone>()
        }
        async fn perform(&self, _ctx: &JobContext) -> Result<(), JobError> {
            match self.fail.as_str() {
                "flaky" => Err(Flaky.into()),
                "gone" => Err(Gone.into()),
                "long" => Err(JobError::msg("e".repeat(3000))),
                "longer" => Err(JobError::msg("é".repeat(5000))),
                _ => Ok(()),
            }
        }
    }
    register_job!(Outcome);

    use crate::testing::morgue_records as morgue;

    #[tokio::test]
    async fn a_retryable_failure_schedules_the_next_execution_after_its_wait() {
        let (client, broker) = memory_client();
        let before = Utc::now();
        Outcome {
            fail: "flaky".into(),
        }
        .perform_later(&client)
        .await
        .unwrap();
        let summary = perform_enqueued_jobs(&client, "default").await.unwrap();
        assert_eq!((summary.failed, summary.retried), (1, 1));
        let retries = scheduled_jobs(&client, "default");
        assert_eq!(retries.len(), 1, "one retry waiting");
        let r = &retries[0];
        assert_eq!(r.executions, 1);
        assert_eq!(r.attempt(), 2);
        assert_eq!(r.exception_executions.values().sum::<u32>(), 1);
        assert!(r.last_error.as_deref().unwrap_or("").contains("flaky"));
        let due = r.scheduled_at.expect("a due time");
        let wait = (due - before).num_seconds();
        assert!(
            (599..=601).contains(&wait),
            "due {wait} s later, wait is 600 s"
        );
        assert_eq!(broker.outstanding("default"), 0, "the original is acked");
        assert!(morgue(&client, &broker).is_empty());
    }

    #[tokio::test]
    async fn spent_retries_go_to_the_morgue_with_the_job_and_the_rule() {
        let (client, broker) = memory_client();
        // The third execution: two failures already counted under the rule.
        let mut env = crate::envelope::Envelope::new(
            "OutcomeProbe",
            "default",
            serde_json::json!({"fail": "flaky"}),
        );
        env.executions = 2;
        env.exception_executions
            .insert(std::any::type_name::<Flaky>().to_string(), 2);
        client.publish_envelopes(vec![env.clone()]).await.unwrap();
        let summary = perform_enqueued_jobs(&client, "default").await.unwrap();
        assert_eq!(summary.morgued, 1);
        assert!(scheduled_jobs(&client, "default").is_empty());
        let dead = morgue(&client, &broker);
        assert_eq!(dead.len(), 1);
        let d = &dead[0];
        assert_eq!(d.job_id.as_deref(), Some(env.job_id.to_string().as_str()));
        assert_eq!(d.job_class.as_deref(), Some("OutcomeProbe"));
        assert_eq!(d.executions, Some(3));
        assert!(d.error.contains("retries spent (3 failures"), "{}", d.error);
        assert_eq!(d.source_queue, "default");
    }

    #[tokio::test]
    async fn a_failure_whose_arguments_no_json_value_holds_is_morgued_as_sent_not_retried_without_them(
    ) {
        let (client, broker) = memory_client();
        client.ensure_queue("default").await.unwrap();
        // The job ignores `x`, so it runs; its retry would need the arguments as a value.
        let body = br#"{"format_version":1,"job_class":"OutcomeProbe","job_id":"0190c4c5-0000-7000-8000-000000000000","queue_name":"default","arguments":{"fail":"flaky","x":1e400},"executions":0,"enqueued_at":"2026-12-04T23:05:09Z"}"#;
        let msg = OutboundMessage {
            data: body.to_vec(),
            attributes: Default::default(),
        };
        broker.publish("default", &[msg]).await.unwrap();
        let summary = perform_enqueued_jobs(&client, "default").await.unwrap();
        assert_eq!((summary.failed, summary.morgued), (1, 1));
        assert!(scheduled_jobs(&client, "default").is_empty(), "no retry");
        let dead = morgue(&client, &broker);
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].body, body.to_vec(), "the job as it was sent");
        assert!(
            dead[0].error.contains("no JSON value holds") && dead[0].error.contains("flaky"),
            "{}",
            dead[0].error
        );
        assert_eq!(broker.outstanding("default"), 0, "acked once in the morgue");
    }

    /// Counts to `steps`, one step at a time, from its checkpoint; its first run stops at step
    /// 2 until its worker stops. Each run records (attempt, resumptions, the step it began at).
    #[derive(Serialize, Deserialize)]
    struct Resumable {
        steps: u32,
    }

    static RESUMABLE_RUNS: std::sync::Mutex<Vec<(u32, u32, u32)>> =
        std::sync::Mutex::new(Vec::new());

    impl Job for Resumable {
        const NAME: &'static str = "ResumableProbe";
        fn queue(&self) -> &str {
            "resumable"
        }
        async fn perform(&self, ctx: &JobContext) -> Result<(), JobError> {
            let mut done: u32 = ctx.checkpoint().unwrap_or(0);
            RESUMABLE_RUNS
                .lock()
                .unwrap()
                .push((ctx.attempt, ctx.resumptions, done));
            while done < self.steps {
                if ctx.is_stopping() {
                    ctx.save_checkpoint(&done)?;
                    return Err(JobError::interrupted());
                }
                if done == 2 && ctx.resumptions == 0 {
                    ctx.stopping().await;
                    continue;
                }
                done += 1;
            }
            Ok(())
        }
    }
    register_job!(Resumable);

    #[tokio::test]
    async fn an_interrupted_job_resumes_from_its_checkpoint_without_counting_an_execution() {
        let (client, broker) = memory_client();
        // With a store: pending while interrupted, one attempt in all.
        #[cfg(feature = "sqlite")]
        let (client, store) = {
            let store: std::sync::Arc<dyn crate::store::JobStore> = std::sync::Arc::new(
                crate::store::SqlStore::connect("sqlite::memory:")
                    .await
                    .unwrap(),
            );
            (client.with_store(store.clone()), store)
        };
        #[cfg(feature = "sqlite")]
        let kinds = |id| {
            let store = store.clone();
            async move {
                let events = store.events(id).await.unwrap();
                events.iter().map(|e| e.kind).collect::<Vec<_>>()
            }
        };
        let id = Resumable { steps: 5 }.perform_later(&client).await.unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let worker = crate::Worker::new(client.clone(), crate::WorkerConfig::new("resumable"));
        let running = tokio::spawn(worker.run(stop.clone()));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while RESUMABLE_RUNS.lock().unwrap().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the job never started"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.cancel();
        let summary = running.await.unwrap().unwrap();
        assert_eq!((summary.failed, summary.retried), (0, 0), "{summary:?}");
        // Published again at once: the same job and execution, its checkpoint, one resumption.
        let waiting = broker.pending(&client.resource_name("resumable"));
        assert_eq!(
            waiting.len(),
            1,
            "the original acked, the resumption waiting"
        );
        let (data, attributes) = &waiting[0];
        let env = crate::envelope::Envelope::decode(data, attributes).unwrap();
        assert_eq!(env.job_id, id);
        assert_eq!((env.executions, env.resumptions), (0, 1));
        assert_eq!(env.checkpoint, Some(serde_json::json!(2)));
        assert!(env.scheduled_at.is_none() && env.last_error.is_none());
        #[cfg(feature = "sqlite")]
        {
            use crate::store::{EventKind::*, JobStatus};
            let rec = store.get(id).await.unwrap().unwrap();
            assert_eq!((rec.status, rec.attempts), (JobStatus::Pending, 1));
            assert!(kinds(id).await.ends_with(&[Started, Interrupted]));
        }
        let summary = perform_enqueued_jobs(&client, "resumable").await.unwrap();
        assert_eq!((summary.succeeded, summary.failed), (1, 0));
        assert_eq!(
            *RESUMABLE_RUNS.lock().unwrap(),
            vec![(1, 0, 0), (1, 1, 2)],
            "the same attempt, resumed at the saved step"
        );
        assert!(scheduled_jobs(&client, "resumable").is_empty());
        assert!(morgue(&client, &broker).is_empty());
        #[cfg(feature = "sqlite")]
        {
            use crate::store::{EventKind::*, JobStatus};
            let rec = store.get(id).await.unwrap().unwrap();
            assert_eq!((rec.status, rec.attempts), (JobStatus::Succeeded, 1));
            assert!(kinds(id)
                .await
                .ends_with(&[Started, Interrupted, Started, Succeeded]));
        }
    }

    /// A job whose class keeps the default timeout, and sleeps a minute.
    #[derive(Serialize, Deserialize)]
    struct Sleeper;

    impl Job for Sleeper {
        const NAME: &'static str = "SleeperProbe";
        fn queue(&self) -> &str {
            "sleepy"
        }
        async fn perform(&self, _ctx: &JobContext) -> Result<(), JobError> {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        }
    }
    register_job!(Sleeper);

    /// A job whose class sets its own timeout (10 s), and runs for 600 ms.
    #[derive(Serialize, Deserialize)]
    struct OwnTimeout;

    impl Job for OwnTimeout {
        const NAME: &'static str = "OwnTimeoutProbe";
        fn queue(&self) -> &str {
            "sleepy"
        }
        fn timeout() -> Duration {
            Duration::from_secs(10)
        }
        async fn perform(&self, _ctx: &JobContext) -> Result<(), JobError> {
            tokio::time::sleep(Duration::from_millis(600)).await;
            Ok(())
        }
    }
    register_job!(OwnTimeout);

    #[tokio::test]
    async fn the_worker_job_timeout_is_the_default_of_classes_without_their_own() {
        let (client, _broker) = memory_client();
        Sleeper.perform_later(&client).await.unwrap();
        OwnTimeout.perform_later(&client).await.unwrap();
        let mut config = crate::WorkerConfig::new("sleepy");
        config.job_timeout = Some(Duration::from_millis(200));
        let worker = crate::Worker::new(client.clone(), config);
        let stats = worker.stats();
        let stop = tokio_util::sync::CancellationToken::new();
        let running = tokio::spawn(worker.run(stop.clone()));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while stats.summary().processed < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "the jobs did not end: {:?}",
                stats.summary()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.cancel();
        let summary = running.await.unwrap().unwrap();
        assert_eq!((summary.failed, summary.succeeded), (1, 1), "{summary:?}");
        let retry = scheduled_jobs(&client, "sleepy");
        assert_eq!(retry.len(), 1);
        assert_eq!(retry[0].job_class, "SleeperProbe");
        let error = retry[0].last_error.as_deref().unwrap_or_default();
        assert!(error.contains("timed out after 200ms"), "{error}");
    }

    #[tokio::test]
    async fn a_discarded_failure_is_acked_with_nothing_left_behind() {
        let (client, broker) = memory_client();
        Outcome {
            fail: "gone".into(),
        }
        .perform_later(&client)
        .await
        .unwrap();
        let summary = perform_enqueued_jobs(&client, "default").await.unwrap();
        assert_eq!(summary.discarded, 1);
        assert!(scheduled_jobs(&client, "default").is_empty());
        assert!(morgue(&client, &broker).is_empty());
        assert_eq!(broker.outstanding("default"), 0);
    }

    #[tokio::test]
    async fn an_unrunnable_message_is_morgued_keeping_the_id_and_class_its_body_names() {
        let (client, broker) = memory_client();
        client.ensure_queue("default").await.unwrap();
        // Not our envelope (no format_version), but its body names the job.
        let body = br#"{"job_class":"Billing::SendInvoiceJob","job_id":"e7ce1f84-41de-4653-aaa2-b92d76f975ce","arguments":[]}"#;
        broker
            .publish(
                "default",
                &[OutboundMessage {
                    data: body.to_vec(),
                    attributes: Default::default(),
                }],
            )
            .await
            .unwrap();
        let summary = perform_enqueued_jobs(&client, "default").await.unwrap();
        assert_eq!(summary.morgued, 1);
        let dead = morgue(&client, &broker);
        assert_eq!(dead.len(), 1);
        assert_eq!(
            dead[0].job_id.as_deref(),
            Some("e7ce1f84-41de-4653-aaa2-b92d76f975ce")
        );
        assert_eq!(
            dead[0].job_class.as_deref(),
            Some("Billing::SendInvoiceJob")
        );
        assert_eq!(dead[0].body, body.to_vec(), "the original bytes are kept");
    }

    /// A job padded so that its message is `room` bytes under Pub/Sub's limit.
    fn near_the_limit(fail: &str, room: usize) -> crate::envelope::Envelope {
        let size = |env: &crate::envelope::Envelope| {
            crate::broker::message_bytes(&env.to_body(), &env.attributes())
        };
        let make = |pad: usize| {
            crate::envelope::Envelope::new(
                "OutcomeProbe",
                "default",
                serde_json::json!({"fail": fail, "pad": "p".repeat(pad)}),
            )
        };
        let base = size(&make(0));
        let env = make(crate::MAX_MESSAGE_BYTES - room - base);
        assert_eq!(size(&env), crate::MAX_MESSAGE_BYTES - room);
        env
    }

    #[tokio::test]
    async fn a_retry_near_the_size_limit_keeps_a_short_last_error() {
        let (client, _broker) = memory_client();
        client
            .publish_envelopes(vec![near_the_limit("long", 1500)])
            .await
            .unwrap();
        let summary = perform_enqueued_jobs(&client, "default").await.unwrap();
        assert_eq!((summary.failed, summary.retried), (1, 1));
        let retries = scheduled_jobs(&client, "default");
        assert_eq!(retries.len(), 1, "the retry was published");
        let kept = retries[0].last_error.as_deref().unwrap_or("");
        assert!(
            kept.len() <= 256 && kept.starts_with("pubsub_jobs"),
            "{kept}"
        );
    }

    #[tokio::test]
    async fn a_retry_that_cannot_fit_dies_once_with_the_reason_and_a_morgue_copy_that_fits() {
        let (client, broker) = memory_client();
        let env = near_the_limit("flaky", 20);
        client.publish_envelopes(vec![env.clone()]).await.unwrap();
        let summary = perform_enqueued_jobs(&client, "default").await.unwrap();
        assert_eq!(
            (summary.failed, summary.retried, summary.morgued),
            (1, 0, 1)
        );
        assert!(scheduled_jobs(&client, "default").is_empty());
        assert_eq!(broker.outstanding("default"), 0, "acked, not looping");
        let dead = morgue(&client, &broker);
        assert_eq!(dead.len(), 1);
        let d = &dead[0];
        assert!(d.error.contains("the retry does not fit"), "{}", d.error);
        assert!(d.error.contains("was cut to its first"), "{}", d.error);
        assert_eq!(d.job_id.as_deref(), Some(env.job_id.to_string().as_str()));
        assert!(d.body.len() < env.to_body().len() && env.to_body().starts_with(&d.body));
    }

    /// A job store keeps a failure's error as a retry's last_error is kept: at most 4,096
    /// bytes, cut on a character boundary.
    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn a_long_error_is_stored_cut() {
        let (client, _broker) = memory_client();
        let store: std::sync::Arc<dyn crate::store::JobStore> = std::sync::Arc::new(
            crate::store::SqlStore::connect("sqlite::memory:")
                .await
                .unwrap(),
        );
        let client = client.with_store(store.clone());
        let id = Outcome {
            fail: "longer".into(),
        }
        .set()
        .queue("jobs")
        .perform_later(&client)
        .await
        .unwrap();
        client.flush().await;
        perform_enqueued_jobs(&client, "jobs").await.unwrap();
        let rec = store.get(id).await.unwrap().unwrap();
        let error = rec.last_error.expect("an error recorded");
        assert!(
            error.len() <= 4096 && error.len() > 4000,
            "{} bytes",
            error.len()
        );
        assert!(error.ends_with("..."), "cut visibly");
    }
}
