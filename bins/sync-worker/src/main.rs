//! `sync-worker`: the scheduled job that syncs peer-mentor certifications and memberships between the app and HLF's
//! Dynamics 365. This binary only parses arguments, loads configuration and wires the library crates together.

// A command-line tool talks to its user on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod commands;
mod demo;
mod live;
mod monitor;
mod progress;
mod summary;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use integration_config::{CONFIG_PATH_ENV, ConfigError, IntegrationConfig};

/// Exit status when the configuration cannot be used (documented in README.md).
const EXIT_MISCONFIGURED: u8 = 3;

#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// The configuration file (TOML). Defaults to the SYNC_CONFIG variable.
    #[arg(long, global = true, env = CONFIG_PATH_ENV, value_name = "FILE")]
    config: Option<PathBuf>,

    /// How logs on stderr are written: `text` for people (with a progress line on a terminal), `json` for a log
    /// collector (one JSON object per line, no progress line). `RUST_LOG` sets the level.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

/// The format of the logs on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one sync in both directions for every organisation (or `--org`), then exit: for a Kubernetes CronJob
    /// or a systemd timer. Exit 0 when runs succeeded or only queued failed records, 1 when a run failed.
    Run(commands::OrgArgs),
    /// Run on the configured schedule (nightly at a local time, daylight saving handled, or every N minutes) until
    /// SIGTERM or Ctrl-C; a signal during a run lets it finish its current page first.
    Daemon(commands::OrgArgs),
    /// Dry run: print every change a sync would make now, writing nothing to either side.
    Plan(commands::PlanArgs),
    /// Compare every linked record with Dynamics and print the divergence (member numbers and fields only).
    Reconcile(commands::OrgArgs),
    /// Serve the admin dashboard on `dashboard.bind` until SIGTERM or Ctrl-C. Needs the admin credential in the
    /// variable `dashboard.credential_env` names (SYNC_DASHBOARD_CREDENTIAL by default); exits 3 without it.
    Serve,
    /// Write the mentors' certification fields of one organisation as CSV files for the Dynamics Import Data
    /// wizard (the fallback while the API path is down; see docs/csv-fallback.md). Mentors that cannot be imported
    /// are listed with the reason in an errors file beside them.
    ExportCsv(commands::ExportCsvArgs),
    /// The accounting export alone: send approved postings to Dynamics, then reconcile the ones exported before
    /// (`run` and `daemon` do this after each sync when `[accounting] enabled = true`). With --dry-run, only show
    /// what it would send and what the reconciliation finds. Exit 3 when the accounting export is off.
    ExportPostings(commands::ExportPostingsArgs),
    /// Delete now what is older than `retention.days` (run logs, failed records, conflicts, notifications, resolved
    /// alerts, unconfirmed cache entries), as `run` and `daemon` do after every round. --dry-run only counts.
    Purge(commands::PurgeArgs),
    /// An erasure request: remove one member's personal data from the sync state (links and their last agreed
    /// values, failed records, conflicts, notifications, cache entries) and say what was removed. Run it after the
    /// member was removed from the app; a linked contact is hidden from the public site by the next run.
    Forget(commands::ForgetArgs),
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Run the embedded demo: the Dataverse emulator on loopback, SQLite with seeded data, real syncs through the
    /// production path; with --serve, then the dashboard on loopback.
    Demo(demo::DemoArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Validate the configuration file and the credential variables, then print the effective settings with
    /// secrets shown only as "set". Every problem is listed at once.
    Check {
        /// Also check against the live Dynamics instance, reading only: each table's metadata against the field
        /// mapping, and the application user's privileges against what the mapping needs. Exit 3 when either does
        /// not fit, 1 when Dynamics cannot be asked.
        #[arg(long)]
        live: bool,
        /// With --live: only this organisation.
        #[arg(long, value_name = "ID", requires = "live")]
        org: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own summary; only errors are logged unless RUST_LOG asks for more.
    progress::enable(cli.log_format == LogFormat::Text);
    init_logging(
        cli.log_format,
        match cli.command {
            Command::Demo(_) => "error",
            // The jobs' logs are read afterwards: one line as each run starts and ends, admin actions, startup.
            Command::Run(_)
            | Command::Daemon(_)
            | Command::Reconcile(_)
            | Command::Serve
            | Command::ExportPostings(_) => "info",
            // The others print a report; their logs say only what went wrong.
            _ => "warn",
        },
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            let no_credential = matches!(
                error.downcast_ref::<dashboard::Error>(),
                Some(
                    dashboard::Error::NoCredential { .. }
                        | dashboard::Error::WeakCredential { .. }
                        | dashboard::Error::Tls { .. }
                )
            );
            if error.downcast_ref::<ConfigError>().is_some()
                || error.downcast_ref::<NoConfigFile>().is_some()
                || error.downcast_ref::<UnknownOrganisation>().is_some()
                || error.downcast_ref::<AccountingOff>().is_some()
                || error.downcast_ref::<commands::ClearText>().is_some()
                || no_credential
            {
                ExitCode::from(EXIT_MISCONFIGURED)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Logs go to stderr; `RUST_LOG` filters them (`default` when unset, so command output stays readable).
fn init_logging(format: LogFormat, default: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(false).try_init(),
    };
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Config {
            action: ConfigAction::Check { live, org },
        } => {
            let config = load_config(cli.config)?;
            println!("{}", config.summary());
            if live {
                let found = live::check(&config, org.as_deref()).await?;
                print!("\n{}", found.text);
                if found.misfit {
                    println!(
                        "\nconfiguration does not fit the live instance: fix the mapping file or ask HLF IT for the \
                         privileges named above, then run `config check --live` again"
                    );
                    return Ok(ExitCode::from(EXIT_MISCONFIGURED));
                }
            }
            let n = &config.notifications;
            if n.email.is_none() && n.webhook.is_none() {
                // Valid, but nobody hears of a certification that cannot be written or of an alert.
                println!(
                    "\nconfiguration OK, with a warning: no notification channel is configured, so coordinators are \
                     not e-mailed when a certification cannot be written to Dynamics and alerts go nowhere but the \
                     dashboard and health-check; notifications wait until [notifications.email] or \
                     [notifications.webhook] is set"
                );
            } else {
                println!("\nconfiguration OK");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => commands::run(&load_config(cli.config)?, &args).await,
        Command::Daemon(args) => commands::daemon(&load_config(cli.config)?, &args).await,
        Command::Plan(args) => commands::plan(&load_config(cli.config)?, &args).await,
        Command::Reconcile(args) => commands::reconcile(&load_config(cli.config)?, &args).await,
        Command::Serve => commands::serve(&load_config(cli.config)?).await,
        Command::ExportCsv(args) => commands::export_csv(&load_config(cli.config)?, &args).await,
        Command::ExportPostings(args) => commands::export_postings(&load_config(cli.config)?, &args).await,
        Command::Purge(args) => commands::purge(&load_config(cli.config)?, &args).await,
        Command::Forget(args) => commands::forget(&load_config(cli.config)?, &args).await,
        Command::Demo(args) => {
            demo::run(args).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `--org` names an organisation the configuration does not have (exit 3, as for any configuration problem).
#[derive(Debug, thiserror::Error)]
#[error("no organisation `{0}` in the configuration; see `sync-worker config check`")]
pub(crate) struct UnknownOrganisation(pub(crate) String);

/// `export-postings` while `[accounting] enabled` is not set (exit 3).
#[derive(Debug, thiserror::Error)]
#[error(
    "the accounting export is off in this configuration; set `enabled = true` under [accounting] (the mapping needs [records.posting]) to export postings"
)]
pub(crate) struct AccountingOff;

/// No `--config` flag and no `SYNC_CONFIG` variable.
#[derive(Debug, thiserror::Error)]
#[error(
    "no configuration file given; pass --config FILE or set {CONFIG_PATH_ENV}. The smallest file is `mapping = \"builtin:hlf-default\"` and one `[[organisations]]` table with `id` and `name`; the README's configuration reference lists every key"
)]
struct NoConfigFile;

fn load_config(path: Option<PathBuf>) -> anyhow::Result<IntegrationConfig> {
    let path = path.ok_or(NoConfigFile)?;
    Ok(IntegrationConfig::load(&path, &process_environment())?)
}

/// The process environment. Variables whose names or values are not valid UTF-8 are skipped: none of ours are.
fn process_environment() -> HashMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}
