//! The operator layer (Sidekiq's `api.rb` is the model): what an operator does to queues, the
//! morgue and stored jobs. The CLI (`worker clear`, `worker morgue ...`), the HTTP API and the
//! dashboard all call these functions, and none of them acts on the broker or the store for an
//! operator by itself.
//!
//! - [`clear`]: empty a queue (its backlog, leased and scheduled jobs).
//! - [`verify`]: check a queue's subscriptions against what `worker queues setup` creates.
//! - [`workers_of`]: the worker processes alive on a queue, from their heartbeats in the store.
//! - [`morgue`]: list, retry and purge dead jobs.
//! - [`jobs`]: retry, cancel or delete a stored job, or every job a filter matches.

pub mod jobs;
pub mod morgue;
mod queue;

pub(crate) use queue::require_subscription;
pub use queue::{clear, verify, workers_of, Cleared, Verdict};
