//! `dataverse-sim`: runs the Dataverse Web API and Azure AD token endpoint emulator on loopback until interrupted.

// A command-line tool reports to its operator on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use dataverse_sim::{AppRegistration, FaultConfig, GenerateSpec, ServiceLimits, Simulator, Transport};
use dynamics_client::{ClientOptions, DynamicsClient};

mod snapshot;

/// Runs a local emulator of the Dataverse Web API v9.2 and the Azure AD v2.0 token endpoint; or, with
/// `snapshot`, reads a Dataverse instance's table definitions into emulator fixtures.
#[derive(Debug, Parser)]
#[command(name = "dataverse-sim", version, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Loopback address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Fixture directory with metadata/*.json and data/<entity set>.json; without it the bundled metadata is used.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Serve plain HTTP instead of HTTPS.
    #[arg(long)]
    http: bool,
    /// Write the CA certificate (PEM) here, for NODE_EXTRA_CA_CERTS or a client's trusted roots.
    #[arg(long)]
    ca_cert_out: Option<PathBuf>,
    /// Tenant id of the registered app.
    #[arg(long, default_value = dataverse_sim::DEFAULT_TENANT_ID)]
    tenant_id: String,
    /// Client id of the registered app.
    #[arg(long, default_value = dataverse_sim::DEFAULT_CLIENT_ID)]
    client_id: String,
    /// Client secret of the registered app.
    #[arg(long, env = "DATAVERSE_SIM_CLIENT_SECRET", default_value = dataverse_sim::DEFAULT_CLIENT_SECRET, hide_env_values = true)]
    client_secret: String,
    /// When the client secret expires (RFC 3339).
    #[arg(long)]
    secret_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Access token lifetime in seconds.
    #[arg(long, default_value_t = 3599)]
    token_lifetime_s: u64,
    /// Delta token lifetime in days.
    #[arg(long, default_value_t = 7)]
    delta_token_lifetime_days: u64,
    /// Scale mode: generate this many contacts.
    #[arg(long)]
    generate_contacts: Option<usize>,
    /// Scale mode: how many of the generated contacts are mentors.
    #[arg(long, default_value_t = 0)]
    generate_mentors: usize,
    /// Seed for generated rows and random faults.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Service protection: requests per user per window.
    #[arg(long, default_value_t = 6000)]
    max_requests: u32,
    /// Service protection: window length in seconds.
    #[arg(long, default_value_t = 300)]
    window_s: u64,
    /// Service protection: execution time per user per window, in milliseconds.
    #[arg(long, default_value_t = 1_200_000)]
    max_execution_ms: u64,
    /// Service protection: concurrent requests per user.
    #[arg(long, default_value_t = 52)]
    max_concurrent: u32,
    /// Execution time charged per operation, in milliseconds.
    #[arg(long, default_value_t = 10)]
    cost_per_operation_ms: u64,
    /// A fault file (TOML or JSON, see docs/emulator.md).
    #[arg(long)]
    fault_file: Option<PathBuf>,
    /// Latency added to every request, in milliseconds.
    #[arg(long)]
    latency_ms: Option<u64>,
    /// Error rate per status, e.g. `503=0.05` (repeatable).
    #[arg(long, value_parser = parse_rate)]
    error_rate: Vec<(String, f64)>,
    /// Probability of dropping a connection.
    #[arg(long)]
    reset_rate: Option<f64>,
    /// Probability of holding a request and then dropping the connection.
    #[arg(long)]
    timeout_rate: Option<f64>,
    /// Answer the first N requests with 429.
    #[arg(long)]
    throttle_next: Option<u32>,
    /// After carrying a request out, answer with this status at a rate, e.g. `504=0.01` (repeatable).
    #[arg(long, value_parser = parse_rate)]
    after_commit_error_rate: Vec<(String, f64)>,
    /// Probability of dropping a connection after carrying its request out.
    #[arg(long)]
    after_commit_reset_rate: Option<f64>,
    /// Probability of holding an answer after carrying its request out, then dropping the connection.
    #[arg(long)]
    after_commit_timeout_rate: Option<f64>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Run the emulator's conformance checks against a Dataverse instance (the emulator itself or a real sandbox)
    /// and report each difference from Dataverse's documented behaviour. Read-only unless --scratch-table names a
    /// table the write checks may create, change and delete their own rows in. Exit 0 without differences, 1 with.
    /// Credentials come from DYNAMICS_TENANT_ID, DYNAMICS_CLIENT_ID and DYNAMICS_CLIENT_SECRET (or their _FILE forms).
    Conformance {
        /// The instance's organisation URL.
        #[arg(long, value_name = "URL")]
        target: String,
        /// A table (logical name) the write checks may use; never `contact`.
        #[arg(long, value_name = "NAME")]
        scratch_table: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// The Azure AD authority host, when not https://login.microsoftonline.com.
        #[arg(long, value_name = "URL")]
        authority_host: Option<String>,
        /// An extra CA certificate (PEM) to trust for the instance and Azure AD.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
    },
    /// Write a Dataverse instance's table definitions (attributes, option sets, alternate keys; no rows) as
    /// emulator fixtures in DIR/metadata/<table>.json, loadable with `--data DIR`. Reads only. Credentials come
    /// from DYNAMICS_TENANT_ID, DYNAMICS_CLIENT_ID and DYNAMICS_CLIENT_SECRET (or their _FILE forms).
    Snapshot {
        /// The instance's organisation URL, e.g. https://hlf-sandbox.crm4.dynamics.com.
        #[arg(long, value_name = "URL")]
        target: String,
        /// The tables' logical names, comma-separated.
        #[arg(long, value_name = "TABLES", value_delimiter = ',', required = true)]
        tables: Vec<String>,
        /// The folder to write into (DIR/metadata/ is created).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The Azure AD authority host, when not https://login.microsoftonline.com (the emulator's, in tests).
        #[arg(long, value_name = "URL")]
        authority_host: Option<String>,
        /// An extra CA certificate (PEM) to trust for the instance and Azure AD.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
    },
}

/// The production client for `target` with the DYNAMICS_* credentials of the environment.
fn client(target: &str, authority_host: Option<&str>, ca_file: Option<&Path>) -> anyhow::Result<DynamicsClient> {
    let mut env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    env.insert("DYNAMICS_INSTANCE_URL".to_owned(), target.to_owned());
    env.remove("DYNAMICS_INSTANCE_URL_FILE");
    let mut text =
        "mapping = \"builtin:hlf-default\"\n[[organisations]]\nid = \"target\"\nname = \"target\"\n".to_owned();
    if let Some(host) = authority_host {
        text.push_str(&format!("authority_host = {}\n", toml::Value::String(host.to_owned())));
    }
    let config = integration_config::IntegrationConfig::from_toml(&text, "snapshot", Path::new("."), &env)
        .context("the DYNAMICS_* credentials")?;
    let organisation = config.organisations.first().context("the target organisation")?;
    let extra_root_certificates = match ca_file {
        Some(path) => vec![std::fs::read(path).with_context(|| format!("reading {}", path.display()))?],
        None => Vec::new(),
    };
    Ok(DynamicsClient::for_organisation(
        organisation,
        ClientOptions {
            extra_root_certificates,
            ..ClientOptions::default()
        },
    )?)
}

fn parse_rate(text: &str) -> Result<(String, f64), String> {
    let (status, rate) = text.split_once('=').ok_or("expected STATUS=RATE, e.g. 503=0.05")?;
    let rate: f64 = rate.parse().map_err(|_| format!("`{rate}` is not a number"))?;
    Ok((status.trim().to_owned(), rate))
}

fn load_faults(args: &Args) -> anyhow::Result<FaultConfig> {
    let mut config = match &args.fault_file {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read fault file {}", path.display()))?;
            if path.extension().is_some_and(|e| e == "json") {
                serde_json::from_str(&text).with_context(|| format!("fault file {} is not valid", path.display()))?
            } else {
                toml::from_str(&text).with_context(|| format!("fault file {} is not valid", path.display()))?
            }
        }
        None => FaultConfig::default(),
    };
    if config.seed.is_none() {
        config.seed = Some(args.seed);
    }
    config.latency_ms = args.latency_ms.or(config.latency_ms);
    config.reset_rate = args.reset_rate.or(config.reset_rate);
    config.timeout_rate = args.timeout_rate.or(config.timeout_rate);
    config.throttle_next = args.throttle_next.or(config.throttle_next);
    for (status, rate) in &args.error_rate {
        config.error_rates.insert(status.clone(), *rate);
    }
    let after = &mut config.after_commit;
    after.reset_rate = args.after_commit_reset_rate.or(after.reset_rate);
    after.timeout_rate = args.after_commit_timeout_rate.or(after.timeout_rate);
    for (status, rate) in &args.after_commit_error_rate {
        after.error_rates.insert(status.clone(), *rate);
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Some(Command::Conformance {
        target,
        scratch_table,
        json,
        authority_host,
        ca_file,
    }) = &args.command
    {
        if scratch_table.as_deref() == Some("contact") {
            bail!("--scratch-table contact refused: the write checks never touch contacts; name a table made for them");
        }
        let client = client(target, authority_host.as_deref(), ca_file.as_deref())?;
        let options = dataverse_sim::conformance::Options {
            scratch_table: scratch_table.clone(),
        };
        let report = dataverse_sim::conformance::run(&client, &options).await?;
        if *json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("conformance of {target}: {report}");
        }
        std::process::exit(i32::from(!report.differences.is_empty()));
    }
    if let Some(Command::Snapshot {
        target,
        tables,
        out,
        authority_host,
        ca_file,
    }) = &args.command
    {
        let client = client(target, authority_host.as_deref(), ca_file.as_deref())?;
        for path in snapshot::write(&client, tables, out).await? {
            println!("wrote {}", path.display());
        }
        return Ok(());
    }
    if !args.host.is_loopback() {
        bail!(
            "--host {} is not a loopback address; the simulator only serves loopback",
            args.host
        );
    }
    let mut app = AppRegistration::new(&args.tenant_id, &args.client_id, &args.client_secret);
    if let Some(at) = args.secret_expires_at {
        app = app.with_secret_expiry(at);
    }
    let mut builder = Simulator::builder()
        .bind(SocketAddr::new(args.host, args.port))
        .transport(if args.http { Transport::Http } else { Transport::Https })
        .app(app)
        .token_lifetime(Duration::from_secs(args.token_lifetime_s))
        .delta_token_lifetime(Duration::from_secs(
            args.delta_token_lifetime_days.saturating_mul(24 * 3600),
        ))
        .limits(ServiceLimits {
            window: Duration::from_secs(args.window_s),
            max_requests: args.max_requests,
            max_execution_time: Duration::from_millis(args.max_execution_ms),
            max_concurrent: args.max_concurrent,
            cost_per_operation: Duration::from_millis(args.cost_per_operation_ms),
        })
        .seed(args.seed)
        .faults(load_faults(&args)?);
    builder = match &args.data {
        Some(dir) => builder.fixtures_dir(dir),
        None => builder.demo_data(),
    };
    if let Some(contacts) = args.generate_contacts {
        builder = builder.generate(GenerateSpec {
            contacts,
            mentors: args.generate_mentors,
            seed: args.seed,
        });
    }
    let started = std::time::Instant::now();
    let sim = builder.start().await.context("cannot start the simulator")?;
    if let (Some(path), Some(pem)) = (&args.ca_cert_out, sim.ca_certificate_pem()) {
        std::fs::write(path, pem).with_context(|| format!("cannot write the CA certificate to {}", path.display()))?;
    }
    println!(
        "dataverse-sim listening (started in {} ms)",
        started.elapsed().as_millis()
    );
    println!("  instance url : {}", sim.base_url());
    println!("  web api      : {}", sim.api_url());
    println!("  token url    : {}", sim.token_url());
    println!("  scope        : {}", sim.scope());
    println!("  tenant id    : {}", args.tenant_id);
    println!("  client id    : {}", args.client_id);
    println!("  stats        : {}/_sim/stats", sim.base_url());
    if let Some(path) = &args.ca_cert_out {
        println!("  ca cert      : {}", path.display());
    }
    tokio::signal::ctrl_c().await.context("cannot wait for Ctrl-C")?;
    let stats = sim.stats();
    eprintln!("stopping: {} requests, {} rows served", stats.requests, stats.rows);
    sim.shutdown().await;
    Ok(())
}
