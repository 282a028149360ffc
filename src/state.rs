//! Application state: what jobs need from the application (a database pool, an HTTP client, a
//! mailer), given to the worker once and read by each job from its context (apalis's `Data<T>`,
//! axum's `State`).
//!
//! ```
//! use pubsub_jobs::{Job, JobContext, JobError, StateType};
//! # #[derive(Clone)] struct Pool;
//! # impl Pool { async fn mark_sent(&self, _: u64) -> Result<(), std::io::Error> { Ok(()) } }
//!
//! /// Given to the worker with `Worker::state(AppState { .. })`.
//! struct AppState {
//!     pool: Pool,
//! }
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct SendInvoice { invoice_id: u64 }
//!
//! impl Job for SendInvoice {
//!     const NAME: &'static str = "SendInvoice";
//!     // A worker without an `AppState` refuses to start, naming this class and the type.
//!     const STATE: &'static [StateType] = &[StateType::of::<AppState>()];
//!
//!     async fn perform(&self, ctx: &JobContext) -> Result<(), JobError> {
//!         let app = ctx.state::<AppState>()?;
//!         app.pool.mark_sent(self.invoice_id).await?;
//!         Ok(())
//!     }
//! }
//! ```
//!
//! Each type is given once (a second value of the same type replaces the first); several types
//! may be given. A worker started without state costs nothing per job.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

/// Typed values shared by every job a worker runs: at most one value per type. Cheap to clone.
#[derive(Clone, Default)]
pub struct State {
    /// `None` until a value is given, so that a worker without state clones nothing per job.
    values: Option<Arc<HashMap<TypeId, Value>>>,
}

#[derive(Clone)]
struct Value {
    value: Arc<dyn Any + Send + Sync>,
    type_name: &'static str,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.type_names()).finish()
    }
}

impl State {
    /// No state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `value`, replacing a value of the same type.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        let values = Arc::make_mut(self.values.get_or_insert_with(Arc::default));
        values.insert(
            TypeId::of::<T>(),
            Value {
                value: Arc::new(value),
                type_name: std::any::type_name::<T>(),
            },
        );
    }

    /// [`State::insert`], by value.
    pub fn with<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.insert(value);
        self
    }

    /// Adds every value of `other`, replacing values of the same types.
    pub fn merge(&mut self, other: &State) {
        let Some(theirs) = &other.values else {
            return;
        };
        let values = Arc::make_mut(self.values.get_or_insert_with(Arc::default));
        values.extend(theirs.iter().map(|(k, v)| (*k, v.clone())));
    }

    /// The value of type `T`, if one was given.
    pub fn get<T: 'static>(&self) -> Option<&T> {
        self.values
            .as_ref()?
            .get(&TypeId::of::<T>())?
            .value
            .downcast_ref::<T>()
    }

    /// Whether a value of the type `ty` was given.
    pub fn contains(&self, ty: &StateType) -> bool {
        self.values
            .as_ref()
            .is_some_and(|v| v.contains_key(&(ty.id)()))
    }

    /// The Rust type names of the values given, sorted.
    pub fn type_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self
            .values
            .iter()
            .flat_map(|v| v.values().map(|v| v.type_name))
            .collect();
        names.sort_unstable();
        names
    }
}

/// A type of application state a job needs ([`Job::STATE`](crate::Job::STATE)).
#[derive(Clone, Copy)]
pub struct StateType {
    id: fn() -> TypeId,
    name: fn() -> &'static str,
}

impl StateType {
    /// The type `T`.
    pub const fn of<T: 'static>() -> Self {
        Self {
            id: TypeId::of::<T>,
            name: std::any::type_name::<T>,
        }
    }

    /// The Rust type name.
    pub fn name(&self) -> &'static str {
        (self.name)()
    }
}

impl std::fmt::Debug for StateType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What [`JobContext::state`](crate::JobContext::state) fails with when the worker was not
/// given a value of the type asked for.
#[derive(Clone, Debug, thiserror::Error)]
#[error(
    "job class {job_class} asks for application state of type {type_name}, which this worker was \
     not given: give it with Worker::state (or pubsub_jobs_cli::cli::main_with_state), and list \
     it in the job's Job::STATE so that a worker without it refuses to start"
)]
#[non_exhaustive]
pub struct MissingState {
    /// The job class that asked.
    pub job_class: String,
    /// The Rust type it asked for.
    pub type_name: &'static str,
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::testing::{drain, memory_client, morgue_records, perform_enqueued_jobs_with};
    use crate::{
        register_job, Error, Job, JobContext, JobError, Registry, RetryPolicy, Worker, WorkerConfig,
    };

    /// Stands for a database pool: counts the jobs that used it.
    #[derive(Default)]
    struct Db(AtomicU32);
    /// Stands for a second kind of state.
    struct Prefix(&'static str);

    #[derive(Serialize, Deserialize)]
    struct UsesState {
        n: u32,
    }

    impl Job for UsesState {
        const NAME: &'static str = "StateProbeUses";
        const STATE: &'static [StateType] = &[StateType::of::<Db>(), StateType::of::<Prefix>()];
        fn queue(&self) -> &str {
            "state-uses"
        }
        async fn perform(&self, ctx: &JobContext) -> Result<(), JobError> {
            let db = ctx.state::<Db>()?;
            db.0.fetch_add(self.n, Ordering::SeqCst);
            ctx.set_result(&format!("{}{}", ctx.state::<Prefix>()?.0, self.n))
        }
    }
    // Not in the inventory: every worker of this test binary would need its state.
    fn uses_state() -> Registry {
        Registry::new().register::<UsesState>()
    }

    /// Asks for state it does not list, and no worker gives it.
    #[derive(Serialize, Deserialize)]
    struct Undeclared;

    impl Job for Undeclared {
        const NAME: &'static str = "StateProbeUndeclared";
        fn queue(&self) -> &str {
            "state-undeclared"
        }
        fn retry_policy() -> RetryPolicy {
            RetryPolicy::default().no_retries()
        }
        async fn perform(&self, ctx: &JobContext) -> Result<(), JobError> {
            ctx.state::<std::collections::BTreeSet<u8>>()?;
            Ok(())
        }
    }
    register_job!(Undeclared);

    #[tokio::test]
    async fn jobs_read_every_type_the_worker_was_given() {
        let (client, _broker) = memory_client();
        client
            .perform_all_later((1..=10).map(|n| UsesState { n }))
            .await
            .unwrap();
        // The worker gets a clone of `state`: both hold the one Db.
        let state = State::new().with(Db::default()).with(Prefix("#"));
        let given = state.clone();
        let summary = drain(&client, "state-uses", |w| {
            w.with_registry(uses_state()).with_state(given)
        })
        .await
        .unwrap();
        assert_eq!(summary.succeeded, 10, "{summary:?}");
        assert_eq!(
            state.get::<Db>().map(|d| d.0.load(Ordering::SeqCst)),
            Some(55),
            "each job added its n to the one Db the worker was given"
        );
    }

    #[tokio::test]
    async fn a_type_nobody_gave_fails_the_job_naming_the_type_and_the_class() {
        let (client, broker) = memory_client();
        Undeclared.perform_later(&client).await.unwrap();
        let summary = perform_enqueued_jobs_with(&client, "state-undeclared", State::new())
            .await
            .unwrap();
        assert_eq!(summary.morgued, 1, "{summary:?}");
        let dead = morgue_records(&client, &broker);
        let error = &dead[0].error;
        assert!(
            error.contains("StateProbeUndeclared") && error.contains("BTreeSet<u8>"),
            "{error}"
        );
        // Given it, the same job runs.
        Undeclared.perform_later(&client).await.unwrap();
        let given = State::new().with(std::collections::BTreeSet::<u8>::new());
        let summary = perform_enqueued_jobs_with(&client, "state-undeclared", given)
            .await
            .unwrap();
        assert_eq!(summary.succeeded, 1, "{summary:?}");
    }

    #[tokio::test]
    async fn a_worker_without_state_a_job_lists_refuses_to_start_naming_both() {
        let (client, _broker) = memory_client();
        let registry = uses_state();
        // Already cancelled: a worker that started anyway returns at once, and the test fails
        // instead of waiting for it.
        let stopped = tokio_util::sync::CancellationToken::new();
        stopped.cancel();
        let run = |state: State| {
            Worker::new(client.clone(), WorkerConfig::new("state-uses"))
                .with_registry(registry.clone())
                .with_state(state)
                .run(stopped.clone())
        };
        let err = run(State::new().with(Db::default())).await.unwrap_err();
        assert!(
            matches!(&err, Error::StateMissing { job_class: "StateProbeUses", type_name } if type_name.ends_with("Prefix")),
            "{err}"
        );
        assert!(err.to_string().contains("Worker::state"), "{err}");
        assert!(registry
            .check_state(&State::new().with(Db::default()).with(Prefix("")))
            .is_ok());
    }

    #[derive(Debug, PartialEq)]
    struct Pool(u32);
    struct Http;

    #[test]
    fn values_are_found_by_type_and_replaced_by_a_second_of_the_same_type() {
        let empty = State::new();
        assert!(empty.get::<Pool>().is_none());
        assert!(empty.values.is_none(), "no state allocates nothing");
        let mut state = State::new().with(Pool(1)).with(Http);
        assert_eq!(state.get::<Pool>(), Some(&Pool(1)));
        assert!(state.get::<Http>().is_some());
        assert!(state.get::<String>().is_none());
        state.insert(Pool(2));
        assert_eq!(state.get::<Pool>(), Some(&Pool(2)));
        assert!(state.contains(&StateType::of::<Http>()));
        assert!(!state.contains(&StateType::of::<String>()));
        let clone = state.clone();
        state.insert(Pool(3));
        assert_eq!(
            clone.get::<Pool>(),
            Some(&Pool(2)),
            "a clone keeps its values"
        );
        let mut merged = State::new().with(Pool(9));
        merged.merge(&state);
        assert_eq!(merged.get::<Pool>(), Some(&Pool(3)));
        assert_eq!(merged.type_names().len(), 2);
        assert!(format!("{merged:?}").contains("Http"));
    }
}
