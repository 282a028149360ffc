//! Middleware: ordered hooks around every enqueue and every `perform`, and a hook for every failed
//! execution (Sidekiq's client and server middleware, River's `JobInsertMiddleware` and
//! `WorkerMiddleware`, apalis's tower layers). What one hook does for every job, a tenant, a
//! request id, error reporting, custom metrics, auth propagation, is written once instead of in
//! every job.
//!
//! A [`Middleware`] is given to the client ([`Client::with_middleware`](crate::Client::with_middleware));
//! the same list wraps the client's enqueues and the `perform` of every job a worker built on
//! that client runs. The first given is the outermost, as tower's `ServiceBuilder` layers are:
//! its `enqueue` sees the jobs first and its `perform` starts first and ends last.
//!
//! - [`Middleware::enqueue`] sees the [`Envelope`]s of every new job, from every way in (`perform_later`,
//!   bulk, inside the application's transaction, the HTTP API, the CLI, a periodic tick), before
//!   they are checked: it may add [`Metadata`], change them, leave some out (they are not
//!   enqueued), or refuse with an error (nothing is written); after `next` it sees the ids. A
//!   retry, a resumption or an operator's retry from the store is the same job again: it keeps
//!   its metadata and does not pass through `enqueue`.
//! - [`Middleware::perform`] runs around the job's `perform` inside the job's task, its timeout
//!   and its panic guard, and sees the [`JobContext`] (with [`JobContext::metadata`]) and the
//!   arguments ([`Next::arguments`]). It may return before `next` (the job does not run: `Ok`
//!   skips it as done, an error fails it under the job's retry policy) or change the result.
//! - [`Middleware::failed`] is called once for every failed execution, with the decision taken
//!   ([`FailureDecision`]): retry (and when), discard, or the morgue; also for a message that
//!   cannot run (an unknown class, arguments that do not deserialize), which goes to the morgue.
//!
//! The metadata travels in the envelope: through the job store (and so a retry from the
//! dashboard), the outbox, retries, the morgue and back, and the ActiveJob wire (under the key
//! `pubsub_jobs_metadata`, which Rails ignores).
//!
//! ```
//! use pubsub_jobs::middleware::{BoxFuture, EnqueueNext, Middleware, Next};
//! use pubsub_jobs::envelope::Envelope;
//! use pubsub_jobs::{JobContext, JobError};
//! use uuid::Uuid;
//!
//! tokio::task_local! {
//!     /// The tenant of the request (or job) being served.
//!     static TENANT: String;
//! }
//!
//! /// Carries the tenant from the code that enqueues a job to the job, and from a job to the
//! /// jobs it enqueues.
//! struct Tenant;
//!
//! impl Middleware for Tenant {
//!     fn enqueue<'a>(
//!         &'a self,
//!         mut jobs: Vec<Envelope>,
//!         next: EnqueueNext<'a>,
//!     ) -> BoxFuture<'a, pubsub_jobs::Result<Vec<Uuid>>> {
//!         if let Ok(tenant) = TENANT.try_with(Clone::clone) {
//!             for job in &mut jobs {
//!                 job.metadata.insert("tenant".into(), tenant.clone());
//!             }
//!         }
//!         next.run(jobs)
//!     }
//!
//!     fn perform<'a>(
//!         &'a self,
//!         ctx: &'a JobContext,
//!         next: Next<'a>,
//!     ) -> BoxFuture<'a, Result<(), JobError>> {
//!         let tenant = ctx.metadata().get("tenant").cloned().unwrap_or_default();
//!         Box::pin(TENANT.scope(tenant, next.run(ctx)))
//!     }
//! }
//! # async fn demo() {
//! # let (client, _broker) = pubsub_jobs::testing::memory_client();
//! let client = client.with_middleware(Tenant);
//! # }
//! ```
//!
//! Without middleware, nothing of this runs and nothing is allocated per job.

use std::sync::Arc;

use chrono::{DateTime, Utc};
/// The boxed future every hook returns (`futures`' own, re-exported).
pub use futures::future::BoxFuture;
use uuid::Uuid;

use crate::envelope::Envelope;
pub use crate::envelope::Metadata;
use crate::error::{JobError, Result};
use crate::job::JobContext;
use crate::registry::ErasedJob;

/// Hooks around enqueues and executions; every method has a default that passes through. See the
/// [module](self) for what each sees and may do.
pub trait Middleware: Send + Sync + 'static {
    /// Around the enqueue of new jobs: call `next.run(jobs)` to go on (with the jobs changed,
    /// or fewer), or return without it. An error refuses the whole enqueue: nothing is written.
    /// [`Error::refused`](crate::Error::refused) builds one that names the job and the reason.
    fn enqueue<'a>(
        &'a self,
        jobs: Vec<Envelope>,
        next: EnqueueNext<'a>,
    ) -> BoxFuture<'a, Result<Vec<Uuid>>> {
        next.run(jobs)
    }

    /// Around one execution's `perform`: call `next.run(ctx)` to go on, or return without it.
    fn perform<'a>(
        &'a self,
        ctx: &'a JobContext,
        next: Next<'a>,
    ) -> BoxFuture<'a, std::result::Result<(), JobError>> {
        next.run(ctx)
    }

    /// After a failed execution, once the decision is taken. Called on the worker's task: hand
    /// slow work (a network report) to a task of its own.
    fn failed(&self, failure: &Failure<'_>) {
        let _ = failure;
    }
}

/// A shared middleware is one: keep an `Arc` to read what it gathered.
impl<M: Middleware + ?Sized> Middleware for Arc<M> {
    fn enqueue<'a>(
        &'a self,
        jobs: Vec<Envelope>,
        next: EnqueueNext<'a>,
    ) -> BoxFuture<'a, Result<Vec<Uuid>>> {
        (**self).enqueue(jobs, next)
    }

    fn perform<'a>(
        &'a self,
        ctx: &'a JobContext,
        next: Next<'a>,
    ) -> BoxFuture<'a, std::result::Result<(), JobError>> {
        (**self).perform(ctx, next)
    }

    fn failed(&self, failure: &Failure<'_>) {
        (**self).failed(failure)
    }
}

/// The middleware a client was given, outermost first. Cheap to clone; empty costs nothing.
#[derive(Clone, Default)]
pub(crate) struct Chain(Option<Arc<[Arc<dyn Middleware>]>>);

impl Chain {
    /// The chain with `m` added innermost.
    pub(crate) fn with(&self, m: Arc<dyn Middleware>) -> Self {
        let mut all: Vec<Arc<dyn Middleware>> = self.as_slice().to_vec();
        all.push(m);
        Self(Some(all.into()))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub(crate) fn as_slice(&self) -> &[Arc<dyn Middleware>] {
        self.0.as_deref().unwrap_or(&[])
    }

    /// Runs `jobs` through every `enqueue` hook, then `inner`.
    pub(crate) fn enqueue<'a>(
        &'a self,
        source: EnqueueSource,
        jobs: Vec<Envelope>,
        inner: impl FnOnce(Vec<Envelope>) -> BoxFuture<'a, Result<Vec<Uuid>>> + Send + 'a,
    ) -> BoxFuture<'a, Result<Vec<Uuid>>> {
        EnqueueNext {
            rest: self.as_slice(),
            source,
            inner: Box::new(inner),
        }
        .run(jobs)
    }

    /// Tells every `failed` hook, in order. A hook that panics is logged and the others still
    /// run: a broken reporter does not change the job's outcome.
    pub(crate) fn failed(&self, failure: &Failure<'_>) {
        for m in self.as_slice() {
            let told = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.failed(failure)));
            if let Err(payload) = told {
                tracing::error!(
                    error = %crate::worker::perform::panic_message(payload),
                    "a middleware's failed hook panicked"
                );
            }
        }
    }
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} middleware", self.as_slice().len())
    }
}

/// Where an enqueue comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnqueueSource {
    /// The client: `perform_later`, bulk, the HTTP API, the dashboard, the CLI.
    Client,
    /// Inside the application's transaction (`perform_later_in`, `perform_all_later_in`): the
    /// relay publishes the jobs once it commits.
    Transaction,
    /// A periodic entry's tick.
    Periodic,
}

type EnqueueInner<'a> =
    Box<dyn FnOnce(Vec<Envelope>) -> BoxFuture<'a, Result<Vec<Uuid>>> + Send + 'a>;

/// The rest of an enqueue: the inner middleware, then checking, recording and publishing.
pub struct EnqueueNext<'a> {
    rest: &'a [Arc<dyn Middleware>],
    source: EnqueueSource,
    inner: EnqueueInner<'a>,
}

impl<'a> EnqueueNext<'a> {
    /// Goes on with `jobs`; returns the ids of the jobs enqueued (for a dedup hit, the id of
    /// the job that holds the key).
    pub fn run(self, jobs: Vec<Envelope>) -> BoxFuture<'a, Result<Vec<Uuid>>> {
        match self.rest.split_first() {
            None => (self.inner)(jobs),
            Some((first, rest)) => first.enqueue(
                jobs,
                EnqueueNext {
                    rest,
                    source: self.source,
                    inner: self.inner,
                },
            ),
        }
    }

    /// Where the enqueue comes from.
    pub fn source(&self) -> EnqueueSource {
        self.source
    }
}

impl std::fmt::Debug for EnqueueNext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnqueueNext")
            .field("source", &self.source)
            .field("middleware_left", &self.rest.len())
            .finish()
    }
}

/// The rest of an execution: the inner middleware, then the job's `perform`.
pub struct Next<'a> {
    rest: &'a [Arc<dyn Middleware>],
    job: &'a dyn ErasedJob,
    arguments: &'a str,
}

impl<'a> Next<'a> {
    pub(crate) fn new(
        rest: &'a [Arc<dyn Middleware>],
        job: &'a dyn ErasedJob,
        arguments: &'a str,
    ) -> Self {
        Self {
            rest,
            job,
            arguments,
        }
    }

    /// Goes on: the next middleware, or the job's `perform`.
    pub fn run(self, ctx: &'a JobContext) -> BoxFuture<'a, std::result::Result<(), JobError>> {
        match self.rest.split_first() {
            None => self.job.perform_erased(ctx),
            Some((first, rest)) => first.perform(
                ctx,
                Next {
                    rest,
                    job: self.job,
                    arguments: self.arguments,
                },
            ),
        }
    }

    /// The job's arguments, as the JSON text they came in.
    pub fn arguments(&self) -> &'a str {
        self.arguments
    }
}

impl std::fmt::Debug for Next<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Next")
            .field("middleware_left", &self.rest.len())
            .finish()
    }
}

/// What happens to a job after a failed execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureDecision {
    /// It runs again, no earlier than `at`.
    Retry {
        /// When the retry is due.
        at: DateTime<Utc>,
    },
    /// It is discarded ([`RetryPolicy::discard_on`](crate::RetryPolicy::discard_on)).
    Discard,
    /// It is sent to the morgue: its retries are spent, it cannot run here, or its retry does
    /// not fit in a message.
    Morgue,
}

/// A failed execution, as [`Middleware::failed`] sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Failure<'a> {
    /// The job id.
    pub job_id: Uuid,
    /// The class name.
    pub job_class: &'a str,
    /// The queue it ran on.
    pub queue: &'a str,
    /// The 1-based execution that failed.
    pub attempt: u32,
    /// The job's metadata.
    pub metadata: &'a Metadata,
    /// What it failed with (for a message that cannot run, the reason).
    pub error: &'a JobError,
    /// What happens to it now.
    pub decision: FailureDecision,
}

#[cfg(test)]
mod tests {
    //! The hooks on the in-memory broker: order, metadata from enqueue to perform and through a
    //! retry, leaving jobs out, refusing, skipping and failing a run, and the failure reports.
    //! The same run against the emulator is in `tests/worker.rs`.

    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::testing::{
        enqueued_jobs, memory_client, morgue_records, perform_enqueued_jobs, scheduled_jobs,
    };
    use crate::{register_job, Error, Job, RetryPolicy, Wait};

    type Trail = Arc<Mutex<Vec<String>>>;

    /// Appends its name to the `trail` metadata on enqueue, and to the shared trail around
    /// `perform` (`A>` in, `<A` out); reports failures there too.
    struct Mark {
        name: &'static str,
        trail: Trail,
    }

    impl Middleware for Mark {
        fn enqueue<'a>(
            &'a self,
            mut jobs: Vec<Envelope>,
            next: EnqueueNext<'a>,
        ) -> BoxFuture<'a, Result<Vec<Uuid>>> {
            for j in &mut jobs {
                j.metadata
                    .entry("trail".into())
                    .or_default()
                    .push_str(self.name);
            }
            Box::pin(async move {
                let ids = next.run(jobs).await?;
                self.trail
                    .lock()
                    .unwrap()
                    .push(format!("{} enqueued {}", self.name, ids.len()));
                Ok(ids)
            })
        }

        fn perform<'a>(
            &'a self,
            ctx: &'a JobContext,
            next: Next<'a>,
        ) -> BoxFuture<'a, std::result::Result<(), JobError>> {
            Box::pin(async move {
                self.trail.lock().unwrap().push(format!("{}>", self.name));
                let r = next.run(ctx).await;
                self.trail.lock().unwrap().push(format!("<{}", self.name));
                r
            })
        }

        fn failed(&self, f: &Failure<'_>) {
            self.trail.lock().unwrap().push(format!(
                "{} failed {} attempt {} {:?} trail={}",
                self.name,
                f.job_class,
                f.attempt,
                match f.decision {
                    FailureDecision::Retry { .. } => "retry",
                    FailureDecision::Discard => "discard",
                    FailureDecision::Morgue => "morgue",
                },
                f.metadata.get("trail").map_or("", String::as_str),
            ));
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("gone for good")]
    struct Gone;

    #[derive(Serialize, Deserialize)]
    struct Probe {
        fail: u32,
        child: bool,
    }

    static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

    impl Job for Probe {
        const NAME: &'static str = "MiddlewareProbe";
        fn retry_policy() -> RetryPolicy {
            RetryPolicy::default()
                .discard_on::<Gone>()
                .otherwise(Wait::fixed(Duration::from_secs(600)), 2)
        }
        async fn perform(&self, ctx: &JobContext) -> std::result::Result<(), JobError> {
            let meta = |k: &str| ctx.metadata().get(k).cloned().unwrap_or_default();
            SEEN.lock().unwrap().push(format!(
                "{} {} trail={} tenant={}",
                ctx.job_id,
                if self.child { "child" } else { "parent" },
                meta("trail"),
                meta("tenant"),
            ));
            match self.fail {
                1 => Err(JobError::msg("flaky")),
                2 => Err(Gone.into()),
                _ => Ok(()),
            }
        }
    }
    register_job!(Probe);

    fn seen(id: Uuid) -> Vec<String> {
        let id = id.to_string();
        SEEN.lock()
            .unwrap()
            .iter()
            .filter(|s| s.starts_with(&id))
            .map(|s| s[id.len() + 1..].to_string())
            .collect()
    }

    /// The failure reports in `trail`.
    fn failures(trail: &Trail) -> Vec<String> {
        let trail = trail.lock().unwrap();
        trail
            .iter()
            .filter(|l| l.contains("failed"))
            .cloned()
            .collect()
    }

    /// Enqueues a probe on `client`'s default queue.
    async fn probe(client: &crate::Client, fail: u32) -> Uuid {
        Probe { fail, child: false }
            .perform_later(client)
            .await
            .unwrap()
    }

    fn marked(trail: &Trail) -> crate::Client {
        let (client, _) = memory_client();
        client
            .with_middleware(Mark {
                name: "A",
                trail: trail.clone(),
            })
            .with_middleware(Mark {
                name: "B",
                trail: trail.clone(),
            })
    }

    #[tokio::test]
    async fn hooks_run_in_order_and_the_job_reads_what_enqueue_attached() {
        let trail = Trail::default();
        let client = marked(&trail);
        let id = probe(&client, 0).await;
        let queued = enqueued_jobs(&client, "default");
        assert_eq!(queued.len(), 1);
        assert_eq!(
            queued[0].metadata.get("trail").map(String::as_str),
            Some("AB")
        );
        let summary = perform_enqueued_jobs(&client, "default").await.unwrap();
        assert_eq!(summary.succeeded, 1);
        assert_eq!(seen(id), ["parent trail=AB tenant="]);
        // Enqueue: A sees the jobs first and the ids last; perform: A starts first, ends last.
        assert_eq!(
            *trail.lock().unwrap(),
            ["B enqueued 1", "A enqueued 1", "A>", "B>", "<B", "<A"]
        );
    }

    #[tokio::test]
    async fn metadata_survives_a_retry_and_every_failure_is_reported_once_with_its_decision() {
        let trail = Trail::default();
        let client = marked(&trail);
        let flaky = probe(&client, 1).await;
        let summary = perform_enqueued_jobs(&client, "default").await.unwrap();
        assert_eq!((summary.failed, summary.retried), (1, 1));
        let retry = scheduled_jobs(&client, "default");
        assert_eq!(retry.len(), 1);
        assert_eq!(retry[0].job_id, flaky);
        assert_eq!(
            retry[0].metadata.get("trail").map(String::as_str),
            Some("AB")
        );
        let reports = failures(&trail);
        assert_eq!(
            reports,
            [
                "A failed MiddlewareProbe attempt 1 \"retry\" trail=AB",
                "B failed MiddlewareProbe attempt 1 \"retry\" trail=AB"
            ]
        );

        // The retry, run from the scheduled topic: its second failure spends the attempts.
        let (client2, broker2) = memory_client();
        let trail2 = Trail::default();
        let client2 = client2.with_middleware(Mark {
            name: "A",
            trail: trail2.clone(),
        });
        let mut again = retry[0].clone();
        again.scheduled_at = None;
        client2.publish_envelopes(vec![again]).await.unwrap();
        perform_enqueued_jobs(&client2, "default").await.unwrap();
        assert_eq!(
            seen(flaky),
            ["parent trail=AB tenant=", "parent trail=AB tenant="]
        );
        let dead = morgue_records(&client2, &broker2);
        assert_eq!(dead.len(), 1);
        let body = Envelope::decode(&dead[0].body, &Default::default()).unwrap();
        assert_eq!(
            body.metadata.get("trail").map(String::as_str),
            Some("AB"),
            "in the morgue too"
        );
        let reports = failures(&trail2);
        assert_eq!(
            reports,
            ["A failed MiddlewareProbe attempt 2 \"morgue\" trail=AB"]
        );

        // A discard is reported as one.
        trail.lock().unwrap().clear();
        probe(&client, 2).await;
        let summary = perform_enqueued_jobs(&client, "default").await.unwrap();
        assert_eq!(summary.discarded, 1);
        let reports = failures(&trail);
        assert_eq!(
            reports,
            [
                "A failed MiddlewareProbe attempt 1 \"discard\" trail=AB",
                "B failed MiddlewareProbe attempt 1 \"discard\" trail=AB"
            ]
        );
    }

    /// Leaves out jobs of queue `skipped`, refuses jobs of queue `refused`.
    struct Gate;

    impl Middleware for Gate {
        fn enqueue<'a>(
            &'a self,
            mut jobs: Vec<Envelope>,
            next: EnqueueNext<'a>,
        ) -> BoxFuture<'a, Result<Vec<Uuid>>> {
            if let Some(j) = jobs.iter().find(|j| j.queue_name == "refused") {
                let e = Error::refused(j.job_class.clone(), "queue refused is closed");
                return Box::pin(async move { Err(e) });
            }
            jobs.retain(|j| j.queue_name != "skipped");
            next.run(jobs)
        }
    }

    #[tokio::test]
    async fn enqueue_hooks_leave_jobs_out_or_refuse_the_whole_enqueue() {
        let (client, broker) = memory_client();
        let client = client.with_middleware(Gate);
        let job = Probe {
            fail: 0,
            child: false,
        };
        let err = job
            .set()
            .queue("skipped")
            .perform_later(&client)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::EnqueueSkipped { .. }), "{err}");
        assert!(err.to_string().contains("MiddlewareProbe"), "{err}");
        let err = job
            .set()
            .queue("refused")
            .perform_later(&client)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "job MiddlewareProbe was not enqueued: queue refused is closed"
        );
        // A bulk: the refused one stops all of it; the skipped ones are left out.
        let mk = |q: &str| {
            let mut e = Envelope::new(
                "MiddlewareProbe",
                q,
                serde_json::json!({"fail": 0, "child": false}),
            );
            e.queue_name = q.into();
            e
        };
        let err = client
            .submit_all(vec![mk("default"), mk("refused")])
            .await
            .unwrap_err();
        assert!(matches!(err, Error::EnqueueRefused { .. }));
        assert!(
            enqueued_jobs(&client, "default").is_empty(),
            "nothing of a refused bulk"
        );
        let kept = mk("default");
        let ids = client
            .submit_all(vec![mk("skipped"), kept.clone(), mk("skipped")])
            .await
            .unwrap();
        assert_eq!(ids, [kept.job_id]);
        assert_eq!(enqueued_jobs(&client, "default").len(), 1);
        assert!(broker.pending(&client.resource_name("skipped")).is_empty());
    }

    /// Skips jobs whose arguments say `"child":true` without running them, and fails those whose
    /// metadata says `deny`.
    struct Guard;

    impl Middleware for Guard {
        fn perform<'a>(
            &'a self,
            ctx: &'a JobContext,
            next: Next<'a>,
        ) -> BoxFuture<'a, std::result::Result<(), JobError>> {
            if ctx.metadata().contains_key("deny") {
                return Box::pin(async { Err(JobError::new(Gone)) });
            }
            if next.arguments().contains("\"child\":true") {
                return Box::pin(async { Ok(()) });
            }
            next.run(ctx)
        }
    }

    #[tokio::test]
    async fn a_perform_hook_skips_a_job_or_fails_it_under_its_retry_policy() {
        let (client, _) = memory_client();
        let client = client.with_middleware(Guard);
        let skipped = Probe {
            fail: 0,
            child: true,
        }
        .perform_later(&client)
        .await
        .unwrap();
        let mut denied = Envelope::new(
            "MiddlewareProbe",
            "default",
            serde_json::json!({"fail": 0, "child": false}),
        );
        denied.metadata.insert("deny".into(), "yes".into());
        let denied_id = denied.job_id;
        client.submit(denied, None).await.unwrap();
        let summary = perform_enqueued_jobs(&client, "default").await.unwrap();
        assert_eq!((summary.succeeded, summary.discarded), (1, 1));
        assert!(seen(skipped).is_empty(), "the skipped job did not run");
        assert!(
            seen(denied_id).is_empty(),
            "the failed one did not run either"
        );
    }

    tokio::task_local! {
        static TENANT: String;
    }

    /// The module's example: the tenant from the enqueuing task to the job, and on to its
    /// children.
    struct Tenant;

    impl Middleware for Tenant {
        fn enqueue<'a>(
            &'a self,
            mut jobs: Vec<Envelope>,
            next: EnqueueNext<'a>,
        ) -> BoxFuture<'a, Result<Vec<Uuid>>> {
            if let Ok(t) = TENANT.try_with(Clone::clone) {
                for j in &mut jobs {
                    j.metadata.insert("tenant".into(), t.clone());
                }
            }
            next.run(jobs)
        }

        fn perform<'a>(
            &'a self,
            ctx: &'a JobContext,
            next: Next<'a>,
        ) -> BoxFuture<'a, std::result::Result<(), JobError>> {
            let t = ctx.metadata().get("tenant").cloned().unwrap_or_default();
            Box::pin(TENANT.scope(t, next.run(ctx)))
        }
    }

    #[derive(Serialize, Deserialize)]
    struct Parent;

    static CHILDREN: Mutex<Vec<Uuid>> = Mutex::new(Vec::new());

    impl Job for Parent {
        const NAME: &'static str = "MiddlewareParent";
        async fn perform(&self, ctx: &JobContext) -> std::result::Result<(), JobError> {
            let id = Probe {
                fail: 0,
                child: false,
            }
            .perform_later(ctx.client())
            .await
            .map_err(JobError::new)?;
            CHILDREN.lock().unwrap().push(id);
            Ok(())
        }
    }
    register_job!(Parent);

    #[tokio::test]
    async fn a_tenant_set_by_the_caller_reaches_the_job_and_the_jobs_it_enqueues() {
        let (client, _) = memory_client();
        let client = client.with_middleware(Tenant);
        let parent = TENANT
            .scope("acme".to_string(), Parent.perform_later(&client))
            .await
            .unwrap();
        assert_eq!(
            enqueued_jobs(&client, "default")[0]
                .metadata
                .get("tenant")
                .map(String::as_str),
            Some("acme")
        );
        perform_enqueued_jobs(&client, "default").await.unwrap();
        let child = *CHILDREN.lock().unwrap().last().unwrap();
        assert_ne!(child, parent);
        // The child ran (the drain runs jobs enqueued on the same queue) with the tenant.
        assert_eq!(seen(child), ["parent trail= tenant=acme"]);
        let (client_plain, _) = memory_client();
        let plain = Parent.perform_later(&client_plain).await.unwrap();
        assert!(enqueued_jobs(&client_plain, "default")
            .iter()
            .all(|e| e.job_id != plain || e.metadata.is_empty()));
    }

    /// The store keeps the metadata (a worker's start without a store-made row too), and a
    /// retry from the store (the dashboard's, the API's) runs with it.
    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn the_store_keeps_the_metadata_and_a_retry_from_it_carries_it() {
        let trail = Trail::default();
        let store: Arc<dyn crate::store::JobStore> = Arc::new(
            crate::store::SqlStore::connect("sqlite::memory:")
                .await
                .unwrap(),
        );
        let client = marked(&trail).with_store(store.clone());
        let id = probe(&client, 2).await;
        client.flush().await;
        let rec = store.get(id).await.unwrap().unwrap();
        assert_eq!(rec.metadata.get("trail").map(String::as_str), Some("AB"));
        let summary = perform_enqueued_jobs(&client, "default").await.unwrap();
        assert_eq!(summary.discarded, 1);
        let outcome = crate::admin::jobs::retry(&client, id).await.unwrap();
        assert!(
            matches!(outcome, crate::store::RequeueOutcome::Requeued(_)),
            "{outcome:?}"
        );
        let again = enqueued_jobs(&client, "default");
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].job_id, again[0].generation), (id, 1));
        assert_eq!(
            again[0].metadata.get("trail").map(String::as_str),
            Some("AB")
        );

        // A job enqueued without a store gets its row when a worker with one starts it.
        let mut env = Envelope::new(
            "MiddlewareProbe",
            "default",
            serde_json::json!({"fail": 0, "child": false}),
        );
        env.metadata.insert("tenant".into(), "acme".into());
        let storeless = env.job_id;
        let (bare, broker) = memory_client();
        bare.submit(env, None).await.unwrap();
        let with_store =
            crate::Client::with_memory_broker(broker, Default::default()).with_store(store.clone());
        perform_enqueued_jobs(&with_store, "default").await.unwrap();
        let rec = store.get(storeless).await.unwrap().unwrap();
        assert_eq!(rec.metadata.get("tenant").map(String::as_str), Some("acme"));
    }
}
