//! `sync-worker`: the scheduled job that syncs peer-mentor certifications and memberships between the app and HLF's
//! Dynamics 365. This binary only parses arguments, loads configuration and wires the library crates together.

// A command-line tool talks to its user on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

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

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Run the embedded demo: the Dataverse emulator on loopback, SQLite with seeded data, a real sync.
    Demo,
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Validate the configuration file and the credential variables, then print the effective settings with
    /// secrets shown only as "set". Every problem is listed at once.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            if error.downcast_ref::<ConfigError>().is_some() || error.downcast_ref::<NoConfigFile>().is_some() {
                ExitCode::from(EXIT_MISCONFIGURED)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Config {
            action: ConfigAction::Check,
        } => {
            let config = load_config(cli.config)?;
            println!("{}", config.summary());
            println!("\nconfiguration OK");
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo => {
            println!(
                "sync-worker demo: not yet available. The embedded demo (Dataverse emulator on loopback, SQLite with \
                 seeded data, a real sync) arrives with the emulator; see docs/ARCHITECTURE.md for the plan."
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// No `--config` flag and no `SYNC_CONFIG` variable.
#[derive(Debug, thiserror::Error)]
#[error("no configuration file given; pass --config FILE or set {CONFIG_PATH_ENV} (see fixtures/config/example.toml)")]
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
