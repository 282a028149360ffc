//! Retry policy, ActiveJob style: what happens after `perform` fails.
//!
//! Rules are checked in order; the first whose error type matches (by downcast) decides:
//! `retry_on` retries after a [`Wait`] until that rule's attempts are spent, then the morgue;
//! `discard_on` acks the job with a log line. An error no rule matches follows the fallback,
//! by default 3 executions in all, at least 5 minutes apart (see [`RetryPolicy::default`]).
//!
//! ```
//! use pubsub_jobs::{RetryPolicy, Wait};
//! use std::time::Duration;
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("rate limited")]
//! struct RateLimited;
//! #[derive(Debug, thiserror::Error)]
//! #[error("record gone")]
//! struct RecordGone;
//!
//! let policy = RetryPolicy::default()
//!     .retry_on::<RateLimited>(Wait::exponential(Duration::from_secs(1)).jitter(0.15), 8)
//!     .discard_on::<RecordGone>();
//! ```

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use crate::error::JobError;

pub(crate) use crate::envelope::DEFAULT_RULE_KEY;

type WaitFn = Arc<dyn Fn(u32, &JobError) -> Duration + Send + Sync>;

#[derive(Clone)]
enum WaitKind {
    Fixed(Duration),
    Exponential { base: Duration, max: Duration },
    PolynomiallyLonger,
    Custom(WaitFn),
}

/// How long to wait before a retry. `attempt` below is the number of failures so far under the rule
/// (1 after the first failure).
#[derive(Clone)]
pub struct Wait {
    kind: WaitKind,
    jitter: f64,
}

impl Wait {
    /// The same wait every time.
    pub fn fixed(wait: Duration) -> Self {
        Self {
            kind: WaitKind::Fixed(wait),
            jitter: 0.0,
        }
    }

    /// `base * 2^(attempt-1)`, capped at one day.
    pub fn exponential(base: Duration) -> Self {
        Self {
            kind: WaitKind::Exponential {
                base,
                max: Duration::from_secs(24 * 3600),
            },
            jitter: 0.0,
        }
    }

    /// ActiveJob's `:polynomially_longer`: `attempt^4 + 2` seconds (3 s, 18 s, 83 s, 258 s, ...).
    pub fn polynomially_longer() -> Self {
        Self {
            kind: WaitKind::PolynomiallyLonger,
            jitter: 0.0,
        }
    }

    /// A wait computed from the attempt number and the error.
    pub fn custom(f: impl Fn(u32, &JobError) -> Duration + Send + Sync + 'static) -> Self {
        Self {
            kind: WaitKind::Custom(Arc::new(f)),
            jitter: 0.0,
        }
    }

    /// Adds up to `fraction` of the wait at random (never less than the wait), as ActiveJob's
    /// `jitter:` does. Values are clamped to 0..=1.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// The wait before retry number `attempt` (1-based) after `error`.
    pub fn delay(&self, attempt: u32, error: &JobError) -> Duration {
        let attempt = attempt.max(1);
        let base = match &self.kind {
            WaitKind::Fixed(d) => *d,
            WaitKind::Exponential { base, max } => {
                let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(31));
                base.saturating_mul(factor).min(*max)
            }
            WaitKind::PolynomiallyLonger => {
                Duration::from_secs(u64::from(attempt).saturating_pow(4).saturating_add(2))
            }
            WaitKind::Custom(f) => f(attempt, error),
        };
        if self.jitter > 0.0 {
            let extra = base.as_secs_f64() * self.jitter * rand::thread_rng().gen::<f64>();
            base + Duration::from_secs_f64(extra)
        } else {
            base
        }
    }
}

impl fmt::Debug for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            WaitKind::Fixed(d) => write!(f, "fixed({d:?})")?,
            WaitKind::Exponential { base, .. } => write!(f, "exponential({base:?})")?,
            WaitKind::PolynomiallyLonger => write!(f, "polynomially_longer")?,
            WaitKind::Custom(_) => write!(f, "custom")?,
        }
        if self.jitter > 0.0 {
            write!(f, " + jitter {}", self.jitter)?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
enum Action {
    Retry { wait: Wait, attempts: u32 },
    Discard,
}

#[derive(Clone)]
struct Rule {
    key: &'static str,
    matches: fn(&JobError) -> bool,
    action: Action,
}

/// What the worker does with a failed job.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Decision {
    /// Publish the job again to run after `wait`.
    Retry {
        /// The wait before the next execution.
        wait: Duration,
    },
    /// Ack the job and log it; it will not run again.
    Discard,
    /// Send the job to the morgue: its attempts are spent.
    Morgue {
        /// The rule whose attempts are spent, for the log.
        rule: &'static str,
        /// How many failures that rule has counted.
        failures: u32,
    },
}

/// An ordered list of `retry_on` / `discard_on` rules plus a fallback for everything else.
#[derive(Clone)]
pub struct RetryPolicy {
    rules: Vec<Rule>,
    fallback_wait: Wait,
    fallback_attempts: u32,
}

impl Default for RetryPolicy {
    /// 3 executions in all (2 retries), at least 5 minutes apart (up to 15% later), then the morgue.
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            fallback_wait: Wait::fixed(Duration::from_secs(300)).jitter(0.15),
            fallback_attempts: 3,
        }
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut l = f.debug_list();
        for r in &self.rules {
            l.entry(&format_args!("{:?} on {}", r.action, r.key));
        }
        l.entry(&format_args!(
            "otherwise retry {:?} x{}",
            self.fallback_wait, self.fallback_attempts
        ));
        l.finish()
    }
}

fn matches<E: StdError + 'static>(e: &JobError) -> bool {
    e.is::<E>()
}

impl RetryPolicy {
    /// Retries failures of type `E` after `wait`, for at most `attempts` executions that failed
    /// with `E` (ActiveJob's `retry_on E, wait:, attempts:`); then the morgue.
    pub fn retry_on<E: StdError + 'static>(mut self, wait: Wait, attempts: u32) -> Self {
        self.rules.push(Rule {
            key: std::any::type_name::<E>(),
            matches: matches::<E>,
            action: Action::Retry {
                wait,
                attempts: attempts.max(1),
            },
        });
        self
    }

    /// Acks failures of type `E` with a log line instead of retrying (ActiveJob's `discard_on`).
    pub fn discard_on<E: StdError + 'static>(mut self) -> Self {
        self.rules.push(Rule {
            key: std::any::type_name::<E>(),
            matches: matches::<E>,
            action: Action::Discard,
        });
        self
    }

    /// Sets the rule for errors that no `retry_on` / `discard_on` matches.
    pub fn otherwise(mut self, wait: Wait, attempts: u32) -> Self {
        self.fallback_wait = wait;
        self.fallback_attempts = attempts.max(1);
        self
    }

    /// No retries for unmatched errors: the first failure goes to the morgue.
    pub fn no_retries(self) -> Self {
        self.otherwise(Wait::fixed(Duration::ZERO), 1)
    }

    /// Decides what to do after `error`, counting it in `exception_executions` (the per-rule failure
    /// counts carried in the job's envelope).
    pub fn decide(
        &self,
        error: &JobError,
        exception_executions: &mut BTreeMap<String, u32>,
    ) -> Decision {
        let (key, action) = match self.rules.iter().find(|r| (r.matches)(error)) {
            Some(rule) => (rule.key, rule.action.clone()),
            None => (
                DEFAULT_RULE_KEY,
                Action::Retry {
                    wait: self.fallback_wait.clone(),
                    attempts: self.fallback_attempts,
                },
            ),
        };
        match action {
            Action::Discard => Decision::Discard,
            Action::Retry { wait, attempts } => {
                let count = exception_executions.entry(key.to_string()).or_insert(0);
                // Saturating: the count comes from the wire.
                *count = count.saturating_add(1);
                let failures = *count;
                if failures < attempts {
                    Decision::Retry {
                        wait: wait.delay(failures, error),
                    }
                } else {
                    Decision::Morgue {
                        rule: key,
                        failures,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("a")]
    struct A;
    #[derive(Debug, thiserror::Error)]
    #[error("b")]
    struct B;

    #[test]
    fn a_failure_count_at_its_maximum_saturates_and_spends_the_rule() {
        let p = RetryPolicy::default();
        let mut counts = BTreeMap::from([(DEFAULT_RULE_KEY.to_string(), u32::MAX)]);
        match p.decide(&JobError::msg("boom"), &mut counts) {
            Decision::Morgue { failures, .. } => assert_eq!(failures, u32::MAX),
            other => panic!("a spent rule goes to the morgue: {other:?}"),
        }
        assert_eq!(counts[DEFAULT_RULE_KEY], u32::MAX);
    }

    #[test]
    fn default_policy_retries_twice_five_minutes_apart_then_morgue() {
        let p = RetryPolicy::default();
        let mut counts = BTreeMap::new();
        for _ in 0..2 {
            match p.decide(&JobError::msg("boom"), &mut counts) {
                Decision::Retry { wait } => {
                    assert!(wait >= Duration::from_secs(300), "{wait:?}");
                    assert!(wait <= Duration::from_secs(345), "{wait:?}");
                }
                other => panic!("expected a retry, got {other:?}"),
            }
        }
        assert_eq!(
            p.decide(&JobError::msg("boom"), &mut counts),
            Decision::Morgue {
                rule: DEFAULT_RULE_KEY,
                failures: 3
            }
        );
    }

    #[test]
    fn rules_match_by_type_and_count_separately() {
        let p = RetryPolicy::default()
            .retry_on::<A>(Wait::fixed(Duration::from_secs(1)), 2)
            .discard_on::<B>();
        let mut counts = BTreeMap::new();
        assert_eq!(
            p.decide(&A.into(), &mut counts),
            Decision::Retry {
                wait: Duration::from_secs(1)
            }
        );
        assert_eq!(p.decide(&B.into(), &mut counts), Decision::Discard);
        assert!(matches!(
            p.decide(&A.into(), &mut counts),
            Decision::Morgue { failures: 2, .. }
        ));
        assert_eq!(counts.get(std::any::type_name::<A>()), Some(&2));
    }

    #[test]
    fn waits() {
        let e = JobError::msg("x");
        let poly = Wait::polynomially_longer();
        assert_eq!(poly.delay(1, &e), Duration::from_secs(3));
        assert_eq!(poly.delay(2, &e), Duration::from_secs(18));
        assert_eq!(poly.delay(3, &e), Duration::from_secs(83));
        let exp = Wait::exponential(Duration::from_secs(2));
        assert_eq!(exp.delay(1, &e), Duration::from_secs(2));
        assert_eq!(exp.delay(4, &e), Duration::from_secs(16));
        assert_eq!(exp.delay(200, &e), Duration::from_secs(24 * 3600));
        let custom = Wait::custom(|n, _| Duration::from_millis(u64::from(n) * 10));
        assert_eq!(custom.delay(3, &e), Duration::from_millis(30));
        let j = Wait::fixed(Duration::from_secs(10)).jitter(0.5);
        for _ in 0..100 {
            let d = j.delay(1, &e);
            assert!(
                d >= Duration::from_secs(10) && d <= Duration::from_secs(15),
                "{d:?}"
            );
        }
    }
}
