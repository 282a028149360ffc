//! Tools outside Rust that some tests drive (Ruby with Rails' ActiveJob, chromium and
//! chromedriver). A test whose tool is missing prints one line naming what it skipped and how to
//! install it, and passes; with `PUBSUB_JOBS_TEST_REQUIRE_ALL=1` (set by `.ci/run`) it fails
//! instead, so CI never skips anything. Shared by `tests/` and `worker/tests/` (`#[path]`).
#![allow(dead_code)]

use std::process::{Command, Stdio};

/// Whether `PUBSUB_JOBS_TEST_REQUIRE_ALL` asks for every tool.
pub(crate) fn require_all() -> bool {
    std::env::var("PUBSUB_JOBS_TEST_REQUIRE_ALL").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// True when `program args...` runs and exits 0 (its output is discarded).
pub(crate) fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Decides whether `test` can run: `present` says whether its tool `what` is there. If not,
/// prints one line naming the test, the tool and `install` and returns false (the test returns
/// and passes), or panics under `PUBSUB_JOBS_TEST_REQUIRE_ALL=1`.
pub(crate) fn have(test: &str, what: &str, install: &str, present: bool) -> bool {
    if present {
        return true;
    }
    let line = format!("skipped {test}: {what} is missing (install: {install})");
    assert!(
        !require_all(),
        "{line}; PUBSUB_JOBS_TEST_REQUIRE_ALL=1 forbids skipping"
    );
    // Written to stderr directly, past the test harness's capture, so that it shows.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{line}\n").as_bytes());
    false
}

/// Ruby with Rails' ActiveJob and GlobalID (Debian's `ruby-activejob`).
pub(crate) fn ruby_activejob(test: &str) -> bool {
    have(
        test,
        "ruby with ActiveJob",
        "apt-get install ruby-activejob",
        runs("ruby", &["-e", "require 'active_job'; require 'globalid'"]),
    )
}

/// The chromedriver to run: `CHROMEDRIVER`, else `chromedriver` on PATH.
pub(crate) fn chromedriver_path() -> String {
    std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into())
}

/// Debian's chromium and chromedriver.
pub(crate) fn chromium(test: &str) -> bool {
    let present = (std::path::Path::new("/usr/bin/chromium").exists()
        || runs("chromium", &["--version"]))
        && runs(&chromedriver_path(), &["--version"]);
    have(
        test,
        "chromium or chromedriver",
        "apt-get install chromium chromium-driver",
        present,
    )
}
