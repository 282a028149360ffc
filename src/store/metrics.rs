//! Figures for `/metrics`.

use super::*;

/// A histogram: cumulative counts at each upper bound (seconds), the total count and sum.
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    /// (upper bound in seconds, cumulative count).
    pub buckets: Vec<(f64, u64)>,
    /// All observations.
    pub count: u64,
    /// Their sum in seconds.
    pub sum_seconds: f64,
}

/// The figures `/metrics` shows.
#[derive(Clone, Debug, Default)]
pub struct MetricsSnapshot {
    /// Events by kind (jobs by outcome).
    pub events: Vec<(EventKind, u64)>,
    /// Run time of finished executions.
    pub run_time: Histogram,
    /// Time from due to first start.
    pub queue_latency: Histogram,
}

/// Histogram bounds, seconds.
pub const HISTOGRAM_BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
