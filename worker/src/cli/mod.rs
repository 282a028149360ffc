//! The `worker` command line, as a library so that an application builds its own worker binary
//! around its own jobs in a few lines:
//!
//! ```no_run
//! // src/main.rs of your worker: your jobs are registered with register_job! somewhere in the crate.
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     pubsub_jobs_cli::cli::main().await
//! }
//! ```
//!
//! Every option has an environment fallback (`QUEUE_NAME`, `PUBSUB_PROJECT_ID`, ...). One file
//! per command: `run_worker` (the worker itself), `jobs`, `enqueue`, `clear`, `morgue`,
//! `health`, `api`, `store` (`relay`, `store status`), `cron`, `demo`, `spawn`; `common` holds what they share (connecting, confirmations,
//! signals).

mod api;
mod clear;
mod common;
pub mod cron;
pub mod demo;
mod enqueue;
mod health;
mod jobs;
mod logging;
mod morgue;
mod queues;
mod run_worker;
mod smoke;
pub mod spawn;
mod store;
pub mod telemetry;

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use pubsub_jobs::{Middleware, Registry, State};

pub use logging::init_logging;

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with a timestamp.
    Json,
}

/// `worker`: run a queue (no command), or manage jobs.
#[derive(Debug, Parser)]
#[command(
    name = "worker",
    version,
    about = "pubsub-jobs worker: runs background jobs from a Pub/Sub queue"
)]
pub struct Cli {
    /// Options shared by every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Options of the worker (when no command is given).
    #[command(flatten)]
    pub run: RunArgs,
    /// What to do (default: run the worker).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options shared by every command.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The queue.
    #[arg(long, env = "QUEUE_NAME", default_value = "default", global = true)]
    pub queue: String,
    /// The Google Cloud project (also read from `PUBSUB_JOB_QUEUE_PROJECT_ID`); unset: the
    /// credentials' project, else GOOGLE_CLOUD_PROJECT (on the emulator, job-queue).
    #[arg(long, env = "PUBSUB_PROJECT_ID", global = true)]
    pub project: Option<String>,
    /// A prefix for every topic and subscription, so that apps can share a project.
    #[arg(long, env = "PUBSUB_TOPIC_PREFIX", default_value = "", global = true)]
    pub topic_prefix: String,
    /// The queue for dead jobs.
    #[arg(
        long,
        env = "PUBSUB_MORGUE_QUEUE",
        default_value = "morgue",
        global = true
    )]
    pub morgue_queue: String,
    /// How long one Pub/Sub call may take, in seconds, before it fails.
    #[arg(
        long,
        env = "PUBSUB_TIMEOUT_SECONDS",
        default_value_t = 30.0,
        global = true
    )]
    pub pubsub_timeout: f64,
    /// The largest job accepted at enqueue, in bytes (its message: body and attributes), at
    /// most Pub/Sub's 10,000,000: a lower cap keeps the job store and its pages small.
    #[arg(
        long,
        env = "PUBSUB_JOBS_MAX_JOB_BYTES",
        default_value_t = 10_000_000,
        global = true
    )]
    pub max_job_bytes: usize,
    /// Create the topics and subscriptions used (true, the default), or make no admin call at
    /// all (false: publisher and subscriber roles suffice; create queues with `worker queues
    /// setup`, and a missing one is an error naming it).
    #[arg(
        long,
        env = "PUBSUB_CREATE_QUEUES",
        default_value_t = true,
        action = clap::ArgAction::Set,
        global = true
    )]
    pub create_queues: bool,
    /// Deliveries of one message without an outcome (a worker killed by the job every time)
    /// before Pub/Sub moves it to the morgue: 5 to 100, or 0 for none; default 20 on Google
    /// Cloud, none on the emulator (it ignores flow control, and every message a worker hands
    /// back counts). Set on each queue's subscription when it is created (`worker queues setup`
    /// also sets it on existing ones).
    #[arg(long, env = "PUBSUB_JOBS_MAX_DELIVERY_ATTEMPTS", global = true)]
    pub max_delivery_attempts: Option<u32>,
    /// A job store that records every job's events and status: sqlite://PATH or
    /// postgres://USER@HOST/DB. Without one, jobs run as before (pure Pub/Sub). `worker api`
    /// defaults to sqlite://jobs.db.
    #[arg(long, env = "PUBSUB_JOBS_STORE", global = true)]
    pub store: Option<String>,
    /// Seconds a recorded job may stay unpublished before a relay publishes it (with a store).
    #[arg(
        long,
        env = "PUBSUB_JOBS_RELAY_GRACE",
        default_value_t = 5.0,
        global = true
    )]
    pub relay_grace: f64,
    /// With a store: how long succeeded jobs are kept (7d, 12h, 30m, 45s, or forever).
    #[arg(
        long,
        env = "PUBSUB_JOBS_KEEP_SUCCEEDED",
        default_value = "7d",
        global = true
    )]
    pub keep_succeeded: String,
    /// With a store: how long morgued, discarded, cancelled and failed jobs are kept.
    #[arg(
        long,
        env = "PUBSUB_JOBS_KEEP_FINISHED",
        default_value = "30d",
        global = true
    )]
    pub keep_finished: String,
    /// Log format.
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    /// The application's middleware (given in code with [`App::middleware`], not on the command
    /// line): every client a command makes has it.
    #[arg(skip)]
    pub middleware: Middlewares,
}

/// Middleware for the clients the commands make, outermost first.
#[derive(Clone, Default)]
pub struct Middlewares(pub Vec<Arc<dyn Middleware>>);

impl std::fmt::Debug for Middlewares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} middleware", self.0.len())
    }
}

impl Middlewares {
    /// `client` with every middleware, in order.
    pub fn apply(&self, client: pubsub_jobs::Client) -> pubsub_jobs::Client {
        self.0
            .iter()
            .fold(client, |c, m| c.with_middleware_arc(m.clone()))
    }
}

/// An application's own `worker` binary: its job classes, the state its jobs read, and its
/// middleware, then the command line as `worker` has it.
///
/// ```no_run
/// # struct AppState;
/// # struct Tenant;
/// # impl pubsub_jobs::Middleware for Tenant {}
/// #[tokio::main]
/// async fn main() -> std::process::ExitCode {
///     match pubsub_jobs_cli::cli::App::from_inventory() {
///         Ok(app) => app.state(AppState).middleware(Tenant).main().await,
///         Err(e) => {
///             eprintln!("error: {e}");
///             std::process::ExitCode::FAILURE
///         }
///     }
/// }
/// ```
#[derive(Debug)]
pub struct App {
    registry: Registry,
    state: State,
    middleware: Middlewares,
}

impl App {
    /// The job classes of `registry`, no state, no middleware.
    pub fn new(registry: Registry) -> Self {
        Self {
            registry,
            state: State::new(),
            middleware: Middlewares::default(),
        }
    }

    /// The job classes registered with `register_job!`.
    pub fn from_inventory() -> pubsub_jobs::Result<Self> {
        Ok(Self::new(Registry::from_inventory()?))
    }

    /// Adds a value of application state ([`JobContext::state`](pubsub_jobs::JobContext::state)).
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// Replaces the application state.
    pub fn with_state(mut self, state: State) -> Self {
        self.state = state;
        self
    }

    /// Adds a middleware (innermost: after those given before), for every client the commands
    /// make: the worker's jobs run through it, and `enqueue`, `api` and `cron` enqueue through it.
    pub fn middleware(mut self, m: impl Middleware) -> Self {
        self.middleware.0.push(Arc::new(m));
        self
    }

    /// Parses the command line and runs it; returns the exit code (errors are printed).
    pub async fn main(self) -> ExitCode {
        let cli = Cli::parse();
        // The worker logs every job at info; the tools print their own results and log only problems.
        let level = match cli.command {
            None | Some(Command::Api { .. }) => "info",
            Some(Command::Demo { .. }) => "error",
            Some(_) => "warn",
        };
        let telemetry = match init_logging(cli.global.log_format, level) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        let code = match self.run(cli).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
        pubsub_jobs::logging::flush();
        if let Some(t) = telemetry {
            t.shutdown();
        }
        code
    }

    /// Runs a parsed command line.
    pub async fn run(self, cli: Cli) -> anyhow::Result<()> {
        let (cli, registry, state) = self.with(cli);
        run_with_state(cli, registry, state).await
    }

    /// `cli` carrying the middleware to every client its command makes.
    fn with(self, mut cli: Cli) -> (Cli, Registry, State) {
        cli.global.middleware = self.middleware;
        (cli, self.registry, self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pubsub_jobs::envelope::Envelope;
    use pubsub_jobs::middleware::{BoxFuture, EnqueueNext};

    struct Tag;

    impl Middleware for Tag {
        fn enqueue<'a>(
            &'a self,
            mut jobs: Vec<Envelope>,
            next: EnqueueNext<'a>,
        ) -> BoxFuture<'a, pubsub_jobs::Result<Vec<uuid::Uuid>>> {
            for j in &mut jobs {
                j.metadata.insert("app".into(), "billing".into());
            }
            next.run(jobs)
        }
    }

    #[tokio::test]
    async fn an_apps_middleware_reaches_the_clients_its_commands_make() {
        let cli = Cli::parse_from(["worker", "--queue", "q", "jobs"]);
        let (cli, _, _) = App::new(Registry::new()).middleware(Tag).with(cli);
        let (client, _) = pubsub_jobs::testing::memory_client();
        let client = cli.global.middleware.apply(client);
        let env = Envelope::new("X", "billing", serde_json::json!({}));
        client.submit(env, None).await.unwrap();
        let queued = pubsub_jobs::testing::enqueued_jobs(&client, "billing");
        assert_eq!(
            queued[0].metadata.get("app").map(String::as_str),
            Some("billing")
        );
    }
}

/// Options of the worker itself.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Jobs running at once.
    #[arg(long, env = "WORKER_CONCURRENCY", default_value_t = 10)]
    pub concurrency: usize,
    /// Streaming pulls.
    #[arg(long, env = "WORKER_STREAMS", default_value_t = 2)]
    pub streams: usize,
    /// Messages leased but not yet running, at most (also read from `JOB_PREFETCH`; default:
    /// the concurrency).
    #[arg(long, env = "WORKER_PREFETCH")]
    pub prefetch: Option<usize>,
    /// Lease of a pulled message in seconds, extended while its job runs (10-600).
    #[arg(long, env = "WORKER_ACK_DEADLINE", default_value_t = 30)]
    pub ack_deadline: u64,
    /// Seconds running jobs get to finish after SIGTERM / SIGINT.
    #[arg(long, env = "WORKER_SHUTDOWN_TIMEOUT", default_value_t = 25.0)]
    pub shutdown_timeout: f64,
    /// Seconds a job whose class sets no `Job::timeout` may run before it fails with a timeout
    /// (also read from `JOB_TIMEOUT`); unset: 30 minutes.
    #[arg(long, env = "WORKER_JOB_TIMEOUT")]
    pub job_timeout: Option<f64>,
    /// Seconds between stats lines.
    #[arg(long, env = "WORKER_STATS_INTERVAL", default_value_t = 30.0)]
    pub stats_interval: f64,
    /// Periodic jobs from this TOML file (`[[periodic]]` entries), scheduled by this worker
    /// beside its queue; every worker with the file takes part and each tick is enqueued once
    /// (needs --store).
    #[arg(long, env = "PUBSUB_JOBS_CRON")]
    pub cron: Option<std::path::PathBuf>,
    /// A file the worker rewrites every 5 s with its health while it runs (and removes when it
    /// stops), for `worker health --file` as a liveness probe that makes no Pub/Sub call.
    #[arg(long, env = "WORKER_HEALTH_FILE")]
    pub health_file: Option<std::path::PathBuf>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the job classes registered in this binary.
    Jobs,
    /// Run a demo: a private emulator (or the in-memory broker without one), two workers,
    /// MockJobs that run, retry and die.
    Demo {
        /// MockJobs to enqueue.
        #[arg(long, default_value_t = 50)]
        count: usize,
        /// Jobs per second.
        #[arg(long, default_value_t = 5.0)]
        rate: f64,
        /// Workers to run.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Seconds between a failed job's retries.
        #[arg(long, default_value_t = 3.0)]
        retry_wait: f64,
    },
    /// Enqueue N random MockJobs at a steady rate, as load.
    Spawn {
        /// How many jobs.
        #[arg(long)]
        count: u64,
        /// Jobs per second.
        #[arg(long, default_value_t = 5.0, allow_negative_numbers = true)]
        rate: f64,
        /// Probability that a job always fails (0-1).
        #[arg(long, default_value_t = 0.2)]
        fail_ratio: f64,
        /// Longest sleep of a job, seconds; each sleeps a random time in [0, max].
        #[arg(long, default_value_t = 5.0)]
        max_sleep: f64,
    },
    /// Empty a queue: backlog, leased and scheduled jobs (Pub/Sub Seek to now).
    Clear {
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Clear the morgue instead of --queue.
        #[arg(long)]
        morgue: bool,
    },
    /// Inspect and act on dead jobs.
    #[command(subcommand)]
    Morgue(MorgueCommand),
    /// Check that Pub/Sub is reachable and the queue exists (one subscription lookup, which
    /// needs roles/pubsub.viewer); with --file, that the worker writing that health file is
    /// alive and pulling (no Pub/Sub call: the liveness probe).
    Health {
        /// The worker's --health-file.
        #[arg(long, env = "WORKER_HEALTH_FILE")]
        file: Option<std::path::PathBuf>,
        /// With --file: the oldest report that counts, in seconds.
        #[arg(long, default_value_t = 30)]
        max_age: u64,
    },
    /// Queues on Pub/Sub: create what they need ahead of least-privilege workers.
    #[command(subcommand)]
    Queues(QueuesCommand),
    /// Serve the JSON HTTP API: submit, poll, cancel jobs (needs a job store, default
    /// sqlite://jobs.db; workers should use the same store).
    Api {
        /// The address to listen on.
        #[arg(long, env = "PUBSUB_JOBS_API_BIND", default_value = "127.0.0.1:8080")]
        bind: String,
        /// Bearer tokens, comma-separated; when set, requests without one get 401 and the
        /// dashboard asks for one.
        #[arg(long, env = "PUBSUB_JOBS_API_TOKENS", hide_env_values = true)]
        tokens: Option<String>,
        /// Serve without tokens on an address other than loopback (anyone who reaches it can
        /// submit, retry and delete jobs).
        #[arg(long, env = "PUBSUB_JOBS_API_ALLOW_UNAUTHENTICATED")]
        allow_unauthenticated: bool,
        /// Host names served besides IP addresses and localhost, comma-separated
        /// (`jobs.internal`, `.example.com` for a domain and its subdomains); with tokens, the
        /// only ones served when set. Other hosts get 421 (DNS rebinding).
        #[arg(long, env = "PUBSUB_JOBS_API_ALLOWED_HOSTS")]
        allowed_hosts: Option<String>,
        /// Seconds a client has to send a request's head, from connecting or from the end of
        /// the previous answer: slow and idle connections are closed after it.
        #[arg(long, env = "PUBSUB_JOBS_API_HEADER_TIMEOUT", default_value = "10")]
        header_timeout: String,
        /// Seconds a client has to send a request's body once its head arrived (else 408).
        #[arg(long, env = "PUBSUB_JOBS_API_BODY_TIMEOUT", default_value = "30")]
        body_timeout: String,
        /// Connections open at once, at most; more wait to be accepted.
        #[arg(long, env = "PUBSUB_JOBS_API_MAX_CONNECTIONS", default_value_t = 1024)]
        max_connections: usize,
    },
    /// Run only the outbox relay: publish jobs the store recorded but nobody published (needs
    /// --store). Every worker and `worker api` with a store runs one too.
    Relay,
    /// The job store.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Periodic jobs: list the entries workers registered, pause, resume, run one now, or
    /// check a file.
    #[command(subcommand)]
    Cron(CronCommand),
    /// Enqueue one job by class name with JSON arguments; prints its id.
    Enqueue {
        /// The registered job class, for instance MockJob.
        job_class: String,
        /// The job's arguments as a JSON object, for instance '{"sleep_duration":1,"raise_error":false}'.
        arguments: String,
        /// Run no earlier than this many seconds from now.
        #[arg(long)]
        wait: Option<f64>,
    },
}

/// `worker queues ...`
#[derive(Debug, Subcommand)]
pub enum QueuesCommand {
    /// Create (idempotently) each queue's topic and subscription, its `.scheduled` pair and the
    /// morgue, with 7-day retention and no expiry. Needs create rights (roles/pubsub.editor).
    Setup {
        /// The queues.
        #[arg(required = true)]
        queues: Vec<String>,
        /// Print the equivalent gcloud commands instead of creating anything.
        #[arg(long)]
        print_gcloud: bool,
    },
    /// Report every difference of each queue's subscriptions (and the morgue's) from what
    /// `setup` creates: missing, on the wrong topic, retention under 7 days, an expiry. Exits 1
    /// if there is any. Needs roles/pubsub.viewer.
    Verify {
        /// The queues.
        #[arg(required = true)]
        queues: Vec<String>,
        /// Also print the gcloud commands that fix what an update can fix.
        #[arg(long)]
        print_gcloud: bool,
    },
    /// Check on the project this points at (your own, or the emulator) what running on real
    /// Pub/Sub needs: the project and credentials found, a queue set up ahead and used without
    /// create rights, large jobs, the dead-letter backstop. Works on a queue of its own,
    /// deletes it after, exits 1 if a check failed. Needs roles/pubsub.editor.
    Smoke {
        /// Keep the smoke queue and its morgue instead of deleting them.
        #[arg(long)]
        keep: bool,
    },
}

/// `worker cron ...`
#[derive(Debug, Subcommand)]
pub enum CronCommand {
    /// Every entry with its schedule, next run, last run and that run's job id (needs --store).
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Pause an entry: its ticks enqueue nothing until resumed.
    Pause {
        /// The entry's name.
        name: String,
    },
    /// Resume a paused entry.
    Resume {
        /// The entry's name.
        name: String,
    },
    /// Enqueue an entry's job now, outside its schedule; prints the job id.
    Run {
        /// The entry's name.
        name: String,
    },
    /// Check a cron file (schedules, timezones, classes, arguments) and print each entry's
    /// next run, without connecting to anything.
    Check {
        /// The TOML file.
        file: std::path::PathBuf,
    },
}

/// `worker store ...`
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Delete finished jobs (and their events) past their retention now (every process with a
    /// store also does so in the background).
    Prune {
        /// Prune every finished job older than this (7d, 12h, 30m, 45s) instead of the
        /// --keep-succeeded / --keep-finished periods.
        #[arg(long)]
        older_than: Option<String>,
        /// Only count what would be pruned.
        #[arg(long)]
        dry_run: bool,
    },
    /// The outbox: how many recorded jobs are unpublished, and the oldest one's age.
    Status {
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// `worker morgue ...`
#[derive(Debug, Subcommand)]
pub enum MorgueCommand {
    /// List dead jobs without removing them.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Republish dead jobs to their source queue with executions reset.
    Retry {
        /// The job to retry.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        job_id: Option<String>,
        /// Every dead job.
        #[arg(long)]
        all: bool,
    },
    /// Delete every dead job.
    Purge {
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// Parses the command line, runs it with the job classes registered with `register_job!`, and
/// returns the exit code (errors are printed).
pub async fn main() -> ExitCode {
    match Registry::from_inventory() {
        Ok(registry) => main_with(registry).await,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Like [`main`], with an explicit registry: the job classes this binary runs, lists, enqueues
/// and accepts through the API.
pub async fn main_with(registry: Registry) -> ExitCode {
    main_with_state(registry, State::new()).await
}

/// Like [`main_with`], with the application state the jobs read
/// ([`JobContext::state`](pubsub_jobs::JobContext::state)): a database pool, an HTTP client.
/// The worker refuses to start when a job class lists a type ([`Job::STATE`](pubsub_jobs::Job::STATE))
/// that `state` lacks.
/// ([`App`] gives middleware too.)
pub async fn main_with_state(registry: Registry, state: State) -> ExitCode {
    App::new(registry).with_state(state).main().await
}

/// Runs a parsed command line with the job classes of `registry`.
pub async fn run(cli: Cli, registry: Registry) -> anyhow::Result<()> {
    run_with_state(cli, registry, State::new()).await
}

/// [`run`], giving the worker `state` for its jobs (see [`main_with_state`]).
pub async fn run_with_state(mut cli: Cli, registry: Registry, state: State) -> anyhow::Result<()> {
    // An empty PUBSUB_JOBS_STORE (a compose file's `PUBSUB_JOBS_STORE=`) means no store.
    cli.global.store = cli.global.store.take().filter(|s| !s.trim().is_empty());
    let g = &cli.global;
    match cli.command {
        Some(Command::Jobs) => jobs::run(&registry),
        Some(Command::Enqueue {
            job_class,
            arguments,
            wait,
        }) => enqueue::run(g, &registry, &job_class, &arguments, wait).await,
        Some(Command::Demo {
            count,
            rate,
            workers,
            retry_wait,
        }) => {
            let opts = demo::DemoOptions {
                count,
                rate,
                workers,
                retry_wait: common::seconds("--retry-wait", retry_wait)?.as_secs_f64(),
                ..Default::default()
            };
            demo::run(common::client_config(g)?, opts).await
        }
        Some(Command::Spawn {
            count,
            rate,
            fail_ratio,
            max_sleep,
        }) => {
            let opts = spawn::SpawnOptions {
                count,
                rate,
                fail_ratio,
                max_sleep,
                queue: g.queue.clone(),
                json: g.log_format == LogFormat::Json,
            };
            opts.validate()?;
            let client = common::connect(g).await?;
            spawn::run(&client, opts).await
        }
        Some(Command::Clear { yes, morgue }) => clear::run(g, yes, morgue).await,
        Some(Command::Morgue(cmd)) => morgue::run(g, cmd).await,
        Some(Command::Api {
            bind,
            tokens,
            allow_unauthenticated,
            allowed_hosts,
            header_timeout,
            body_timeout,
            max_connections,
        }) => {
            let access = api::Access {
                tokens,
                allow_unauthenticated,
                allowed_hosts,
            };
            let limits = pubsub_jobs::api::ServerLimits {
                header_read_timeout: pubsub_jobs::api::parse_seconds(
                    "--header-timeout (PUBSUB_JOBS_API_HEADER_TIMEOUT)",
                    &header_timeout,
                )?,
                body_read_timeout: pubsub_jobs::api::parse_seconds(
                    "--body-timeout (PUBSUB_JOBS_API_BODY_TIMEOUT)",
                    &body_timeout,
                )?,
                max_connections,
            };
            limits.check()?;
            api::run(g, registry, &bind, access, limits).await
        }
        Some(Command::Health { file, max_age }) => health::run(g, file, max_age).await,
        Some(Command::Queues(QueuesCommand::Setup {
            queues,
            print_gcloud,
        })) => queues::setup(g, &queues, print_gcloud).await,
        Some(Command::Queues(QueuesCommand::Verify {
            queues,
            print_gcloud,
        })) => queues::verify(g, &queues, print_gcloud).await,
        Some(Command::Queues(QueuesCommand::Smoke { keep })) => smoke::run(g, keep).await,
        Some(Command::Relay) => store::relay(g).await,
        Some(Command::Store(StoreCommand::Status { json })) => store::status(g, json).await,
        Some(Command::Store(StoreCommand::Prune {
            older_than,
            dry_run,
        })) => store::prune(g, older_than.as_deref(), dry_run).await,
        Some(Command::Cron(cmd)) => cron::run(g, &registry, cmd).await,
        None => run_worker::run(g, cli.run, registry, state).await,
    }
}
