//! Shared by the store and dashboard benchmarks: the writes a worker makes for a batch of jobs.

use std::time::Duration;

use pubsub_jobs::store::{NewJob, Start, StoreOp, Transition};

/// Each job's first execution starting, as a worker records it.
pub fn starts(jobs: &[NewJob]) -> Vec<StoreOp> {
    jobs.iter()
        .map(|j| {
            StoreOp::Start(Start {
                id: j.id,
                job_class: j.job_class.clone(),
                queue: j.queue.clone(),
                arguments: j.arguments.clone(),
                metadata: Default::default(),
                attempt: 1,
                enqueued_at: j.enqueued_at,
                due_at: j.enqueued_at,
                generation: 0,
            })
        })
        .collect()
}

/// Each job's first execution ending: morgued with `dead(i)`'s error where it gives one,
/// succeeded (run `i % 300` ms) otherwise.
pub fn ends(jobs: &[NewJob], dead: impl Fn(usize) -> Option<String>) -> Vec<StoreOp> {
    jobs.iter()
        .enumerate()
        .map(|(i, j)| StoreOp::Finish {
            id: j.id,
            attempt: 1,
            transition: match dead(i) {
                Some(error) => Transition::Morgued { error },
                None => Transition::Succeeded {
                    result: None,
                    run: Duration::from_millis(i as u64 % 300),
                },
            },
        })
        .collect()
}
