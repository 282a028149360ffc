//! The store conformance suite: the contract of every [`JobStore`] method, checked the same way
//! against every implementation. The crate runs it against SQLite in memory in its unit tests and
//! against PostgreSQL in `tests/conformance.rs`; a new [`JobStore`] runs it with
//! [`store_conformance_tests!`](crate::store_conformance_tests).
//!
//! One file per area of the contract (River's `riverdrivertest` is the model); this file holds
//! the helpers they share and the macro. Checks may share one database: each works in a queue of its own (the `queue` argument) and
//! with fresh job ids and dedup keys, and counts only what it made.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;

use super::{
    CancelOutcome, Dedup, DeleteOutcome, EventKind, JobStatus, JobStore, ListOrder, ListQuery,
    NewJob, OutboxMessage, ProcessInfo, Requeue, RequeueOutcome, Start, StartOutcome, Submitted,
    Transition,
};

mod actions;
mod counts;
mod lifecycle;
mod list;
mod outbox;
mod periodic;
mod processes;
mod submit;

pub use actions::*;
pub use counts::*;
pub use lifecycle::*;
pub use list::*;
pub use outbox::*;
pub use periodic::*;
pub use processes::*;
pub use submit::*;

/// A fresh queue name for one check.
pub fn unique(check: &str) -> String {
    let short: String = check.split('_').filter_map(|w| w.chars().next()).collect();
    crate::queue::unique_name(&short)
}

pub(super) fn new_job(queue: &str, n: u32) -> NewJob {
    NewJob {
        id: Uuid::new_v4(),
        job_class: "Probe".into(),
        queue: queue.into(),
        arguments: serde_json::json!({ "n": n }),
        metadata: Default::default(),
        enqueued_at: Utc::now(),
        scheduled_at: None,
        dedup: None,
        message: None,
    }
}

pub(super) fn start_of(job: &NewJob, attempt: u32) -> Start {
    Start {
        id: job.id,
        job_class: job.job_class.clone(),
        queue: job.queue.clone(),
        arguments: job.arguments.clone(),
        metadata: Default::default(),
        attempt,
        enqueued_at: job.enqueued_at,
        due_at: job.enqueued_at,
        generation: 0,
    }
}

pub(super) async fn status(s: &dyn JobStore, id: Uuid) -> JobStatus {
    s.get(id)
        .await
        .expect("get")
        .expect("the job exists")
        .status
}

pub(super) async fn kinds(s: &dyn JobStore, id: Uuid) -> Vec<EventKind> {
    s.events(id)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

/// Runs the whole store conformance suite as `#[tokio::test]`s, one per check, each on the
/// store that `$make` (an async closure returning `Arc<dyn JobStore>`) gives:
///
/// ```ignore
/// pubsub_jobs::store_conformance_tests!(|| async { my_store().await });
/// ```
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@each $make;
            submitted_jobs_read_back,
            dedup_returns_the_holder,
            a_job_life_is_recorded,
            morgued_and_discarded_are_final,
            cancel_and_start_exclude_each_other,
            start_records_an_unrecorded_job,
            list_pages_newest_first,
            list_views_cut_large_values,
            queue_counts_are_exact,
            the_outbox_claims_once_per_lease_until_published,
            a_started_job_leaves_the_outbox,
            queue_counts_stay_exact,
            a_batch_records_like_one_by_one,
            bulk_submits_read_back,
            finished_executions_are_not_started_again,
            filters_by_class_and_text,
            requeue_and_delete_follow_the_status,
            throughput_counts_finished_executions,
            heartbeats_list_live_processes,
            scheduled_jobs_list_soonest_due_first,
            an_interrupted_execution_is_pending_until_it_resumes,
            cleared_jobs_end_cancelled_and_leave_the_outbox,
            progress_and_logs_follow_the_running_execution
        );
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn each_tick_is_claimed_once() {
            let store = ($make)().await;
            let queue = $crate::store::conformance::unique("each_tick");
            $crate::store::conformance::each_tick_is_claimed_once(store, &queue).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_dedup_creates_one_job() {
            let store = ($make)().await;
            let queue = $crate::store::conformance::unique("concurrent_dedup");
            $crate::store::conformance::concurrent_dedup_creates_one_job(store, &queue).await;
        }
    };
    (@each $make:expr; $($check:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let store = ($make)().await;
                let queue = $crate::store::conformance::unique(stringify!($check));
                $crate::store::conformance::$check(&*store, &queue).await;
            }
        )*
    };
}
