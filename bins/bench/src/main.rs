//! `bench`: measures the sync on the Dataverse emulator and writes the figures to docs/benchmarks.md.
//!
//! `bench hlf-50k` (the scenario: full sync, nightly delta, no-change delta and the naive way), `bench
//! growth` (the full sync at 5,000, 50,000 and 500,000 contacts), `bench mentor-growth` (the full sync over 500,000
//! contacts with 5,000, 20,000 and 50,000 mentors), `bench retrieve-all` (a full read by this project's client and by
//! DynamicsWebApi's `retrieveAll`), `bench all`. The emulator runs as a separate process;
//! every scenario runs in a child process of the bench (the hidden `child` command) that drives the real
//! `SyncService`, `DynamicsClient` and `Store` and prints its figures as JSON. Markdown goes to stdout, or with
//! `--write FILE` into that file's marked sections.

// A command-line tool reports to its user on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod emulator;
mod harness;
mod measure;
mod report;
mod scenarios;
mod section;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde::de::DeserializeOwned;

use crate::emulator::{Emulator, EmulatorSpec};
use crate::harness::{Harness, StoreKind, Target};
use crate::report::{GrowthPoint, NodeRead, Repeated, RetrieveAllResult, RunInfo};
use crate::scenarios::ReadMode;

/// Benchmarks the HLF Dynamics sync on the Dataverse emulator (loopback only).
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// 50,000 contacts, 5,000 mentors: full sync, nightly delta, no-change delta, and the naive way.
    #[command(name = "hlf-50k")]
    Hlf50k(RunArgs),
    /// The full sync at growing numbers of contacts.
    Growth(RunArgs),
    /// The full sync at growing numbers of mentors, over 500,000 contacts.
    MentorGrowth(RunArgs),
    /// A full read of the contacts by this project's client and by DynamicsWebApi's retrieveAll.
    RetrieveAll(RunArgs),
    /// All four.
    All(RunArgs),
    /// One measured scenario against a running emulator, as JSON on stdout (started by the bench itself).
    #[command(hide = true)]
    Child {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        task: ChildTask,
    },
}

#[derive(Debug, Clone, clap::Args)]
struct RunArgs {
    /// Rewrite this Markdown file's generated sections (between `<!-- bench:NAME:start/end -->` markers) instead of
    /// printing them.
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
    /// The dataverse-sim binary (default: built with cargo and taken from next to this binary).
    #[arg(long, value_name = "PATH")]
    sim: Option<PathBuf>,
    /// Latency injected into every request, in milliseconds.
    #[arg(long, default_value_t = 30)]
    latency_ms: u64,
    /// Run the naive way over only this many mentors (its wall time is then extrapolated, its requests are not).
    #[arg(long, value_name = "N")]
    naive_mentors: Option<usize>,
    /// Contact counts of the growth curve.
    #[arg(long, value_delimiter = ',', default_values_t = [5_000usize, 50_000, 500_000])]
    sizes: Vec<usize>,
    /// Mentor counts of the growth in mentors (over `--mentor-growth-contacts` contacts).
    #[arg(long, value_delimiter = ',', default_values_t = [5_000usize, 20_000, 50_000])]
    mentor_sizes: Vec<usize>,
    /// Contacts of the growth in mentors.
    #[arg(long, default_value_t = 500_000)]
    mentor_growth_contacts: usize,
    /// The sync store: SQLite, or a fresh database on the PostgreSQL server `TEST_DATABASE_URL` names. With
    /// `postgres`, `--write` fills the sections named `NAME-postgres`.
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    store: StoreKind,
}

#[derive(Debug, Clone, Subcommand)]
enum ChildTask {
    /// The hlf-50k runs.
    Hlf {
        #[arg(long)]
        contacts: usize,
        #[arg(long)]
        mentors: usize,
        #[arg(long)]
        naive_mentors: usize,
    },
    /// One full sync.
    FullSync {
        #[arg(long)]
        mentors: usize,
    },
    /// (f) at one point: the first full sync killed there (in a process of its own), then the rerun.
    KilledRerun(KillArgs),
    /// The run (f) kills (on the store `--store-url` names).
    KilledRun(KillArgs),
    /// A full read of the contacts.
    Read {
        #[arg(long, value_enum)]
        mode: ReadMode,
    },
}

/// Where (f) kills the first full sync, and the scenario's size.
#[derive(Debug, Clone, clap::Args)]
struct KillArgs {
    #[arg(long, value_enum)]
    point: scenarios::KillPoint,
    #[arg(long)]
    contacts: usize,
    #[arg(long)]
    mentors: usize,
    /// For `killed-run`: where its clock starts (the parent's scenario start); now when not given.
    #[arg(long)]
    now: Option<chrono::DateTime<chrono::Utc>>,
}

const HLF_CONTACTS: usize = 50_000;
const HLF_MENTORS: usize = 5_000;
/// Conflicts an admin resolves at once in (h).
const HLF_CONFLICTS: usize = 1_000;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Child { target, task } => child(&target, task),
        Cmd::Hlf50k(args) => parent(&args, &[Section::Hlf]),
        Cmd::Growth(args) => parent(&args, &[Section::Growth]),
        Cmd::MentorGrowth(args) => parent(&args, &[Section::MentorGrowth]),
        Cmd::RetrieveAll(args) => parent(&args, &[Section::RetrieveAll]),
        Cmd::All(args) => parent(
            &args,
            &[
                Section::Hlf,
                Section::Growth,
                Section::MentorGrowth,
                Section::RetrieveAll,
            ],
        ),
    }
}

#[derive(Debug, Clone, Copy)]
enum Section {
    Hlf,
    Growth,
    MentorGrowth,
    RetrieveAll,
}

impl Section {
    fn name(self) -> &'static str {
        match self {
            Section::Hlf => "hlf-50k",
            Section::Growth => "growth",
            Section::MentorGrowth => "mentor-growth",
            Section::RetrieveAll => "retrieve-all",
        }
    }
}

fn parent(args: &RunArgs, sections: &[Section]) -> anyhow::Result<()> {
    let sim = emulator::binary(args.sim.as_deref())?;
    let info = RunInfo {
        command: command_line(),
        profile: if cfg!(debug_assertions) { "debug" } else { "release" },
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        latency_ms: args.latency_ms,
        machine: machine(),
        store: args.store.description(),
    };
    for &section in sections {
        let markdown = match section {
            Section::Hlf => hlf(args, &sim, &info)?,
            Section::Growth => growth(args, &sim, &info)?,
            Section::MentorGrowth => mentor_growth(args, &sim, &info)?,
            Section::RetrieveAll => retrieve_all(args, &sim, &info)?,
        };
        match &args.write {
            Some(path) => {
                let document = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                let name = match args.store {
                    StoreKind::Sqlite => section.name().to_owned(),
                    StoreKind::Postgres => format!("{}-postgres", section.name()),
                };
                let updated = section::replace_section(&document, &name, &markdown)?;
                std::fs::write(path, updated).with_context(|| format!("writing {}", path.display()))?;
                eprintln!("bench: wrote section `{name}` of {}", path.display());
            }
            None => println!("{markdown}"),
        }
    }
    Ok(())
}

fn hlf(args: &RunArgs, sim: &Path, info: &RunInfo) -> anyhow::Result<String> {
    eprintln!("bench: hlf-50k: starting the emulator with {HLF_CONTACTS} contacts");
    let emulator = hlf_emulator(args, sim)?;
    let naive = args.naive_mentors.unwrap_or(HLF_MENTORS).to_string();
    let mut result: scenarios::HlfResult = run_child(
        &emulator,
        args.store,
        &[
            "hlf",
            "--contacts",
            &HLF_CONTACTS.to_string(),
            "--mentors",
            &HLF_MENTORS.to_string(),
            "--naive-mentors",
            &naive,
        ],
    )?;
    // (f) Each point in an emulator and a store of their own: (a) again from the start, killed, then rerun.
    drop(emulator);
    for point in scenarios::KillPoint::ALL {
        let emulator = hlf_emulator(args, sim)?;
        result.killed.push(run_child(
            &emulator,
            args.store,
            &[
                "killed-rerun",
                "--point",
                point.flag(),
                "--contacts",
                &HLF_CONTACTS.to_string(),
                "--mentors",
                &HLF_MENTORS.to_string(),
            ],
        )?);
    }
    Ok(report::hlf_markdown(info, &result))
}

/// An emulator with hlf-50k's contacts and mentors.
fn hlf_emulator(args: &RunArgs, sim: &Path) -> anyhow::Result<Emulator> {
    Emulator::start(
        sim,
        EmulatorSpec {
            contacts: HLF_CONTACTS,
            mentors: HLF_MENTORS,
            latency_ms: args.latency_ms,
        },
    )
}

fn growth(args: &RunArgs, sim: &Path, info: &RunInfo) -> anyhow::Result<String> {
    let sizes: Vec<(usize, usize)> = args.sizes.iter().map(|&c| (c, HLF_MENTORS.min(c))).collect();
    Ok(report::growth_markdown(info, &full_syncs(args, sim, &sizes)?))
}

fn mentor_growth(args: &RunArgs, sim: &Path, info: &RunInfo) -> anyhow::Result<String> {
    let contacts = args.mentor_growth_contacts;
    let sizes: Vec<(usize, usize)> = args.mentor_sizes.iter().map(|&m| (contacts, m.min(contacts))).collect();
    Ok(report::mentor_growth_markdown(info, &full_syncs(args, sim, &sizes)?))
}

/// One initial full sync per (contacts, mentors), each in a fresh emulator and a fresh child process.
fn full_syncs(args: &RunArgs, sim: &Path, sizes: &[(usize, usize)]) -> anyhow::Result<Vec<GrowthPoint>> {
    let mut points = Vec::new();
    for &(contacts, mentors) in sizes {
        eprintln!("bench: growth: starting the emulator with {contacts} contacts");
        let emulator = Emulator::start(
            sim,
            EmulatorSpec {
                contacts,
                mentors,
                latency_ms: args.latency_ms,
            },
        )?;
        eprintln!("bench: growth: full sync of {contacts} contacts, {mentors} mentors");
        let run = run_child(&emulator, args.store, &["full-sync", "--mentors", &mentors.to_string()])?;
        points.push(GrowthPoint {
            contacts,
            mentors,
            run,
            emulator_peak_rss_mb: emulator.peak_rss_mb(),
        });
    }
    Ok(points)
}

/// How many times `bench retrieve-all` runs each reader.
const READ_ROUNDS: usize = 5;

fn retrieve_all(args: &RunArgs, sim: &Path, info: &RunInfo) -> anyhow::Result<String> {
    eprintln!("bench: retrieve-all: starting the emulator with {HLF_CONTACTS} contacts");
    let emulator = hlf_emulator(args, sim)?;
    let node_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("node");
    let node_version = prepare_node(&node_dir)?;
    // Each reader several times, in turn, so that a moment of a busy machine does not decide a ratio; the run of
    // median CPU time stands for each.
    let (mut streamed, mut every_value, mut collected, mut node) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=READ_ROUNDS {
        eprintln!(
            "bench: retrieve-all: round {round} of {READ_ROUNDS}: this project's client (streamed, every value, collected), then DynamicsWebApi"
        );
        let read: scenarios::ReadResult = run_child(&emulator, args.store, &["read", "--mode", "streamed"])?;
        let select = read.select.clone();
        streamed.push(read);
        every_value.push(run_child(&emulator, args.store, &["read", "--mode", "every-value"])?);
        collected.push(run_child(&emulator, args.store, &["read", "--mode", "collected"])?);
        node.push(run_node(&node_dir, &emulator, &select)?);
    }
    let cpu_of_read = |r: &scenarios::ReadResult| r.cost.cost.cpu_s;
    let cpu_of_node = |r: &NodeRead| r.cpu_s;
    Ok(report::retrieve_all_markdown(
        info,
        &RetrieveAllResult {
            contacts: HLF_CONTACTS,
            streamed: Repeated::median_of(streamed, cpu_of_read)?,
            every_value: Repeated::median_of(every_value, cpu_of_read)?,
            collected: Repeated::median_of(collected, cpu_of_read)?,
            node: Repeated::median_of(node, cpu_of_node)?,
            node_version,
        },
    ))
}

/// Runs this binary's hidden `child` command against `emulator` and decodes the JSON it prints.
fn run_child<T: DeserializeOwned>(emulator: &Emulator, store: StoreKind, task: &[&str]) -> anyhow::Result<T> {
    let exe = std::env::current_exe().context("finding the bench binary's own path")?;
    let output = Command::new(exe)
        .arg("child")
        .arg("--instance")
        .arg(emulator.instance())
        .arg("--ca-file")
        .arg(emulator.ca_file())
        .arg("--store")
        .arg(store.flag())
        .args(task)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running a bench child process")?;
    if !output.status.success() {
        bail!("the bench child `{}` failed ({})", task.join(" "), output.status);
    }
    serde_json::from_slice(&output.stdout)
        .with_context(|| format!("decoding the result of the bench child `{}`", task.join(" ")))
}

/// `npm ci` when the pinned packages are missing; the node version.
fn prepare_node(dir: &Path) -> anyhow::Result<String> {
    let version = Command::new("node")
        .arg("--version")
        .output()
        .context("running node (node 20 or later is needed for the retrieve-all comparison)")?;
    if !dir.join("node_modules").is_dir() {
        eprintln!(
            "bench: installing the pinned npm packages in {} (npm ci)",
            dir.display()
        );
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(dir)
            .status()
            .context("running npm ci")?;
        if !status.success() {
            bail!("npm ci in {} failed ({status})", dir.display());
        }
    }
    Ok(String::from_utf8_lossy(&version.stdout).trim().to_owned())
}

fn run_node(dir: &Path, emulator: &Emulator, select: &[String]) -> anyhow::Result<NodeRead> {
    let output = Command::new("node")
        .arg("retrieve-all.mjs")
        .current_dir(dir)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .env("NO_PROXY", "*")
        .env("NODE_EXTRA_CA_CERTS", emulator.ca_file())
        .env("DATAVERSE_URL", emulator.instance())
        .env("DATAVERSE_TENANT_ID", dataverse_sim::DEFAULT_TENANT_ID)
        .env("DATAVERSE_CLIENT_ID", dataverse_sim::DEFAULT_CLIENT_ID)
        .env("DATAVERSE_CLIENT_SECRET", dataverse_sim::DEFAULT_CLIENT_SECRET)
        .env("SELECT", select.join(","))
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running node retrieve-all.mjs")?;
    if !output.status.success() {
        bail!("retrieve-all.mjs failed ({})", output.status);
    }
    serde_json::from_slice(&output.stdout).context("decoding retrieve-all.mjs's result")
}

/// The command as a person would type it, for the top of each section.
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let profile = if cfg!(debug_assertions) { "" } else { " --release" };
    format!("cargo run{profile} --locked -p bench -- {}", args.join(" "))
}

fn child(target: &Target, task: ChildTask) -> anyhow::Result<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let json = runtime.block_on(async {
        let harness = Harness::connect(target).await?;
        let json = match task {
            ChildTask::Hlf {
                contacts,
                mentors,
                naive_mentors,
            } => {
                let mut result = scenarios::hlf(&harness, contacts, mentors, naive_mentors).await?;
                result.resolved = Some(scenarios::resolved_conflicts(target, HLF_CONFLICTS).await?);
                serde_json::to_string(&result)?
            }
            ChildTask::FullSync { mentors } => serde_json::to_string(&scenarios::full_sync(&harness, mentors).await?)?,
            ChildTask::KilledRerun(k) => serde_json::to_string(
                &scenarios::killed_rerun(target, &harness, k.point, k.contacts, k.mentors).await?,
            )?,
            ChildTask::KilledRun(k) => {
                scenarios::killed_run(
                    &harness,
                    k.point,
                    k.contacts,
                    k.mentors,
                    k.now.unwrap_or_else(chrono::Utc::now),
                )
                .await?;
                String::new()
            }
            ChildTask::Read { mode } => serde_json::to_string(&scenarios::read_all(&harness, mode).await?)?,
        };
        harness.cleanup().await?;
        anyhow::Ok(json)
    })?;
    println!("{json}");
    Ok(())
}

/// The machine the figures come from: its cores and how busy it was when the run started (the 1-minute load
/// average), so a reader can tell an idle machine's wall times from a busy one's.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned());
    format!("a {cores}-core machine (1-minute load average {load} when the run started)")
}
