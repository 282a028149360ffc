//! Queue names and the Pub/Sub resources behind them.
//!
//! A queue `q` is a topic `q` plus a subscription `q` (both with the optional app prefix), and a
//! companion `q.scheduled` topic and subscription holding jobs that are not due yet.

use crate::error::{Error, Result};

/// Suffix of the per-queue topic and subscription that hold jobs not yet due.
pub(crate) const SCHEDULED_SUFFIX: &str = ".scheduled";

/// A queue name unique to this run: `t-NAME-` and 10 random hex digits (`testing::unique_queue`).
pub(crate) fn unique_name(name: &str) -> String {
    format!(
        "t-{name}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// Checks a queue name (with the prefix it will carry) against Pub/Sub's resource name rules,
/// before any network call.
pub(crate) fn validate_queue_name(prefix: &str, name: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidQueueName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    let full = format!("{prefix}{name}");
    let longest = full.len() + SCHEDULED_SUFFIX.len();
    if full.len() < 3 {
        return bad("Pub/Sub names need at least 3 characters (prefix included)");
    }
    if longest > 255 {
        return bad(
            "too long: with prefix and the `.scheduled` suffix it must stay within 255 characters",
        );
    }
    if !full.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
        return bad("it must start with a letter");
    }
    if full.to_ascii_lowercase().starts_with("goog") {
        return bad("it must not start with `goog`");
    }
    if let Some(c) = full
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.~+%".contains(*c)))
    {
        return bad(&format!(
            "character {c:?} is not allowed (use letters, digits and - _ . ~ + %)"
        ));
    }
    if name.ends_with(SCHEDULED_SUFFIX) {
        return bad("names ending in `.scheduled` are reserved for scheduled jobs");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_refuses() {
        assert!(validate_queue_name("", "default").is_ok());
        assert!(validate_queue_name("app-", "q1").is_ok());
        for bad in [
            "",
            "ab",
            "1abc",
            "goog-q",
            "has space",
            "a/b",
            "x.scheduled",
        ] {
            let err = validate_queue_name("", bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        assert!(validate_queue_name("", &"a".repeat(250)).is_err());
    }
}
