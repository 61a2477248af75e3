//! `sync-worker demo`: the embedded default. Starts the Dataverse emulator on loopback, seeds a SQLite database,
//! and runs real syncs through the production path: the configuration loader, the Azure AD credential (over TLS to
//! the emulator's token endpoint), the Dynamics client, the engine and the store. Nothing is bypassed.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use chrono::{Duration, Utc};
use dataverse_sim::{GenerateSpec, RunningSimulator, Simulator};
use dynamics_client::{ClientOptions, DynamicsClient};
use integration_config::IntegrationConfig;
use sync_engine::{FixedClock, SyncService, local_today};
use sync_store::{AppStore, DemoSpec, FailureState, Store};

use crate::summary::run_table;

const ORGANISATION: &str = "hlf";
const OTHER_ORGANISATION: &str = "lhl-demo";
const CONTACTS: usize = 400;
const MENTORS: u32 = 60;
const FIRST_MEMBER: u32 = 500_000;

/// Options of the demo.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Keep the demo's SQLite database at this path instead of a temporary folder.
    #[arg(long, value_name = "FILE")]
    db: Option<PathBuf>,
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
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

    let config = demo_config(&sim, scratch.path())?;
    let organisation = config
        .organisation(ORGANISATION)
        .context("the demo configuration names the HLF organisation")?
        .clone();
    let now = Utc::now();
    let clock = Arc::new(FixedClock::new(now));
    let summary = store
        .seed_demo(&DemoSpec {
            organisation_id: ORGANISATION.to_owned(),
            other_organisation_id: OTHER_ORGANISATION.to_owned(),
            first_member_number: FIRST_MEMBER,
            mentors: MENTORS,
            today: local_today(now, organisation.time_zone),
            now,
        })
        .await
        .context("seeding the demo data")?;
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

    let other_linked = store.links("hlf", "mentor", &other_ids()).await?.len();
    println!("  another organisation's mentors linked to HLF's Dynamics: {other_linked}");
    println!("\nEverything ran against the emulator through the production client, credential, engine and store.");
    sim.shutdown().await;
    Ok(())
}

fn other_ids() -> Vec<String> {
    (0..10)
        .map(|i| format!("{OTHER_ORGANISATION}-mentor-{}", FIRST_MEMBER + i))
        .collect()
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

/// The demo's configuration, through the same loader production uses; the credentials point at the emulator.
fn demo_config(sim: &RunningSimulator, dir: &std::path::Path) -> anyhow::Result<IntegrationConfig> {
    let env = sim.worker_environment("DYNAMICS");
    let text = format!(
        "mapping = \"builtin:hlf-default\"\n\n[[organisations]]\nid = \"{ORGANISATION}\"\nname = \"HLF (demo)\"\nauthority_host = \"{}\"\n",
        sim.authority_url()
    );
    Ok(IntegrationConfig::from_toml(
        &text,
        "the demo configuration",
        dir,
        &env,
    )?)
}
