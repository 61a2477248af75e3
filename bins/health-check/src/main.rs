//! `health-check`: judges each organisation's Dynamics sync for CI and probes. Reads the sync store (read-only) and
//! calls WhoAmI; writes nothing anywhere. Exit status: 0 healthy, 1 degraded, 2 unhealthy, 3 misconfigured.

// A command-line tool talks to its user on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Parser;
use dynamics_client::{ClientOptions, DynamicsClient};
use health_monitor::{Authentication, Connectivity, HealthMonitor, OrganisationHealth, Probe, Status};
use integration_config::{CONFIG_PATH_ENV, ExposeSecret, IntegrationConfig};
use serde::Serialize;
use sync_engine::SystemClock;
use sync_store::Store;

const EXIT_DEGRADED: u8 = 1;
const EXIT_UNHEALTHY: u8 = 2;
const EXIT_MISCONFIGURED: u8 = 3;

/// Check the health of the HLF Dynamics sync: configuration, authentication, connectivity (WhoAmI), freshness of
/// the last successful sync, and the open alerts.
///
/// Exit status: 0 healthy, 1 degraded, 2 unhealthy, 3 misconfigured. Needs read access to the sync database only.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// The configuration file (TOML). Defaults to the SYNC_CONFIG variable.
    #[arg(long, env = CONFIG_PATH_ENV, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Only this organisation (its `id` in the configuration); all of them when omitted.
    #[arg(long, value_name = "ID")]
    org: Option<String>,
    /// Print JSON instead of the human summary.
    #[arg(long)]
    json: bool,
    /// Do not call Dynamics: judge from the sync database alone.
    #[arg(long)]
    no_probe: bool,
    /// Instead of the health check: compare the application user's Dynamics privileges with what the sync needs
    /// (least privilege). Exit 0 when it holds exactly what it needs, 1 when it holds more than it needs (warnings),
    /// 2 when a needed privilege is missing. Reads no database.
    #[arg(long, conflicts_with = "no_probe")]
    privileges: bool,
}

/// The JSON document printed with `--json`.
#[derive(Debug, Serialize)]
struct Report {
    status: Status,
    organisations: Vec<OrganisationHealth>,
}

/// A problem with the configuration or the store address: exit 3.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Misconfigured(String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_UNHEALTHY);
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(code) => code,
        Err(error) => {
            let misconfigured = error.downcast_ref::<Misconfigured>().is_some()
                || error.downcast_ref::<integration_config::ConfigError>().is_some();
            if cli.json {
                let status = if misconfigured { "misconfigured" } else { "unhealthy" };
                println!(
                    "{}",
                    serde_json::json!({ "status": status, "error": format!("{error:#}") })
                );
            } else {
                eprintln!("error: {error:#}");
            }
            ExitCode::from(if misconfigured {
                EXIT_MISCONFIGURED
            } else {
                EXIT_UNHEALTHY
            })
        }
    }
}

fn client_of(
    config: &IntegrationConfig,
    organisation: &integration_config::OrganisationConfig,
) -> Result<DynamicsClient, Misconfigured> {
    DynamicsClient::for_organisation(
        organisation,
        ClientOptions {
            rate_limit: config.rate_limit.clone(),
            retry: config.retry.clone(),
            ..ClientOptions::default()
        },
    )
    .map_err(|e| Misconfigured(format!("the Dynamics client of organisation {}: {e}", organisation.id)))
}

/// `--privileges`: each organisation's application user against the privileges its mapping needs.
async fn privileges(
    cli: &Cli,
    config: &IntegrationConfig,
    organisations: &[&integration_config::OrganisationConfig],
) -> anyhow::Result<ExitCode> {
    let mut worst = 0u8;
    let mut reports = Vec::new();
    let mut text = String::new();
    for organisation in organisations {
        let client = client_of(config, organisation)?;
        let needs = health_monitor::needs(&organisation.mapping, config.accounting.enabled);
        let report = health_monitor::check_privileges(&client, &needs)
            .await
            .with_context(|| {
                format!(
                    "reading the privileges of organisation {}'s application user",
                    organisation.id
                )
            })?;
        worst = worst.max(if !report.sufficient() {
            EXIT_UNHEALTHY
        } else if !report.excess.is_empty() {
            EXIT_DEGRADED
        } else {
            0
        });
        let _ = writeln!(
            text,
            "organisation {} ({}): Dynamics privileges",
            organisation.id, organisation.name
        );
        let _ = write!(text, "{report}");
        reports.push(serde_json::json!({ "organisation": organisation.id, "privileges": report }));
    }
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "organisations": reports }))?
        );
    } else {
        print!("{text}");
        if worst != 0 {
            println!(
                "docs/hlf-it-prerequisites.md (section 3) lists the role the sync needs; send this output to HLF IT."
            );
        }
    }
    Ok(ExitCode::from(worst))
}

async fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let path = cli.config.clone().ok_or_else(|| {
        Misconfigured(format!(
            "no configuration file given; pass --config FILE or set {CONFIG_PATH_ENV}. The smallest file is `mapping = \"builtin:hlf-default\"` and one `[[organisations]]` table with `id` and `name`; the README's configuration reference lists every key"
        ))
    })?;
    let env: HashMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let config = IntegrationConfig::load(&path, &env)?;
    let organisations: Vec<_> = config
        .organisations
        .iter()
        .filter(|o| cli.org.as_deref().is_none_or(|id| id == o.id))
        .collect();
    if organisations.is_empty() {
        return Err(Misconfigured(format!(
            "no organisation `{}` in the configuration; see `sync-worker config check`",
            cli.org.as_deref().unwrap_or_default()
        ))
        .into());
    }
    if cli.privileges {
        return privileges(cli, &config, &organisations).await;
    }
    let store = Store::connect_read_only(config.store.url.expose_secret())
        .await
        .with_context(|| format!("reading the sync store {}", config.store.redacted_url()))?;
    let monitor = HealthMonitor::new(&config, store.clone(), Arc::new(store), Arc::new(SystemClock));
    let mut report = Report {
        status: Status::Healthy,
        organisations: Vec::new(),
    };
    for organisation in organisations {
        let client = client_of(&config, organisation)?;
        let probe = if cli.no_probe {
            Probe::Skip
        } else {
            Probe::Dynamics(&client)
        };
        let health = monitor
            .check(organisation, probe)
            .await
            .with_context(|| format!("checking organisation {}", organisation.id))?;
        report.status = report.status.max(health.status);
        report.organisations.push(health);
    }
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", human(&report));
    }
    Ok(match report.status {
        Status::Healthy => ExitCode::SUCCESS,
        Status::Degraded => ExitCode::from(EXIT_DEGRADED),
        Status::Unhealthy => ExitCode::from(EXIT_UNHEALTHY),
    })
}

/// The summary for a person: the verdict first, then why, then the details.
fn human(report: &Report) -> String {
    let mut out = String::new();
    for h in &report.organisations {
        let _ = writeln!(out, "organisation {} ({}): {}", h.organisation, h.name, label(h.status));
        for reason in &h.reasons {
            let _ = writeln!(out, "  ! {reason}");
        }
        let connectivity = match &h.connectivity {
            Connectivity::NotChecked => "not checked".to_owned(),
            Connectivity::Ok { latency_ms } => format!("ok (WhoAmI in {latency_ms} ms)"),
            Connectivity::Failed { error } => format!("FAILED: {error}"),
        };
        let authentication = match &h.authentication {
            Authentication::NotChecked => "not checked".to_owned(),
            Authentication::Ok => "ok".to_owned(),
            Authentication::Failed { message, .. } => format!("FAILED: {message}"),
        };
        let at =
            |t: Option<DateTime<Utc>>| t.map_or("never".to_owned(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string());
        let _ = writeln!(out, "  connectivity:        {connectivity}");
        let _ = writeln!(out, "  authentication:      {authentication}");
        let _ = writeln!(out, "  last pull (Dynamics to app): {}", at(h.last_success.pull));
        let _ = writeln!(out, "  last push (app to Dynamics): {}", at(h.last_success.push));
        let _ = writeln!(out, "  failed runs in a row: {}", h.consecutive_failed_runs);
        let _ = writeln!(
            out,
            "  certification cache: {}, as of {}{}",
            if h.cache.entries == 1 {
                "1 entry".to_owned()
            } else {
                format!("{} entries", h.cache.entries)
            },
            at(h.cache.as_of),
            if h.cache.stale { " (STALE)" } else { "" }
        );
        if h.mismatch_count > 0 {
            let _ = writeln!(
                out,
                "  certification mismatches: {} (the app and Dynamics disagree; see the alert)",
                h.mismatch_count
            );
        }
        if h.not_in_dynamics > 0 {
            let _ = writeln!(
                out,
                "  not in Dynamics:     {} (active in the app, never confirmed by Dynamics; the failed-record queue says why)",
                mentors(h.not_in_dynamics)
            );
        }
        let refused = matches!(
            &h.authentication,
            Authentication::Failed {
                aadsts: Some(7_000_222),
                ..
            }
        );
        match (h.secret_days_left, h.secret_expires_on) {
            // The configured date is only what the configuration says; Azure AD's answer wins.
            (_, Some(date)) if refused => {
                let _ = writeln!(
                    out,
                    "  client secret:       EXPIRED (Azure AD says so; client_secret_expires_on says {date})"
                );
            }
            (Some(days), Some(date)) if days <= 0 => {
                let _ = writeln!(out, "  client secret:       expired on {date}");
            }
            (Some(days), Some(date)) => {
                let _ = writeln!(out, "  client secret:       expires on {date}, in {days} days");
            }
            _ if refused => {
                let _ = writeln!(out, "  client secret:       EXPIRED (Azure AD says so)");
            }
            _ => {}
        }
        // Each open alert is already a reason above; here only its cause and severity, for acknowledging it.
        let alerts: Vec<String> = h
            .open_alerts
            .iter()
            .map(|a| format!("{} ({})", a.cause, format!("{:?}", a.severity).to_lowercase()))
            .collect();
        let _ = writeln!(
            out,
            "  open alerts:         {}",
            if alerts.is_empty() {
                "none".to_owned()
            } else {
                alerts.join(", ")
            }
        );
    }
    let _ = writeln!(out, "overall: {}", label(report.status));
    out
}

fn label(status: Status) -> &'static str {
    match status {
        Status::Healthy => "healthy",
        Status::Degraded => "DEGRADED",
        Status::Unhealthy => "UNHEALTHY",
    }
}

/// `1 mentor`, `2 mentors`.
fn mentors(n: u64) -> String {
    if n == 1 {
        "1 mentor".to_owned()
    } else {
        format!("{n} mentors")
    }
}
