//! The `worker` command line, as a library function so that an application builds its own worker
//! binary around its own jobs in a few lines:
//!
//! ```no_run
//! // src/main.rs of your worker: your jobs are registered with register_job! somewhere in the crate.
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     pubsub_jobs::cli::main().await
//! }
//! ```
//!
//! Every option has an environment fallback (`QUEUE_NAME`, `PUBSUB_PROJECT_ID`, ...).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::client::{Client, ClientConfig};
use crate::registry::Registry;
use crate::worker::{Worker, WorkerConfig};

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
    /// The Google Cloud project.
    #[arg(
        long,
        env = "PUBSUB_PROJECT_ID",
        default_value = "job-queue",
        global = true
    )]
    pub project: String,
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
    /// A job store that records every job's events and status: sqlite://PATH or
    /// postgres://USER@HOST/DB. Without one, jobs run as before (pure Pub/Sub). `worker api`
    /// defaults to sqlite://jobs.db.
    #[arg(long, env = "PUBSUB_JOBS_STORE", global = true)]
    pub store: Option<String>,
    /// Log format.
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
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
    /// Messages leased but not yet running, at most (default: the concurrency).
    #[arg(long, env = "WORKER_PREFETCH")]
    pub prefetch: Option<usize>,
    /// Lease of a pulled message in seconds, extended while its job runs (10-600).
    #[arg(long, env = "WORKER_ACK_DEADLINE", default_value_t = 30)]
    pub ack_deadline: u64,
    /// Seconds running jobs get to finish after SIGTERM / SIGINT.
    #[arg(long, env = "WORKER_SHUTDOWN_TIMEOUT", default_value_t = 25.0)]
    pub shutdown_timeout: f64,
    /// Seconds between stats lines.
    #[arg(long, env = "WORKER_STATS_INTERVAL", default_value_t = 30.0)]
    pub stats_interval: f64,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the job classes registered in this binary.
    Jobs,
    /// Run a demo: a private emulator, two workers, MockJobs that run, retry and die.
    #[cfg(feature = "mock-job")]
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
    #[cfg(feature = "mock-job")]
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
    /// Check that Pub/Sub is reachable and the queue exists (for container healthchecks).
    Health,
    /// Serve the JSON HTTP API: submit, poll, cancel jobs (needs a job store, default
    /// sqlite://jobs.db; workers should use the same store).
    Api {
        /// The address to listen on.
        #[arg(long, env = "PUBSUB_JOBS_API_BIND", default_value = "127.0.0.1:8080")]
        bind: String,
        /// Bearer tokens, comma-separated; when set, requests without one get 401.
        #[arg(long, env = "PUBSUB_JOBS_API_TOKENS", hide_env_values = true)]
        tokens: Option<String>,
    },
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

/// Parses the command line, runs it, and returns the exit code (errors are printed).
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The worker logs every job at info; the tools print their own results and log only problems.
    let level = match cli.command {
        None | Some(Command::Api { .. }) => "info",
        #[cfg(feature = "mock-job")]
        Some(Command::Demo { .. }) => "error",
        Some(_) => "warn",
    };
    init_logging(cli.global.log_format, level);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Sets up tracing: text or JSON lines on stderr, level from `RUST_LOG` (else `default_level`).
pub fn init_logging(format: LogFormat, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

fn client_config(g: &GlobalArgs) -> anyhow::Result<ClientConfig> {
    if !(g.pubsub_timeout.is_finite() && g.pubsub_timeout > 0.0) {
        bail!(
            "--pubsub-timeout must be a positive number of seconds, got {}",
            g.pubsub_timeout
        );
    }
    Ok(ClientConfig {
        project_id: g.project.clone(),
        topic_prefix: g.topic_prefix.clone(),
        morgue_queue: g.morgue_queue.clone(),
        timeout: Duration::from_secs_f64(g.pubsub_timeout),
        emulator_host: std::env::var("PUBSUB_EMULATOR_HOST")
            .ok()
            .filter(|h| !h.is_empty()),
        ..ClientConfig::default()
    })
}

/// A client, with the job store when one is configured.
async fn connect(g: &GlobalArgs) -> anyhow::Result<Client> {
    let client = Client::connect(client_config(g)?).await?;
    Ok(match &g.store {
        Some(url) => client.with_store(open_store(url).await?),
        None => client,
    })
}

async fn open_store(url: &str) -> anyhow::Result<std::sync::Arc<dyn crate::store::JobStore>> {
    crate::store::connect(url)
        .await
        .with_context(|| format!("opening the job store {url}"))
}

async fn run_api(g: &GlobalArgs, bind: &str, tokens: Option<String>) -> anyhow::Result<()> {
    Registry::from_inventory()?;
    let url = g.store.as_deref().unwrap_or("sqlite://jobs.db");
    let client = Client::connect(client_config(g)?)
        .await?
        .with_store(open_store(url).await?);
    let config = crate::api::ApiConfig {
        tokens: crate::api::parse_tokens(&tokens.unwrap_or_default()),
    };
    let state = crate::api::ApiState::new(client, config)?;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    crate::api::serve(listener, state, shutdown).await?;
    Ok(())
}

fn seconds(name: &str, v: f64) -> anyhow::Result<Duration> {
    if !(v.is_finite() && v >= 0.0) {
        bail!("{name} must be a non-negative number of seconds, got {v}");
    }
    Ok(Duration::from_secs_f64(v))
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    match cli.command {
        Some(Command::Jobs) => {
            let registry = Registry::from_inventory()?;
            let mut out = std::io::stdout().lock();
            for r in registry.iter() {
                writeln!(out, "{}\t{}", r.name(), r.type_name())?;
            }
            Ok(())
        }
        Some(Command::Enqueue {
            job_class,
            arguments,
            wait,
        }) => {
            let args: serde_json::Value = serde_json::from_str(&arguments)
                .with_context(|| format!("the arguments for {job_class} are not valid JSON"))?;
            let registry = Registry::from_inventory()?;
            registry.validate(&job_class, &args)?;
            let client = connect(g).await?;
            client.validate_queue(&g.queue)?;
            let at = match wait {
                Some(w) => {
                    Some(chrono::Utc::now() + chrono::Duration::from_std(seconds("--wait", w)?)?)
                }
                None => None,
            };
            let env = client
                .enqueue_by_name(&job_class, args, Some(&g.queue), at)
                .await?;
            if g.log_format == LogFormat::Json {
                let line = serde_json::json!({
                    "timestamp": chrono::Utc::now().to_rfc3339(),
                    "event": "job.enqueued",
                    "job_id": env.job_id,
                    "job_class": env.job_class,
                    "queue": env.queue_name,
                    "attempt": env.attempt(),
                    "scheduled_at": env.scheduled_at.map(|t| t.to_rfc3339()),
                });
                println!("{line}");
            } else {
                println!("{}", env.job_id);
            }
            Ok(())
        }
        #[cfg(feature = "mock-job")]
        Some(Command::Demo {
            count,
            rate,
            workers,
            retry_wait,
        }) => {
            let opts = crate::demo::DemoOptions {
                count,
                rate,
                workers,
                retry_wait: seconds("--retry-wait", retry_wait)?.as_secs_f64(),
                ..Default::default()
            };
            crate::demo::run(client_config(g)?, opts).await
        }
        #[cfg(feature = "mock-job")]
        Some(Command::Spawn {
            count,
            rate,
            fail_ratio,
            max_sleep,
        }) => {
            let opts = crate::spawn::SpawnOptions {
                count,
                rate,
                fail_ratio,
                max_sleep,
                queue: g.queue.clone(),
                json: g.log_format == LogFormat::Json,
            };
            opts.validate()?;
            let client = connect(g).await?;
            crate::spawn::run(&client, opts).await
        }
        Some(Command::Clear { yes, morgue }) => {
            let client = Client::connect(client_config(g)?).await?;
            if morgue {
                let name = client.morgue_queue().to_string();
                confirm(
                    yes,
                    &format!("Delete every dead job in the morgue {name:?}?"),
                )?;
                crate::morgue::tools::purge(&client).await?;
                println!(
                    "Cleared the morgue {name:?}: every dead job published before now is gone."
                );
            } else {
                client.validate_queue(&g.queue)?;
                confirm(
                    yes,
                    &format!(
                        "Clear queue {:?}: its backlog, leased and scheduled jobs?",
                        g.queue
                    ),
                )?;
                let at = crate::queue::clear(&client, &g.queue).await?;
                println!(
                    "Cleared queue {:?} (subscriptions {:?} and {:?}): every job published before {} is gone: backlog, leased and scheduled.",
                    g.queue,
                    client.resource_name(&g.queue),
                    client.scheduled_resource_name(&g.queue),
                    at.to_rfc3339()
                );
            }
            Ok(())
        }
        Some(Command::Morgue(cmd)) => {
            let client = Client::connect(client_config(g)?).await?;
            morgue_command(&client, cmd).await
        }
        Some(Command::Api { bind, tokens }) => run_api(g, &bind, tokens).await,
        Some(Command::Health) => {
            let client = Client::connect(client_config(g)?).await?;
            client.validate_queue(&g.queue)?;
            let sub = client.resource_name(&g.queue);
            if client.broker().subscription_exists(&sub).await? {
                println!("ok: Pub/Sub reachable, queue {:?} exists", g.queue);
                Ok(())
            } else {
                bail!(
                    "Pub/Sub is reachable but queue {:?} does not exist yet",
                    g.queue
                )
            }
        }
        None => run_worker(g, cli.run).await,
    }
}

/// Asks on a terminal; elsewhere requires `--yes`.
fn confirm(yes: bool, question: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("{question} Refusing without confirmation: not a terminal; pass --yes");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        bail!("cancelled: nothing was changed")
    }
}

async fn morgue_command(client: &Client, cmd: MorgueCommand) -> anyhow::Result<()> {
    use crate::morgue::tools;
    match cmd {
        MorgueCommand::List { limit, json } => {
            let entries = tools::list(client, limit).await?;
            let mut out = std::io::stdout().lock();
            if json {
                for e in &entries {
                    let r = &e.record;
                    let line = serde_json::json!({
                        "job_id": r.job_id,
                        "job_class": r.job_class,
                        "source_queue": r.source_queue,
                        "attempts": r.executions,
                        "error": r.error,
                        "failed_at": r.failed_at.to_rfc3339(),
                        "message_id": e.message_id,
                    });
                    writeln!(out, "{line}")?;
                }
            } else {
                writeln!(
                    out,
                    "{:<36}  {:<16}  {:<16}  {:>8}  {:<25}  error",
                    "job_id", "class", "source queue", "attempts", "failed_at"
                )?;
                for e in &entries {
                    let r = &e.record;
                    writeln!(
                        out,
                        "{:<36}  {:<16}  {:<16}  {:>8}  {:<25}  {}",
                        r.job_id.as_deref().unwrap_or("-"),
                        r.job_class.as_deref().unwrap_or("-"),
                        r.source_queue,
                        r.executions
                            .map(|n| n.to_string())
                            .unwrap_or_else(|| "-".into()),
                        r.failed_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                        crate::morgue::truncate(&r.error, 200)
                    )?;
                }
                writeln!(
                    out,
                    "{} dead job(s) listed; all left in the morgue.",
                    entries.len()
                )?;
            }
            Ok(())
        }
        MorgueCommand::Retry { job_id, all } => {
            let select = match (job_id, all) {
                (Some(id), _) => tools::Select::JobId(id),
                (None, true) => tools::Select::All,
                (None, false) => bail!("pass --job-id ID or --all"),
            };
            let wanted = select.clone();
            let report = tools::retry(client, select).await?;
            for (id, queue) in &report.retried {
                println!("retried {id} -> queue {queue:?}");
            }
            for (id, why) in &report.skipped {
                println!("skipped {id}: {why}");
            }
            println!(
                "{} job(s) republished with executions reset, {} skipped (left in the morgue).",
                report.retried.len(),
                report.skipped.len()
            );
            if let tools::Select::JobId(id) = wanted {
                if report.retried.is_empty() {
                    bail!("job {id} is not in the morgue");
                }
            }
            Ok(())
        }
        MorgueCommand::Purge { yes } => {
            let name = client.morgue_queue().to_string();
            confirm(
                yes,
                &format!("Delete every dead job in the morgue {name:?}?"),
            )?;
            tools::purge(client).await?;
            println!("Purged the morgue {name:?}: every dead job published before now is gone.");
            Ok(())
        }
    }
}

async fn run_worker(g: &GlobalArgs, args: RunArgs) -> anyhow::Result<()> {
    let mut config = WorkerConfig::new(g.queue.clone());
    config.concurrency = args.concurrency;
    config.streams = args.streams;
    config.prefetch = args.prefetch.unwrap_or(args.concurrency);
    config.ack_deadline = Duration::from_secs(args.ack_deadline);
    config.shutdown_timeout = seconds("--shutdown-timeout", args.shutdown_timeout)?;
    config.stats_interval =
        seconds("--stats-interval", args.stats_interval)?.max(Duration::from_secs(1));
    // Fail early on a duplicate class or a bad queue name, before connecting.
    Registry::from_inventory()?;
    crate::queue::validate_queue_name(&g.topic_prefix, &g.queue)?;
    let client = connect(g).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    Worker::new(client, config).run(shutdown).await?;
    Ok(())
}

/// First SIGINT / SIGTERM: graceful shutdown. Second: exit at once.
async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    let first = tokio::select! { _ = term.recv() => "SIGTERM", _ = int.recv() => "SIGINT" };
    tracing::info!(
        signal = first,
        "shutting down gracefully; send the signal again to exit at once"
    );
    shutdown.cancel();
    let second = tokio::select! { _ = term.recv() => "SIGTERM", _ = int.recv() => "SIGINT" };
    tracing::warn!(signal = second, "second signal: exiting at once");
    std::process::exit(130);
}
