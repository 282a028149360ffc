//! The job registry: class name -> how to deserialize and perform. Step 3 of a job's life: the
//! worker's dispatch looks each message's `job_class` up here.
//!
//! By default job types add themselves at link time with [`register_job!`](crate::register_job)
//! (through `inventory`) and [`Registry::from_inventory`] collects them. A registry can also be
//! built by hand, and given to a worker ([`Worker::with_registry`](crate::Worker::with_registry))
//! or the HTTP API:
//!
//! ```
//! # use pubsub_jobs::{Job, JobContext, JobError, Registry};
//! # #[derive(serde::Serialize, serde::Deserialize)] struct Resize;
//! # impl Job for Resize {
//! #     const NAME: &'static str = "Resize";
//! #     async fn perform(&self, _: &JobContext) -> Result<(), JobError> { Ok(()) }
//! # }
//! let registry = Registry::new().register::<Resize>();
//! assert!(registry.get("Resize").is_some());
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use futures::future::BoxFuture;

use crate::envelope::Envelope;
use crate::error::JobError;
use crate::error::{Error, Result};
use crate::job::{Job, JobContext};
use crate::retry_policy::RetryPolicy;

/// A job, its type erased, ready to perform.
pub trait ErasedJob: Send + Sync {
    /// Runs `perform`.
    fn perform_erased<'a>(&'a self, ctx: &'a JobContext) -> BoxFuture<'a, Result<(), JobError>>;
    /// The job's queue ([`Job::queue`]).
    fn queue_erased(&self) -> &str;
}

impl<T: Job> ErasedJob for T {
    fn perform_erased<'a>(&'a self, ctx: &'a JobContext) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(self.perform(ctx))
    }

    fn queue_erased(&self) -> &str {
        self.queue()
    }
}

/// One registered job class. Built by [`register_job!`](crate::register_job) or
/// [`Registry::register`].
#[derive(Clone, Copy)]
pub struct JobRegistration {
    name: &'static str,
    type_name: fn() -> &'static str,
    decode: fn(&serde_json::Value) -> Result<Box<dyn ErasedJob>, ArgumentsError>,
    decode_json: fn(&str) -> Result<Box<dyn ErasedJob>, ArgumentsError>,
    retry_policy: fn() -> RetryPolicy,
    timeout: fn() -> Duration,
    state: &'static [crate::StateType],
}

impl std::fmt::Debug for JobRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobRegistration")
            .field("name", &self.name)
            .field("type", &(self.type_name)())
            .finish_non_exhaustive()
    }
}

/// Why arguments do not deserialize into a job.
#[derive(Clone, Debug, PartialEq)]
pub struct ArgumentsError {
    /// The path of the field at fault, when serde names one.
    pub path: Option<String>,
    /// serde's message.
    pub message: String,
}

impl std::fmt::Display for ArgumentsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.path {
            Some(path) => write!(f, "field `{path}`: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

fn decode<T: Job>(value: &serde_json::Value) -> Result<Box<dyn ErasedJob>, ArgumentsError> {
    // One positional argument (`perform(user_id)` in Rails: `[42]`) also fits a newtype job
    // (`struct Job(u64)`), which serde reads from the bare value: tried only if the array fails.
    // Read from the envelope's value in place: no copy of the arguments.
    let lone = match value {
        serde_json::Value::Array(items) if items.len() == 1 => Some(&items[0]),
        _ => None,
    };
    serde_path_to_error::deserialize::<_, T>(value)
        .or_else(|e| match lone {
            Some(v) => serde_path_to_error::deserialize::<_, T>(v).map_err(|_| e),
            None => Err(e),
        })
        .map(|j| Box::new(j) as Box<dyn ErasedJob>)
        .map_err(|e| {
            let path = e.path().to_string();
            ArgumentsError {
                path: (path != ".").then_some(path),
                message: e.inner().to_string(),
            }
        })
}

/// [`decode`] from JSON text, without building a JSON value: what the worker does with a
/// received envelope's arguments. Text the job's `Deserialize` refuses goes the value's way,
/// which also tries the lone positional argument and names the field at fault: the job and the
/// error are the ones [`decode`] gives.
fn decode_json<T: Job>(json: &str) -> Result<Box<dyn ErasedJob>, ArgumentsError> {
    if let Ok(job) = serde_json::from_str::<T>(json) {
        return Ok(Box::new(job));
    }
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| ArgumentsError {
        path: None,
        message: e.to_string(),
    })?;
    decode::<T>(&value)
}

impl JobRegistration {
    /// The registration of job type `T`.
    pub const fn of<T: Job>() -> Self {
        Self {
            name: T::NAME,
            type_name: std::any::type_name::<T>,
            decode: decode::<T>,
            decode_json: decode_json::<T>,
            retry_policy: T::retry_policy,
            timeout: T::timeout,
            state: T::STATE,
        }
    }

    /// The application state the job needs ([`Job::STATE`]).
    pub fn state(&self) -> &'static [crate::StateType] {
        self.state
    }

    /// The class name on the wire.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The Rust type.
    pub fn type_name(&self) -> &'static str {
        (self.type_name)()
    }

    /// Deserializes arguments into the job; the error names the field at fault.
    pub fn decode(
        &self,
        arguments: serde_json::Value,
    ) -> Result<Box<dyn ErasedJob>, ArgumentsError> {
        (self.decode)(&arguments)
    }

    /// [`decode`](Self::decode) from the arguments' JSON text (what the worker does with a
    /// [`ReceivedEnvelope`](crate::envelope::ReceivedEnvelope)): the same job, the same error.
    pub(crate) fn decode_json(
        &self,
        arguments: &str,
    ) -> Result<Box<dyn ErasedJob>, ArgumentsError> {
        (self.decode_json)(arguments)
    }

    /// The job type's retry policy.
    pub fn retry_policy(&self) -> RetryPolicy {
        (self.retry_policy)()
    }

    /// The job type's timeout.
    pub fn timeout(&self) -> Duration {
        (self.timeout)()
    }
}

inventory::collect!(JobRegistration);

/// Registers a job type so that workers can run it.
///
/// ```ignore
/// register_job!(MockJob);
/// ```
#[macro_export]
macro_rules! register_job {
    ($t:ty) => {
        $crate::inventory::submit! {
            $crate::JobRegistration::of::<$t>()
        }
    };
}

/// The job classes a worker (or the HTTP API) can run.
#[derive(Clone, Default)]
pub struct Registry {
    jobs: BTreeMap<&'static str, JobRegistration>,
    /// The first class name registered twice by two types, reported by [`Registry::check`].
    conflict: Option<(&'static str, &'static str, &'static str)>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.jobs.keys()).finish()
    }
}

impl Registry {
    /// An empty registry, to fill with [`Registry::register`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Collects the job classes registered with [`register_job!`](crate::register_job); a class
    /// name registered by two types is an error naming both.
    pub fn from_inventory() -> Result<Self> {
        Self::from_registrations(inventory::iter::<JobRegistration>)
    }

    /// Builds a registry from explicit registrations; a class name registered by two different
    /// types is an error naming both.
    pub fn from_registrations<'a>(
        regs: impl IntoIterator<Item = &'a JobRegistration>,
    ) -> Result<Self> {
        regs.into_iter()
            .fold(Self::new(), |r, reg| r.add(*reg))
            .check()
    }

    /// Adds job type `J`. A class name already taken by another type is reported by
    /// [`Registry::check`], which workers and the API call before they start.
    pub fn register<J: Job>(self) -> Self {
        self.add(JobRegistration::of::<J>())
    }

    fn add(mut self, reg: JobRegistration) -> Self {
        if let Some(first) = self.jobs.get(reg.name) {
            if first.type_name() != reg.type_name() && self.conflict.is_none() {
                self.conflict = Some((reg.name, first.type_name(), reg.type_name()));
            }
            return self;
        }
        self.jobs.insert(reg.name, reg);
        self
    }

    /// `Ok(self)` unless two types were registered under one class name (the error names both).
    pub fn check(self) -> Result<Self> {
        match self.conflict {
            Some((name, first, second)) => Err(Error::DuplicateJobClass {
                name,
                first,
                second,
            }),
            None => Ok(self),
        }
    }

    /// Checks that `state` holds every type of application state a class needs
    /// ([`Job::STATE`]); the first one missing is an error naming the class and the type.
    pub fn check_state(&self, state: &crate::State) -> Result<()> {
        for reg in self.jobs.values() {
            if let Some(ty) = reg.state.iter().find(|ty| !state.contains(ty)) {
                return Err(Error::StateMissing {
                    job_class: reg.name,
                    type_name: ty.name(),
                });
            }
        }
        Ok(())
    }

    /// The registration for a class name.
    pub fn get(&self, job_class: &str) -> Option<&JobRegistration> {
        self.jobs.get(job_class)
    }

    /// All registrations, sorted by class name.
    pub fn iter(&self) -> impl Iterator<Item = &JobRegistration> + '_ {
        self.jobs.values()
    }

    /// How many classes.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// True when no class is registered.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Checks that `job_class` is registered and `arguments` deserialize into it.
    pub fn validate(&self, job_class: &str, arguments: &serde_json::Value) -> Result<()> {
        self.decode(job_class, arguments.clone()).map(|_| ())
    }

    /// The job `arguments` make for class `job_class`; the error names the class or the field.
    pub fn decode(
        &self,
        job_class: &str,
        arguments: serde_json::Value,
    ) -> Result<Box<dyn ErasedJob>> {
        let reg = self
            .get(job_class)
            .ok_or_else(|| Error::UnknownJobClass(job_class.to_string()))?;
        reg.decode(arguments).map_err(|e| Error::InvalidArguments {
            job_class: job_class.to_string(),
            message: e.to_string(),
            path: e.path,
        })
    }
}

impl crate::Client {
    /// Enqueues a job given by class name and JSON arguments, as the CLI does. The class must
    /// be in `registry` and the arguments must deserialize into it (checked once, here); the job
    /// goes to `queue`, or to its own queue ([`Job::queue`]) when `None`.
    pub async fn enqueue_by_name(
        &self,
        registry: &Registry,
        job_class: &str,
        arguments: serde_json::Value,
        queue: Option<&str>,
        scheduled_at: Option<DateTime<Utc>>,
    ) -> Result<Envelope> {
        let job = registry.decode(job_class, arguments.clone())?;
        let queue = queue.unwrap_or_else(|| job.queue_erased());
        let mut env = Envelope::new(job_class, queue, arguments);
        env.scheduled_at = scheduled_at;
        self.submit(env.clone(), None).await?;
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    struct A {
        n: u32,
    }
    impl Job for A {
        const NAME: &'static str = "Same";
        async fn perform(&self, _: &JobContext) -> Result<(), JobError> {
            Ok(())
        }
    }
    #[derive(Serialize, Deserialize)]
    struct B;
    impl Job for B {
        const NAME: &'static str = "Same";
        async fn perform(&self, _: &JobContext) -> Result<(), JobError> {
            Ok(())
        }
    }
    static REG_A: JobRegistration = JobRegistration::of::<A>();
    static REG_B: JobRegistration = JobRegistration::of::<B>();

    #[test]
    fn a_duplicate_class_name_names_both_types() {
        let err = Registry::from_registrations([&REG_A, &REG_B]).expect_err("duplicate refused");
        let msg = err.to_string();
        assert!(msg.contains("\"Same\""), "{msg}");
        assert!(
            msg.contains("registry::tests::A") && msg.contains("registry::tests::B"),
            "{msg}"
        );
    }

    #[test]
    fn built_by_hand_and_a_duplicate_is_reported_by_check() {
        let r = Registry::new().register::<A>();
        assert_eq!(r.len(), 1);
        assert!(r.get("Same").is_some() && r.get("Other").is_none());
        let err = r.register::<B>().check().expect_err("duplicate refused");
        assert!(err.to_string().contains("registry::tests::B"), "{err}");
        // The same type twice is fine.
        assert!(Registry::new()
            .register::<A>()
            .register::<A>()
            .check()
            .is_ok());
    }

    #[test]
    fn validate_names_the_class_and_the_field() {
        let r = Registry::from_registrations([&REG_A]).unwrap();
        let err = r
            .validate("Same", &serde_json::json!({"n": "x"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("Same") && err.contains("field `n`"), "{err}");
        let err = r
            .validate("Nope", &serde_json::json!({}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"Nope\""), "{err}");
    }

    /// A job whose queue is its argument, so that a decoded job shows what it was decoded from.
    #[derive(Serialize, Deserialize)]
    struct Routed(String);
    impl Job for Routed {
        const NAME: &'static str = "Routed";
        fn queue(&self) -> &str {
            &self.0
        }
        async fn perform(&self, _: &JobContext) -> Result<(), JobError> {
            Ok(())
        }
    }

    #[derive(Serialize, Deserialize)]
    struct Named {
        queue: String,
        n: u32,
    }
    impl Job for Named {
        const NAME: &'static str = "Named";
        fn queue(&self) -> &str {
            &self.queue
        }
        async fn perform(&self, _: &JobContext) -> Result<(), JobError> {
            Ok(())
        }
    }

    #[test]
    fn from_json_text_the_same_job_and_the_same_error_as_from_a_value() {
        let routed = JobRegistration::of::<Routed>();
        let named = JobRegistration::of::<Named>();
        let cases: [(&JobRegistration, &str); 7] = [
            (&routed, r#""mailers""#),
            // One positional argument, as Rails writes `perform(queue)`.
            (&routed, r#"["mailers"]"#),
            (&named, r#"{"queue":"a","n":1}"#),
            // A duplicate key: the value keeps the last; the text must agree.
            (&named, r#"{"queue":"a","n":1,"queue":"b"}"#),
            (&named, r#"{"queue":"a","n":"x"}"#),
            (&named, r#"{"queue":"a"}"#),
            (&routed, r#"[1, 2]"#),
        ];
        for (reg, json) in cases {
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            let from_value = reg.decode(value).map(|j| j.queue_erased().to_string());
            let from_text = reg.decode_json(json).map(|j| j.queue_erased().to_string());
            assert_eq!(from_text, from_value, "{json}");
        }
        assert_eq!(
            named
                .decode_json(r#"{"queue":"a","n":"x"}"#)
                .err()
                .and_then(|e| e.path),
            Some("n".to_string())
        );
        // Text that is no JSON value at all says why.
        let err = named.decode_json(r#"{"queue":"a","n":1e400}"#).err();
        let message = err.map(|e| e.message).unwrap_or_default();
        assert!(message.contains("out of range"), "{message}");
    }
}
