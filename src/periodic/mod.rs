//! Periodic jobs: where a job enqueued by the clock starts its life. An entry is a name, a cron
//! schedule in a timezone, and the job to enqueue; a [`Scheduler`] runs in every process that
//! has the entries and a job store (the `worker` binary with `--cron FILE`), with no leader.
//!
//! Each tick is claimed once in the store (unique on entry name and tick time) by whichever
//! scheduler gets there first, which records the job in the outbox in the same transaction and
//! then publishes it: a crash between the claim and the publish loses nothing (the relay
//! publishes it), and a tick's job id is [`tick_job_id`] (UUID v5 of the name and the tick
//! time), the same everywhere. Killing any scheduler loses no tick while another runs.
//!
//! A tick more than its entry's grace period late (default 60 s: every scheduler was down, or
//! the store was) is skipped and logged once (`periodic.skipped`), unless the entry asks to
//! catch up: then its last `catch_up` missed ticks are enqueued. Daylight-saving changes follow
//! the timezone (see [`schedule`]).
//!
//! ```no_run
//! use pubsub_jobs::periodic::{PeriodicEntry, Scheduler};
//! use pubsub_jobs::{register_job, store, Client, Job, JobContext, JobError};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct NightlyReport { format: String }
//!
//! impl Job for NightlyReport {
//!     const NAME: &'static str = "NightlyReport";
//!     async fn perform(&self, _ctx: &JobContext) -> Result<(), JobError> { Ok(()) }
//! }
//! register_job!(NightlyReport);
//!
//! # async fn demo() -> pubsub_jobs::Result<()> {
//! let store = store::connect("postgres://postgres@127.0.0.1/app").await?;
//! let client = Client::from_env().await?.with_store(store);
//! let nightly = PeriodicEntry::new("nightly-report", "0 0 3 * * *", &NightlyReport { format: "pdf".into() })?
//!     .timezone("Europe/Berlin")?
//!     .queue("reports");
//! let scheduler = Scheduler::start(client, vec![nightly])?;
//! // ... run workers; on shutdown:
//! scheduler.shutdown().await;
//! # Ok(()) }
//! ```

pub mod schedule;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use schedule::{CronError, Schedule};

use crate::envelope::Envelope;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::registry::Registry;
use crate::store::{JobStore, PeriodicDefinition, TickAction, TickClaim};
use crate::Client;

/// The namespace of tick job ids (UUID v5).
const TICK_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a57_0d3e_4b8a_9c51_7e2f_a4d0_b913);

/// The job id of entry `name`'s tick at `tick`: UUID v5 of the name and the tick time (RFC 3339,
/// milliseconds, UTC), so any process, log line or API call can tell which tick a job is.
pub fn tick_job_id(name: &str, tick: DateTime<Utc>) -> Uuid {
    let key = format!(
        "{name}\n{}",
        tick.to_rfc3339_opts(SecondsFormat::Millis, true)
    );
    Uuid::new_v5(&TICK_NAMESPACE, key.as_bytes())
}

/// A periodic job: a name, a schedule in a timezone, and the job to enqueue on each tick.
#[derive(Clone, Debug)]
pub struct PeriodicEntry {
    name: String,
    schedule: Schedule,
    timezone: Tz,
    job_class: String,
    queue: String,
    arguments: serde_json::Value,
    catch_up: u32,
    grace: Duration,
}

fn entry_error(entry: &str, field: &str, message: impl ToString) -> Error {
    Error::Periodic {
        entry: entry.to_string(),
        field: field.to_string(),
        message: message.to_string(),
    }
}

impl PeriodicEntry {
    /// An entry that enqueues `job` (to its own queue) on every tick of `schedule` (cron, five
    /// or six fields), in UTC. The error names the entry and the field.
    pub fn new<J: Job>(name: impl Into<String>, schedule: &str, job: &J) -> Result<Self> {
        let name = name.into();
        let arguments = serde_json::to_value(job)
            .map_err(|e| entry_error(&name, "arguments", format!("do not serialize: {e}")))?;
        Self::build(
            name,
            schedule,
            J::NAME.to_string(),
            job.queue().to_string(),
            arguments,
        )
    }

    /// An entry for a job given by class name and JSON arguments (a schedule file), checked
    /// against `registry`: the class must be registered and the arguments must deserialize.
    /// `queue` defaults to the job's own queue.
    pub fn from_class(
        name: impl Into<String>,
        schedule: &str,
        job_class: &str,
        arguments: serde_json::Value,
        queue: Option<&str>,
        registry: &Registry,
    ) -> Result<Self> {
        let name = name.into();
        // The schedule first: it is what the entry is about.
        let parsed = Self::build(
            name.clone(),
            schedule,
            job_class.to_string(),
            "placeholder".into(),
            arguments.clone(),
        )?;
        let job = registry
            .decode(job_class, arguments.clone())
            .map_err(|e| match e {
                Error::InvalidArguments { message, .. } => entry_error(&name, "arguments", message),
                other => entry_error(&name, "job_class", other),
            })?;
        let queue = queue.unwrap_or(job.queue_erased()).to_string();
        crate::queue::validate_queue_name("", &queue)
            .map_err(|e| entry_error(&name, "queue", e))?;
        Ok(Self { queue, ..parsed })
    }

    fn build(
        name: String,
        schedule: &str,
        job_class: String,
        queue: String,
        arguments: serde_json::Value,
    ) -> Result<Self> {
        if name.trim().is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
            return Err(entry_error(
                &name,
                "name",
                "must be 1-200 characters without control characters",
            ));
        }
        let schedule = Schedule::parse(schedule).map_err(|e| entry_error(&name, "schedule", e))?;
        crate::queue::validate_queue_name("", &queue)
            .map_err(|e| entry_error(&name, "queue", e))?;
        Ok(Self {
            name,
            schedule,
            timezone: Tz::UTC,
            job_class,
            queue,
            arguments,
            catch_up: 0,
            grace: Duration::from_secs(60),
        })
    }

    /// Reads the schedule in this IANA timezone (`Europe/Berlin`); default UTC.
    pub fn timezone(mut self, tz: &str) -> Result<Self> {
        self.timezone = tz.parse().map_err(|_| {
            entry_error(
                &self.name,
                "timezone",
                format!("{tz:?} is not an IANA timezone name (like \"Europe/Berlin\" or \"UTC\")"),
            )
        })?;
        Ok(self)
    }

    /// Enqueues to `queue` instead of the job's own.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// After downtime, enqueue up to `n` missed ticks (the latest ones) instead of skipping them.
    pub fn catch_up(mut self, n: u32) -> Self {
        self.catch_up = n;
        self
    }

    /// How late a tick may be enqueued before it counts as missed (default 60 s).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The entry's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The timezone's IANA name.
    pub fn timezone_name(&self) -> &str {
        self.timezone.name()
    }

    /// The job class it enqueues.
    pub fn job_class(&self) -> &str {
        &self.job_class
    }

    /// The queue it enqueues to.
    pub fn queue_name(&self) -> &str {
        &self.queue
    }

    /// The first tick strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule.next_after(after, self.timezone)
    }

    /// The definition the store keeps.
    pub fn definition(&self) -> PeriodicDefinition {
        PeriodicDefinition {
            name: self.name.clone(),
            schedule: self.schedule.as_str().to_string(),
            timezone: self.timezone.name().to_string(),
            job_class: self.job_class.clone(),
            queue: self.queue.clone(),
            arguments: self.arguments.clone(),
        }
    }

    /// The envelope of the tick at `tick`.
    fn envelope(&self, tick: DateTime<Utc>) -> Envelope {
        let mut env = Envelope::new(&self.job_class, &self.queue, self.arguments.clone());
        env.job_id = tick_job_id(&self.name, tick);
        env
    }
}

/// The next tick of a stored definition after `after` (for listings); `None` if it does not
/// parse or never fires.
pub fn next_run(definition: &PeriodicDefinition, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let tz: Tz = definition.timezone.parse().ok()?;
    Schedule::parse(&definition.schedule)
        .ok()?
        .next_after(after, tz)
}

/// How many ticks one pass looks at per entry, at most (after long downtime of a frequent entry,
/// the rest are counted as skipped without being walked one by one).
const MAX_TICKS_PER_PASS: usize = 10_000;

/// How long claimed ticks are kept (entries keep their last enqueued tick regardless).
const TICK_RETENTION: chrono::Duration = chrono::Duration::days(1);

/// Enqueues periodic entries' ticks, each once across all schedulers sharing the store.
/// Start it in every process that has the entries; [`Scheduler::shutdown`] stops it.
pub struct Scheduler {
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

impl Scheduler {
    /// Starts scheduling `entries` on `client` (which needs a job store). Fails at once on a
    /// client without a store or two entries with one name.
    pub fn start(client: Client, entries: Vec<PeriodicEntry>) -> Result<Self> {
        let store = client
            .store()
            .cloned()
            .ok_or_else(|| Error::StoreRequired {
                what: "periodic jobs (each tick is claimed there)".into(),
            })?;
        let mut names = std::collections::HashSet::new();
        for e in &entries {
            if !names.insert(e.name.clone()) {
                return Err(entry_error(&e.name, "name", "two entries have this name"));
            }
            crate::queue::validate_queue_name("", &e.queue)
                .map_err(|err| entry_error(&e.name, "queue", err))?;
        }
        let stop = CancellationToken::new();
        let handle = tokio::spawn(run(client, store, entries, stop.clone()));
        Ok(Self { stop, handle })
    }

    /// Stops scheduling and waits for the pass in progress to end (a tick claimed but not yet
    /// published is in the outbox: the relay publishes it).
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.handle.await;
    }
}

/// Sleeps `d` unless `stop` fires first; returns whether to go on.
async fn pause(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

async fn run(
    client: Client,
    store: Arc<dyn JobStore>,
    entries: Vec<PeriodicEntry>,
    stop: CancellationToken,
) {
    let definitions: Vec<_> = entries.iter().map(PeriodicEntry::definition).collect();
    let states = loop {
        match store.register_periodic(&definitions).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!(error = %e, "periodic: cannot register the entries in the job store; retrying");
                if !pause(&stop, Duration::from_secs(1)).await {
                    return;
                }
            }
        }
    };
    // Start each entry after the last tick anyone claimed (so a restart sees what it missed),
    // or now for a new entry.
    let now = Utc::now();
    let mut cursors = Vec::with_capacity(entries.len());
    for e in &entries {
        let last_enqueued = states
            .iter()
            .find(|s| s.definition.name == e.name)
            .and_then(|s| s.last_tick_at);
        let last_claimed = store
            .periodic_ticks(&e.name, 1)
            .await
            .ok()
            .and_then(|t| t.first().map(|t| t.tick_at));
        cursors.push(last_claimed.max(last_enqueued).unwrap_or(now).min(now));
    }
    tracing::info!(
        event = "periodic.started",
        entries = entries.len(),
        "periodic scheduler started"
    );
    let mut next_prune = tokio::time::Instant::now();
    loop {
        let now = Utc::now();
        let mut failed = false;
        for (e, cursor) in entries.iter().zip(cursors.iter_mut()) {
            failed |= !pass(&client, &store, e, cursor, now).await;
        }
        if tokio::time::Instant::now() >= next_prune {
            match store.prune_ticks(now - TICK_RETENTION).await {
                Ok(n) if n > 0 => tracing::debug!(pruned = n, "periodic: pruned old tick records"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "periodic: cannot prune tick records"),
            }
            next_prune = tokio::time::Instant::now() + Duration::from_secs(3600);
        }
        // Sleep until the next tick of any entry (at most a minute: the wall clock may jump),
        // or a second after a store error.
        let wake = entries
            .iter()
            .zip(&cursors)
            .filter_map(|(e, c)| e.next_after(*c))
            .min();
        let wait = if failed {
            Duration::from_secs(1)
        } else {
            wake.map(|w| (w - Utc::now()).to_std().unwrap_or_default())
                .unwrap_or(Duration::from_secs(60))
                .min(Duration::from_secs(60))
        };
        if !pause(&stop, wait).await {
            return;
        }
    }
}

/// Handles entry `e`'s ticks due by `now` after `cursor`, advancing it. Returns false on a store
/// error (the cursor stays before the failed tick, to try again).
async fn pass(
    client: &Client,
    store: &Arc<dyn JobStore>,
    e: &PeriodicEntry,
    cursor: &mut DateTime<Utc>,
    now: DateTime<Utc>,
) -> bool {
    let mut due = Vec::new();
    let mut t = *cursor;
    while let Some(next) = e.next_after(t) {
        if next > now {
            break;
        }
        due.push(next);
        t = next;
        if due.len() >= MAX_TICKS_PER_PASS {
            // Long downtime of a frequent entry: count the rest without walking them.
            due.drain(..due.len() - 1);
            break;
        }
    }
    if due.is_empty() {
        return true;
    }
    let late_before = now - chrono::Duration::from_std(e.grace).unwrap_or_default();
    let late = due.iter().take_while(|t| **t < late_before).count();
    let caught_up = late.min(e.catch_up as usize);
    let skipped = late - caught_up;
    if skipped > 0 {
        let last_skipped = due[skipped - 1];
        match store
            .claim_tick(
                &e.name,
                last_skipped,
                TickAction::Skip {
                    missed: skipped as u64,
                },
            )
            .await
        {
            Ok(TickClaim::Claimed) => tracing::warn!(
                event = "periodic.skipped",
                entry = %e.name,
                missed = skipped,
                first = %due[0],
                last = %last_skipped,
                "periodic: ticks more than the grace period late were skipped"
            ),
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(entry = %e.name, error = %err, "periodic: cannot record skipped ticks; retrying");
                return false;
            }
        }
        *cursor = last_skipped;
    }
    for tick in &due[skipped..] {
        if !enqueue_tick(client, store, e, *tick).await {
            return false;
        }
        *cursor = *tick;
    }
    true
}

/// Claims the tick and, if this scheduler got it, publishes its job, through the middleware's
/// `enqueue` hooks ([`EnqueueSource::Periodic`](crate::middleware::EnqueueSource::Periodic)).
/// Returns false on a store error (the tick is tried again); a tick a middleware leaves out or
/// refuses is logged and not tried again.
async fn enqueue_tick(
    client: &Client,
    store: &Arc<dyn JobStore>,
    e: &PeriodicEntry,
    tick: DateTime<Utc>,
) -> bool {
    let env = e.envelope(tick);
    if client.middleware().is_empty() {
        return claim_tick(client, store, e, tick, env).await;
    }
    let mut claimed = None;
    let slot = &mut claimed;
    let through = client
        .middleware()
        .enqueue(
            crate::middleware::EnqueueSource::Periodic,
            vec![env],
            move |mut jobs| {
                Box::pin(async move {
                    if jobs.len() > 1 {
                        return Err(Error::Config(format!(
                            "periodic entry {}: a middleware turned its tick into {} jobs",
                            e.name,
                            jobs.len()
                        )));
                    }
                    let Some(env) = jobs.pop() else {
                        return Ok(Vec::new());
                    };
                    let id = env.job_id;
                    *slot = Some(claim_tick(client, store, e, tick, env).await);
                    Ok(vec![id])
                })
            },
        )
        .await;
    match (claimed, through) {
        (Some(ok), _) => ok,
        (None, Ok(_)) => {
            tracing::info!(entry = %e.name, tick = %tick, "periodic: a middleware left this tick's job out");
            true
        }
        (None, Err(err)) => {
            tracing::error!(entry = %e.name, tick = %tick, error = %err, "periodic: a middleware refused this tick's job");
            true
        }
    }
}

/// [`enqueue_tick`] past the middleware.
async fn claim_tick(
    client: &Client,
    store: &Arc<dyn JobStore>,
    e: &PeriodicEntry,
    tick: DateTime<Utc>,
    env: Envelope,
) -> bool {
    let job = match client.prepare(env, Utc::now()) {
        Ok(r) => r,
        Err(err) => {
            // The entry was checked at start; a job that no longer fits is logged, not retried.
            tracing::error!(entry = %e.name, tick = %tick, error = %err, "periodic: cannot enqueue this tick");
            return true;
        }
    };
    match store
        .claim_tick(
            &e.name,
            tick,
            TickAction::Enqueue(Box::new(job.new_job(None))),
        )
        .await
    {
        Ok(TickClaim::Claimed) => {
            tracing::info!(
                event = "periodic.enqueued",
                entry = %e.name,
                tick = %tick,
                job_id = %job.env.job_id,
                queue = %e.queue,
                "periodic: tick enqueued"
            );
            client.publish_recorded(store, vec![job]).await;
            true
        }
        Ok(TickClaim::Paused) => {
            tracing::debug!(event = "periodic.paused", entry = %e.name, tick = %tick, "periodic: entry paused; tick not enqueued");
            true
        }
        Ok(_) => true,
        Err(err) => {
            tracing::warn!(entry = %e.name, tick = %tick, error = %err, "periodic: cannot claim the tick; retrying");
            false
        }
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;
    use crate::store::{SqlStore, TickRecord};
    use crate::JobContext;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    struct Beat {
        n: u32,
    }

    impl Job for Beat {
        const NAME: &'static str = "Beat";
        async fn perform(&self, _ctx: &JobContext) -> std::result::Result<(), crate::JobError> {
            Ok(())
        }
    }

    /// A scheduler started 10 s after the entry's last claimed tick (every second, grace 2 s,
    /// catching up `catch_up` ticks). Checks that the skip record stands where the scheduler's
    /// first pass put it: every tick more than the grace late at that pass, less the `catch_up`
    /// latest of them. The pass's clock is read between the scheduler's start and the skip's
    /// claim, so the bound is the one or two counts those two instants give (a second may turn
    /// between them on a loaded machine). Returns how many seconds after that last tick the skip
    /// record stands, and the ticks claimed after the skip, oldest first, once a fresh one is
    /// enqueued.
    async fn after_downtime(catch_up: u32) -> (i64, Vec<TickRecord>) {
        let store: Arc<dyn JobStore> =
            Arc::new(SqlStore::connect("sqlite::memory:").await.unwrap());
        let (client, _broker) = crate::testing::memory_client();
        let client = client.with_store(store.clone());
        client.ensure_queue("default").await.unwrap();
        let entry = PeriodicEntry::new("beat", "* * * * * *", &Beat { n: 1 })
            .unwrap()
            .grace(Duration::from_secs(2))
            .catch_up(catch_up);
        store
            .register_periodic(&[entry.definition()])
            .await
            .unwrap();
        let now = Utc::now();
        let last = DateTime::from_timestamp(now.timestamp() - 10, 0).unwrap();
        let job = client
            .prepare(entry.envelope(last), Utc::now())
            .unwrap()
            .new_job(None);
        store
            .claim_tick("beat", last, TickAction::Enqueue(Box::new(job)))
            .await
            .unwrap();
        let started = Utc::now();
        let scheduler = Scheduler::start(client, vec![entry]).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let ticks = loop {
            let ticks = store.periodic_ticks("beat", 100).await.unwrap();
            if ticks[0].tick_at > now + chrono::Duration::seconds(1) {
                break ticks;
            }
            assert!(tokio::time::Instant::now() < deadline, "{ticks:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        scheduler.shutdown().await;
        let mut after: Vec<_> = ticks.into_iter().filter(|t| t.tick_at > last).collect();
        after.reverse();
        assert_eq!(
            after[0].outcome, "skipped",
            "one skip record first: {after:?}"
        );
        assert!(
            after[1..].iter().all(|t| t.outcome == "enqueued"),
            "{after:?}"
        );
        for w in after[1..].windows(2) {
            assert_eq!(
                w[1].tick_at - w[0].tick_at,
                chrono::Duration::seconds(1),
                "no tick missing after the skip: {after:?}"
            );
        }
        let skipped = (after[0].tick_at - last).num_seconds();
        // Ticks every second after `last` that are more than the 2 s grace late at `at`,
        // less those caught up.
        let expected_at = |at: DateTime<Utc>| {
            let late = (1..)
                .take_while(|k| {
                    last + chrono::Duration::seconds(*k) < at - chrono::Duration::seconds(2)
                })
                .count() as i64;
            late - i64::from(catch_up)
        };
        let (lo, hi) = (expected_at(started), expected_at(after[0].claimed_at));
        assert!(
            (lo..=hi).contains(&skipped),
            "skipped {skipped}, expected {lo}..={hi} (started {started}): {after:?}"
        );
        (skipped, after)
    }

    #[tokio::test]
    async fn ticks_missed_beyond_the_grace_are_skipped_once() {
        let (skipped, ticks) = after_downtime(0).await;
        // Of the 10-11 missed ticks, those more than 2 s late (7-9) are skipped in one record;
        // the rest are enqueued, from the next second on.
        assert!((7..=9).contains(&skipped), "{skipped} {ticks:?}");
        assert_eq!(
            ticks[1].tick_at - ticks[0].tick_at,
            chrono::Duration::seconds(1)
        );
    }

    #[tokio::test]
    async fn an_entry_that_catches_up_enqueues_its_last_missed_ticks() {
        let (skipped, ticks) = after_downtime(3).await;
        // Three fewer skipped: the three latest late ticks are enqueued.
        assert!((4..=6).contains(&skipped), "{skipped} {ticks:?}");
        assert_eq!(
            ticks[1].tick_at - ticks[0].tick_at,
            chrono::Duration::seconds(1)
        );
    }
}
