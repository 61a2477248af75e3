//! Engine benchmark: API requests per run against their lower bound, wall time and peak memory, on the emulator.
//!
//! Run: `cargo bench -p sync-engine --bench sync` (50,000 contacts, 5,000 mentors), or with `-- CONTACTS MENTORS`.
//! Prints a Markdown table for docs/benchmarks.md. Everything runs on loopback.

// A benchmark reports on stdout and may unwrap: a failure is the report.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, Utc};
use dataverse_sim::{GenerateSpec, Simulator};
use dynamics_client::{ClientOptions, DynamicsClient, Query, Row};
use futures::StreamExt;
use integration_config::IntegrationConfig;
use serde_json::json;
use sync_engine::{FixedClock, RunReport, SyncService};
use sync_store::{AppStore, Certification, Mentor};

fn peak_rss_kib() -> u64 {
    read_status("VmHWM:")
}

fn rss_kib() -> u64 {
    read_status("VmRSS:")
}

fn read_status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// A run and what it cost: the report, wall seconds and peak memory growth in MB.
async fn measured(service: &SyncService) -> (RunReport, f64, f64) {
    let before = rss_kib();
    reset_peak();
    let started = Instant::now();
    let report = service.run().await.unwrap();
    let wall = started.elapsed().as_secs_f64();
    (report, wall, peak_rss_kib().saturating_sub(before) as f64 / 1024.0)
}

fn lower_bound(rows_read: u64, writes: u64) -> u64 {
    rows_read.div_ceil(5000).max(1) + writes.div_ceil(1000)
}

fn row(name: &str, report: &RunReport, rows_read: u64, wall: f64, memory: f64) {
    let writes = report.metrics.push.written;
    let bound = lower_bound(rows_read, writes);
    println!(
        "| {name} | {} | {bound} + constant | {} / {} | {:.2} s | {:.1} MB |",
        report.metrics.requests, report.metrics.throttled, report.metrics.retried, wall, memory
    );
}

fn main() {
    // RUST_LOG=dynamics_client=debug shows every request, to see where a run spends them.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let contacts = args.first().copied().unwrap_or(50_000);
    let mentors = args.get(1).copied().unwrap_or(5_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench(contacts, mentors));
}

async fn bench(contacts: usize, mentors: usize) {
    let seeded = Instant::now();
    let sim = Simulator::builder()
        .generate(GenerateSpec {
            contacts,
            mentors,
            seed: 50,
        })
        .start()
        .await
        .unwrap();
    let seed_secs = seeded.elapsed().as_secs_f64();

    let dir = tempfile::tempdir().unwrap();
    let store = sync_store::Store::connect(&format!("sqlite://{}", dir.path().join("bench.db").display()))
        .await
        .unwrap();
    let env = sim.worker_environment("DYNAMICS");
    let text = format!(
        "mapping = \"builtin:hlf-default\"\n[[organisations]]\nid = \"hlf\"\nname = \"HLF\"\nauthority_host = \"{}\"\n",
        sim.authority_url()
    );
    let config = IntegrationConfig::from_toml(&text, "bench.toml", Path::new("."), &env).unwrap();
    let organisation = config.organisations[0].clone();
    let client = DynamicsClient::for_organisation(
        &organisation,
        ClientOptions {
            extra_root_certificates: vec![sim.ca_certificate_pem().unwrap().as_bytes().to_vec()],
            ..ClientOptions::default()
        },
    )
    .unwrap();

    // The app: one mentor per contact for the first `mentors` member numbers (the emulator's generator numbers
    // contacts from 500000).
    let now = Utc::now();
    store.upsert_organisation("hlf", "HLF").await.unwrap();
    for i in 0..mentors {
        let id = format!("m{i}");
        let member = (500_000 + i).to_string();
        store
            .upsert_mentor(&Mentor {
                id: id.clone(),
                organisation_id: "hlf".into(),
                member_number: Some(member.clone()),
                given_name: None,
                family_name: None,
                email: None,
                phone: None,
                coordinator_email: None,
                dynamics_contact_id: None,
                updated_at: now - Duration::days(2),
            })
            .await
            .unwrap();
        // 1% of certifications expire today: the next night's run must hide them with no app row changed.
        let expires = if i % 100 == 0 {
            now.date_naive()
        } else {
            now.date_naive() + Duration::days(365)
        };
        store
            .upsert_certification(&Certification {
                id: format!("c{i}"),
                mentor_id: id,
                kind: "likeperson".into(),
                issued_on: now.date_naive() - Duration::days(365),
                expires_on: expires,
                revoked_at: None,
                updated_at: now - Duration::days(2),
            })
            .await
            .unwrap();
    }
    let clock = Arc::new(FixedClock::new(now));
    let service = SyncService::new(
        &organisation,
        &config,
        client.clone(),
        Arc::new(store.clone()),
        store.clone(),
        clock.clone(),
    )
    .unwrap();

    println!("# sync-engine benchmark: {contacts} contacts, {mentors} mentors\n");
    println!("Emulator seeded {contacts} contacts in {seed_secs:.2} s.\n");
    println!(
        "| run | API requests | lower bound (pages + batches) | throttled / retried | wall | peak memory growth |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let (full, wall, memory) = measured(&service).await;
    row("initial full sync", &full, contacts as u64, wall, memory);

    let (quiet, wall, memory) = measured(&service).await;
    row(
        "delta with nothing changed",
        &quiet,
        quiet.metrics.pull.read,
        wall,
        memory,
    );

    // A nightly delta: 1% of contacts changed in Dynamics, 2% of mentors changed in the app, 1% expired by time.
    let state = sim.state();
    let rows = state.rows("contacts");
    for row in rows.iter().step_by(100) {
        let id = uuid::Uuid::parse_str(row["contactid"].as_str().unwrap()).unwrap();
        state.update("contacts", id, json!({ "firstname": "Endret" })).unwrap();
    }
    // Every 50th mentor from the 25th: disjoint from the 1% whose certification expires today.
    for i in (25..mentors).step_by(50) {
        let mut snapshot = store.mentors("hlf", &[format!("m{i}")]).await.unwrap().remove(0);
        snapshot.certifications[0].expires_on = now.date_naive() + Duration::days(700);
        snapshot.certifications[0].updated_at = now;
        store.upsert_certification(&snapshot.certifications[0]).await.unwrap();
    }
    clock.set(now + Duration::days(1));
    let (nightly, wall, memory) = measured(&service).await;
    row(
        "nightly delta (1% / 2% / 1%)",
        &nightly,
        nightly.metrics.pull.read,
        wall,
        memory,
    );
    println!(
        "\nNightly delta: {} contacts read, {} written to the app, {} written to Dynamics.",
        nightly.metrics.pull.read, nightly.metrics.pull.written, nightly.metrics.push.written
    );

    // How fast the emulator serves pages on its own (so it is not the bottleneck of the runs above).
    let before = sim.stats();
    let started = Instant::now();
    let mut pages = Box::pin(client.pages::<Row>(&Query::new("contacts").select(&["contactid", "hlf_membernumber"])));
    let mut read = 0usize;
    while let Some(page) = pages.next().await {
        read += page.unwrap().rows.len();
    }
    let secs = started.elapsed().as_secs_f64();
    let after = sim.stats();
    println!(
        "Emulator alone: {read} rows in {} requests in {secs:.2} s ({:.0} rows/s, {:.1} requests/s).",
        after.requests - before.requests,
        read as f64 / secs,
        (after.requests - before.requests) as f64 / secs
    );
    sim.shutdown().await;
}
