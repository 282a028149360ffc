//! What the benchmarks share: medians and percentiles, a private PostgreSQL database per run,
//! and the writes a worker makes for a batch of jobs. Each benchmark is a binary in `src/bin/`
//! (the main one is `src/main.rs`); `docs/BENCHMARKS.md` has their commands and figures.

pub mod cpu;
pub mod fill;
pub mod fresh_pg;

/// The median of `v` (the upper one of an even count); NaN when empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The element of `v` with the median `key` (the upper one of an even count).
pub fn median_by<T>(mut v: Vec<T>, key: impl Fn(&T) -> f64) -> T {
    v.sort_by(|a, b| key(a).total_cmp(&key(b)));
    v.swap_remove(v.len() / 2)
}

/// The `p` quantile (0..=1) of `v`, nearest rank; 0 when empty.
pub fn quantile<T: Copy + PartialOrd + Default>(mut v: Vec<T>, p: f64) -> T {
    if v.is_empty() {
        return T::default();
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_quantiles() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 3.0);
        assert!(median(Vec::new()).is_nan());
        assert_eq!(
            median_by(vec![(1, 5.0), (2, 1.0), (3, 3.0)], |t| t.1),
            (3, 3.0)
        );
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(v.clone(), 0.5), 51);
        assert_eq!(quantile(v.clone(), 0.99), 99);
        assert_eq!(quantile(Vec::<u64>::new(), 0.5), 0);
    }
}
