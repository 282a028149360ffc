//! The job registry: class name -> how to deserialize and perform. Job types add themselves at
//! link time with [`register_job!`](crate::register_job) (through `inventory`); the worker
//! dispatches each message by its `job_class`.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::error::{Error, Result};
use crate::job::{Job, JobContext, JobError};
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

/// One registered job class. Built by [`register_job!`](crate::register_job).
pub struct JobRegistration {
    name: &'static str,
    type_name: fn() -> &'static str,
    decode: fn(serde_json::Value) -> Result<Box<dyn ErasedJob>, ArgumentsError>,
    retry_policy: fn() -> RetryPolicy,
    timeout: fn() -> Duration,
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

fn decode<T: Job>(value: serde_json::Value) -> Result<Box<dyn ErasedJob>, ArgumentsError> {
    serde_path_to_error::deserialize::<_, T>(value)
        .map(|j| Box::new(j) as Box<dyn ErasedJob>)
        .map_err(|e| {
            let path = e.path().to_string();
            ArgumentsError {
                path: (path != ".").then_some(path),
                message: e.inner().to_string(),
            }
        })
}

impl JobRegistration {
    /// The registration of job type `T`.
    pub const fn of<T: Job>() -> Self {
        Self {
            name: T::NAME,
            type_name: std::any::type_name::<T>,
            decode: decode::<T>,
            retry_policy: T::retry_policy,
            timeout: T::timeout,
        }
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
        (self.decode)(arguments)
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
            $crate::registry::JobRegistration::of::<$t>()
        }
    };
}

/// Every job class linked into this binary.
pub struct Registry {
    jobs: BTreeMap<&'static str, &'static JobRegistration>,
}

impl Registry {
    /// Collects the registered job classes; a class name registered twice is an error naming both.
    pub fn from_inventory() -> Result<Self> {
        Self::from_registrations(inventory::iter::<JobRegistration>)
    }

    /// Builds a registry from explicit registrations; a class name registered by two different
    /// types is an error naming both.
    pub fn from_registrations(
        regs: impl IntoIterator<Item = &'static JobRegistration>,
    ) -> Result<Self> {
        let mut jobs: BTreeMap<&'static str, &'static JobRegistration> = BTreeMap::new();
        for r in regs {
            if let Some(first) = jobs.insert(r.name, r) {
                if first.type_name() != r.type_name() {
                    return Err(Error::DuplicateJobClass {
                        name: r.name,
                        first: first.type_name(),
                        second: r.type_name(),
                    });
                }
            }
        }
        Ok(Self { jobs })
    }

    /// The registration for a class name.
    pub fn get(&self, job_class: &str) -> Option<&'static JobRegistration> {
        self.jobs.get(job_class).copied()
    }

    /// All registrations, sorted by class name.
    pub fn iter(&self) -> impl Iterator<Item = &'static JobRegistration> + '_ {
        self.jobs.values().copied()
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
        let err = Registry::from_registrations([&REG_A, &REG_B])
            .err()
            .expect("duplicate refused");
        let msg = err.to_string();
        assert!(msg.contains("\"Same\""), "{msg}");
        assert!(
            msg.contains("registry::tests::A") && msg.contains("registry::tests::B"),
            "{msg}"
        );
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
}
