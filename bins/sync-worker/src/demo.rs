//! `sync-worker demo`: the embedded default. Starts the Dataverse emulator on loopback, seeds a SQLite database,
//! and runs real syncs through the production path: the configuration loader, the Azure AD credential (over TLS to
//! the emulator's token endpoint), the Dynamics client, the engine and the store. Nothing is bypassed. Between the
//! two nights an e-mail address is edited on both sides (a shared field under the `manual` strategy), so the second
//! run holds a conflict for an admin; two mentors unknown to Dynamics fail both nights and are dead. With `--serve`
//! the dashboard then shows all of it on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use chrono::{Duration, Utc};
use dataverse_sim::{GenerateSpec, RunningSimulator, Simulator};
use dynamics_client::{ClientOptions, DynamicsClient};
use integration_config::IntegrationConfig;
use serde_json::json;
use sync_engine::{FixedClock, SyncService, local_today};
use sync_store::{AppStore, DemoSpec, FailureState, Store};

use crate::summary::run_table;

const ORGANISATION: &str = "hlf";
const OTHER_ORGANISATION: &str = "lhl-demo";
const CONTACTS: usize = 400;
const MENTORS: u32 = 60;
const FIRST_MEMBER: u32 = 500_000;
/// The mentor whose e-mail address is edited on both sides between the two nights: certified far ahead, so the
/// conflict changes nothing else the demo reports.
const CONFLICT_MEMBER: u32 = FIRST_MEMBER + 4;
/// The variable the demo puts its generated dashboard credential in, as an operator would.
const DASHBOARD_CREDENTIAL: &str = "SYNC_DASHBOARD_CREDENTIAL";

/// Options of the demo.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Keep the demo's SQLite database at this path instead of a temporary folder.
    #[arg(long, value_name = "FILE")]
    db: Option<PathBuf>,
    /// After the syncs, serve the dashboard on loopback with their results until Ctrl-C (the emulator keeps
    /// running, so "write now" on a conflict works). Prints the URL and a credential made for this run.
    #[arg(long)]
    serve: bool,
    /// Where `--serve` listens; loopback only (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8088", requires = "serve")]
    bind: SocketAddr,
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.serve && !args.bind.ip().is_loopback() {
        anyhow::bail!(
            "demo --serve listens on loopback only; {} is not a loopback address (use 127.0.0.1:PORT)",
            args.bind
        );
    }
    println!("sync-worker demo: the embedded default, on this machine only\n");
    let sim = Simulator::builder()
        .generate(GenerateSpec {
            contacts: CONTACTS,
            mentors: 40,
            seed: 2026,
        })
        .start()
        .await
        .context("starting the Dataverse emulator on loopback")?;
    println!(
        "- Dataverse emulator at {} with {CONTACTS} HLF members as contacts",
        sim.base_url()
    );

    let scratch = tempfile::tempdir().context("making a temporary folder for the demo database")?;
    let db_path = args.db.unwrap_or_else(|| scratch.path().join("sync-worker-demo.db"));
    let store = Store::connect(&format!("sqlite://{}", db_path.display()))
        .await
        .with_context(|| format!("opening the demo database {}", db_path.display()))?;

    let credential = dashboard_credential()?;
    let config = demo_config(&sim, scratch.path(), &credential)?;
    let organisation = config
        .organisation(ORGANISATION)
        .context("the demo configuration names the HLF organisation")?
        .clone();
    let now = Utc::now();
    let clock = Arc::new(FixedClock::new(now));
    let spec = DemoSpec {
        organisation_id: ORGANISATION.to_owned(),
        other_organisation_id: OTHER_ORGANISATION.to_owned(),
        first_member_number: FIRST_MEMBER,
        mentors: MENTORS,
        today: local_today(now, organisation.time_zone),
        now,
    };
    let summary = store.seed_demo(&spec).await.context("seeding the demo data")?;
    println!("- SQLite database {} with HLF's peer mentors:", db_path.display());
    println!(
        "    {} certified, {} expiring today, {} expired, {} revoked, {} without certification, {} unknown to Dynamics",
        summary.valid,
        summary.expiring_today,
        summary.expired,
        summary.revoked,
        summary.uncertified,
        summary.unknown_in_dynamics
    );
    println!(
        "    and {} mentors of another organisation, which must never reach HLF's Dynamics\n",
        summary.other_organisation
    );

    let client = DynamicsClient::for_organisation(
        &organisation,
        ClientOptions {
            rate_limit: config.rate_limit.clone(),
            retry: config.retry.clone(),
            page_size: config.sync.page_size,
            extra_root_certificates: vec![
                sim.ca_certificate_pem()
                    .context("the emulator serves TLS")?
                    .as_bytes()
                    .to_vec(),
            ],
            ..ClientOptions::default()
        },
    )?;
    let service = SyncService::new(
        &organisation,
        &config,
        client,
        Arc::new(store.clone()),
        store.clone(),
        clock.clone(),
    )?;

    let first = service.run().await?;
    print!("{}", run_table("First sync (links contacts by member number)", &first));
    println!(
        "  {} HLF mentors now shown on the public website",
        visible(&sim, &store).await?
    );
    for failure in store.failures(ORGANISATION, FailureState::Retrying).await? {
        println!("  failed, retried next run: {} ({})", failure.record_key, failure.error);
    }
    let notifications = store.notifications(ORGANISATION, 100).await?;
    println!("  coordinator notifications queued: {}", notifications.len());
    if let Some(first) = notifications.first() {
        println!("    e.g. to {}: \"{}\"", first.recipient, first.subject);
    }

    // During the day a coordinator corrects a mentor's e-mail address in the app while HLF's staff change it in
    // Dynamics: a shared field under the `manual` strategy, so the next run holds it for an admin.
    edit_on_both_sides(&sim, &store, now + Duration::hours(9)).await?;

    // The next night: certifications that expired at midnight change no app row; the time rule hides them.
    clock.set(now + Duration::days(1));
    let second = service.run().await?;
    println!();
    print!(
        "{}",
        run_table("The next night's run (nothing changed in the app)", &second)
    );
    println!(
        "  {} HLF mentors shown on the public website after the certifications that expired overnight were hidden",
        visible(&sim, &store).await?
    );

    for conflict in store.pending_conflicts(ORGANISATION).await? {
        println!(
            "  conflict held for an admin: mentor {} field {} changed in both the app and Dynamics",
            conflict.app_id, conflict.field
        );
    }
    for failure in store.failures(ORGANISATION, FailureState::Dead).await? {
        println!(
            "  dead after {} runs, waits for an admin: {} ({})",
            failure.attempts, failure.record_key, failure.error
        );
    }

    let other_linked = store.links("hlf", "mentor", &other_ids(&spec)).await?.len();
    println!("  another organisation's mentors linked to HLF's Dynamics: {other_linked}");
    println!("\nEverything ran against the emulator through the production client, credential, engine and store.");
    if args.serve {
        serve(args.bind, config, store.clone(), service, &credential, clock).await?;
    }
    sim.shutdown().await;
    Ok(())
}

/// Serves the dashboard over the demo's results until Ctrl-C or SIGTERM.
async fn serve(
    bind: SocketAddr,
    config: IntegrationConfig,
    store: Store,
    service: SyncService,
    credential: &str,
    clock: Arc<FixedClock>,
) -> anyhow::Result<()> {
    // The dashboard shares the demo's clock, which stands on the second night, so times read as the demo tells them.
    let options = dashboard::DashboardOptions {
        clock: Some(clock),
        ..dashboard::DashboardOptions::default()
    };
    let dashboard = dashboard::Dashboard::new(config, store, vec![service], options)?;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("listening on {bind} for the dashboard"))?;
    let address = listener.local_addr()?;
    println!("\nDashboard: http://{address}/");
    println!("  sign in with any user name and the password {credential}");
    println!("  (or send Authorization: Bearer {credential}); the credential is made anew for each demo.");
    println!("  Ctrl-C stops it.");
    dashboard
        .serve(listener, crate::commands::wait_for_signal())
        .await
        .context("serving the dashboard")?;
    Ok(())
}

/// A dashboard credential for this demo only: 24 random bytes in hex.
fn dashboard_credential() -> anyhow::Result<String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for the demo credential: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Changes one mentor's e-mail address in the app and, differently, in Dynamics.
async fn edit_on_both_sides(sim: &RunningSimulator, store: &Store, when: chrono::DateTime<Utc>) -> anyhow::Result<()> {
    let member = CONFLICT_MEMBER.to_string();
    let contact = sim
        .state()
        .find_by_key("contacts", "hlf_membernumber", &member)
        .context("the emulator has the demo mentor's contact")?;
    sim.state()
        .update(
            "contacts",
            contact,
            json!({ "emailaddress1": format!("member{member}@hlf-medlem.example") }),
        )
        .context("editing the contact in the emulator")?;
    let mut mentor = store
        .mentor_by_member_number(ORGANISATION, &member)
        .await?
        .context("the demo mentor exists")?
        .mentor;
    mentor.email = Some(format!("member{member}@app-endret.example"));
    mentor.updated_at = when;
    store.upsert_mentor(&mentor).await?;
    Ok(())
}

/// The other organisation's ten seeded mentors.
fn other_ids(spec: &DemoSpec) -> Vec<String> {
    (0..10).map(|i| spec.mentor_id(OTHER_ORGANISATION, i)).collect()
}

/// How many of HLF's mentors Dynamics shows on the public website.
async fn visible(sim: &RunningSimulator, store: &Store) -> anyhow::Result<usize> {
    let mentors: Vec<String> = store
        .all_mentors(ORGANISATION, None, 10_000)
        .await?
        .into_iter()
        .filter_map(|s| s.mentor.member_number)
        .collect();
    Ok(sim
        .state()
        .rows("contacts")
        .iter()
        .filter(|row| {
            row["hlf_showonpublicsite"] == true
                && row["hlf_membernumber"]
                    .as_str()
                    .is_some_and(|m| mentors.iter().any(|x| x == m))
        })
        .count())
}

/// The demo's configuration, through the same loader production uses; the credentials point at the emulator. The
/// mapping is the default with `email` shared (and resolved by an admin), and a record is dead after two failed
/// runs, so one demo shows both.
fn demo_config(sim: &RunningSimulator, dir: &std::path::Path, credential: &str) -> anyhow::Result<IntegrationConfig> {
    let mut env = sim.worker_environment("DYNAMICS");
    env.insert(DASHBOARD_CREDENTIAL.to_owned(), credential.to_owned());
    let mapping = field_mapping::HLF_DEFAULT_MAPPING.replace(
        "field = \"email\"\ncolumn = \"emailaddress1\"\nowner = \"dynamics\"",
        "field = \"email\"\ncolumn = \"emailaddress1\"\nowner = \"shared\"",
    );
    anyhow::ensure!(
        mapping != field_mapping::HLF_DEFAULT_MAPPING,
        "the default mapping no longer declares email as expected"
    );
    std::fs::write(dir.join("demo-mapping.toml"), mapping).context("writing the demo's mapping file")?;
    let text = format!(
        "mapping = \"demo-mapping.toml\"\n\n[retry]\nrecord_max_attempts = 2\n\n[conflicts.fields]\nemail = \"manual\"\n\n\
         [[organisations]]\nid = \"{ORGANISATION}\"\nname = \"HLF (demo)\"\nauthority_host = \"{}\"\n",
        sim.authority_url()
    );
    Ok(IntegrationConfig::from_toml(
        &text,
        "the demo configuration",
        dir,
        &env,
    )?)
}
