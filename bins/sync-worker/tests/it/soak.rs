//! The fault soak: many `sync-worker run` processes against the emulator with random faults (429 storms with
//! Retry-After, 500/502/503, timeouts, connection resets, token-endpoint failures, 412 races, expired delta tokens,
//! requests Dynamics carries out but answers too late or never (the connection dropped, a gateway's 504, after the
//! write was applied), lost database connections) and the worker killed with
//! SIGKILL at random points, while both sides keep editing and the events of a year happen: member numbers move
//! between mentors, mentors leave the app, contacts are deleted, re-created, deactivated and reactivated in
//! Dynamics, and the app edits certifications while a run is going.
//!
//! After fault-free runs: no edit lost on either side, no run failed for a record-level cause, no duplicate
//! contact, divergence zero, no contact on the public site whose mentor is gone or whose certification expired,
//! every mentor whose member number an active contact carries linked to it and not failing, no conflict open over
//! equal values.
//!
//! Every run logs at debug level, and no member number, name or e-mail address the soak seeded or wrote may appear in
//! its output.
//!
//! `SOAK_RUNS` (default 60, the CI form; `SOAK_RUNS=300` for the long form) and `SOAK_SEED` (default 2026) choose
//! the length and the random sequence. SQLite is soaked without an entity filter; with `TEST_DATABASE_URL` set,
//! PostgreSQL is soaked behind a proxy the soak cuts at random, with the filter `statecode eq 0`. The counts are
//! printed at the end.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use dataverse_sim::{DEFAULT_CLIENT_SECRET, Simulator};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use sync_engine::{certification_view, local_today};
use sync_store::testing::TestDatabase;
use sync_store::{AppStore, Certification, FailureState, Mentor, RunKind, RunStatus, Store};
use tokio::net::{TcpListener, TcpStream};

const MENTORS: usize = 40;
const OTHER_CONTACTS: usize = 20;
/// Contacts with member numbers no mentor starts with: where renumbered mentors go.
const SPARE_CONTACTS: usize = 10;

/// A TCP proxy to PostgreSQL whose connections can all be cut at once, as a network blip or a database restart
/// would.
struct Proxy {
    port: u16,
    generation: tokio::sync::watch::Sender<u64>,
    cuts: AtomicU64,
}

impl Proxy {
    async fn start(upstream: String) -> Arc<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let proxy = Arc::new(Proxy {
            port: listener.local_addr().unwrap().port(),
            generation,
            cuts: AtomicU64::new(0),
        });
        let accepting = proxy.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut cut = accepting.generation.subscribe();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        proxy
    }

    fn cut(&self) {
        self.cuts.fetch_add(1, Ordering::Relaxed);
        self.generation.send_modify(|g| *g += 1);
    }
}

/// What the soak did, for the report.
#[derive(Debug, Default)]
struct Counts {
    runs: u32,
    exit_ok: u32,
    exit_failed: u32,
    killed: u32,
    app_edits: u32,
    dynamics_edits: u32,
    storms: u32,
    error_rates: u32,
    timeouts: u32,
    resets: u32,
    token_failures: u32,
    races: u32,
    delta_expiries: u32,
    late_answers: u32,
    after_commit: u32,
    renumbered: u32,
    removed: u32,
    deleted: u32,
    recreated: u32,
    deactivated: u32,
    reactivated: u32,
    racing_edits: u32,
    log_bytes: u64,
}

fn runs() -> u32 {
    std::env::var("SOAK_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60)
}

fn seed() -> u64 {
    std::env::var("SOAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2026)
}

fn mentor_id(i: usize) -> String {
    format!("soak-{i}")
}

fn member(i: usize) -> String {
    (600_000 + i).to_string()
}

fn spare(i: usize) -> String {
    (650_000 + i).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_soak_loses_nothing_and_converges() {
    for db in TestDatabase::all().await.unwrap() {
        let filtered = db.store.backend() == sync_store::Backend::Postgres;
        soak(&db, filtered).await;
        db.cleanup().await.unwrap();
    }
}

async fn soak(db: &TestDatabase, filtered: bool) {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let sim = Simulator::builder().seed(seed).start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), sim.ca_certificate_pem().unwrap()).unwrap();

    // PostgreSQL goes through the proxy the soak cuts; SQLite is a file.
    let proxy = match db.store.backend() {
        sync_store::Backend::Postgres => Some(Proxy::start("127.0.0.1:5432".to_owned()).await),
        sync_store::Backend::Sqlite => None,
    };
    let worker_url = match &proxy {
        Some(proxy) => {
            let mut url = url::Url::parse(&db.url).unwrap();
            url.set_port(Some(proxy.port)).unwrap();
            url.to_string()
        }
        None => db.url.clone(),
    };
    let config = dir.path().join("sync.toml");
    std::fs::write(
        &config,
        format!(
            "mapping = \"builtin:hlf-default\"\n[retry]\nmax_attempts = 4\ninitial_backoff_ms = 20\n\
             max_backoff_seconds = 1\ntotal_budget_seconds = 6\nrequest_timeout_seconds = 2\n\
             record_max_attempts = 1000\n[store]\nurl = \"{worker_url}\"\n[[organisations]]\nid = \"hlf\"\n\
             name = \"HLF\"\nauthority_host = \"{}\"\nca_certificate_file = \"ca.pem\"\n{}",
            sim.authority_url(),
            if filtered {
                "[organisations.filters]\ncontact = \"statecode eq 0\"\n"
            } else {
                ""
            }
        ),
    )
    .unwrap();

    // Both sides: mentors with contacts, and contacts that are not mentors.
    let store = db.store.clone();
    store.upsert_organisation("hlf", "HLF").await.unwrap();
    let now = Utc::now();
    let today = now.date_naive();
    for i in 0..MENTORS {
        store
            .upsert_mentor(&Mentor {
                id: mentor_id(i),
                organisation_id: "hlf".into(),
                member_number: Some(member(i)),
                given_name: Some("Start".into()),
                family_name: Some(format!("Mentor {i}")),
                email: None,
                phone: None,
                coordinator_email: Some("koordinator@hlf.example".into()),
                dynamics_contact_id: None,
                updated_at: now - chrono::Duration::days(1),
            })
            .await
            .unwrap();
        store
            .upsert_certification(&certification(i, today + chrono::Duration::days(200), None, now))
            .await
            .unwrap();
        sim.state()
            .insert(
                "contacts",
                json!({"hlf_membernumber": member(i), "firstname": "Start", "lastname": format!("Mentor {i}")}),
            )
            .unwrap();
    }
    for i in 0..OTHER_CONTACTS {
        sim.state()
            .insert(
                "contacts",
                json!({"hlf_membernumber": (700_000 + i).to_string(), "lastname": "Medlem"}),
            )
            .unwrap();
    }
    for i in 0..SPARE_CONTACTS {
        sim.state()
            .insert(
                "contacts",
                json!({"hlf_membernumber": spare(i), "firstname": "Start", "lastname": "Reserve"}),
            )
            .unwrap();
    }
    // Every number a mentor may hold, and the contact that has it while it exists.
    let numbers: Vec<String> = (0..MENTORS).map(member).chain((0..SPARE_CONTACTS).map(spare)).collect();
    let mut contact_of: BTreeMap<String, uuid::Uuid> = numbers
        .iter()
        .filter_map(|n| Some((n.clone(), sim.state().find_by_key("contacts", "hlf_membernumber", n)?)))
        .collect();
    let mut contacts_made = sim.state().rows("contacts").len();
    let mut present: std::collections::BTreeSet<usize> = (0..MENTORS).collect();

    // The last value each side's own users wrote.
    let mut app_written: BTreeMap<usize, Certification> = BTreeMap::new();
    let mut dynamics_written: BTreeMap<uuid::Uuid, String> = BTreeMap::new();
    let mut counts = Counts::default();
    let started = Instant::now();
    for run in 0..runs() {
        // Edits on both sides since the last run.
        for _ in 0..rng.random_range(0..4) {
            let i = rng.random_range(0..MENTORS);
            if !present.contains(&i) {
                continue;
            }
            let at = Utc::now();
            let c = random_certification(&mut rng, i, today, at);
            store.upsert_certification(&c).await.unwrap();
            app_written.insert(i, c);
            counts.app_edits += 1;
        }
        for _ in 0..rng.random_range(0..4) {
            let Some(id) = contact_of.get(&numbers[rng.random_range(0..numbers.len())]).copied() else {
                continue;
            };
            let name = format!("Navn{run}x{}", rng.random_range(0..1000));
            sim.state()
                .update("contacts", id, json!({ "firstname": name }))
                .unwrap();
            dynamics_written.insert(id, name);
            counts.dynamics_edits += 1;
        }
        // The events of a year.
        if rng.random_bool(0.15) {
            // A mentor's member number is corrected to one no other mentor has.
            let i = rng.random_range(0..MENTORS);
            let taken: Vec<String> = store
                .mentors("hlf", &(0..MENTORS).map(mentor_id).collect::<Vec<_>>())
                .await
                .unwrap()
                .into_iter()
                .filter_map(|s| s.mentor.member_number)
                .collect();
            let free: Vec<&String> = numbers.iter().filter(|n| !taken.contains(n)).collect();
            if present.contains(&i) && !free.is_empty() {
                let to = free[rng.random_range(0..free.len())].clone();
                let mut mentor = store.mentors("hlf", &[mentor_id(i)]).await.unwrap().remove(0).mentor;
                mentor.member_number = Some(to);
                mentor.updated_at = millis(Utc::now());
                store.upsert_mentor(&mentor).await.unwrap();
                counts.renumbered += 1;
            }
        }
        if rng.random_bool(0.05) {
            let i = rng.random_range(0..MENTORS);
            if present.remove(&i) {
                store.delete_mentor("hlf", &mentor_id(i)).await.unwrap();
                app_written.remove(&i);
                counts.removed += 1;
            }
        }
        if rng.random_bool(0.08) {
            let number = numbers[rng.random_range(0..numbers.len())].clone();
            match contact_of.get(&number).copied() {
                Some(id) => {
                    sim.state().delete("contacts", id).unwrap();
                    contact_of.remove(&number);
                    dynamics_written.remove(&id);
                    counts.deleted += 1;
                }
                None => {
                    let id = sim
                        .state()
                        .insert("contacts", json!({"hlf_membernumber": number, "firstname": "Igjen"}))
                        .unwrap();
                    contact_of.insert(number, id);
                    contacts_made += 1;
                    counts.recreated += 1;
                }
            }
        }
        if rng.random_bool(0.1) {
            let number = &numbers[rng.random_range(0..numbers.len())];
            if let Some(id) = contact_of.get(number).copied() {
                let active = sim.state().row("contacts", id).unwrap()["statecode"] == 0;
                let (state, status) = if active { (1, 2) } else { (0, 1) };
                sim.state()
                    .update("contacts", id, json!({ "statecode": state, "statuscode": status }))
                    .unwrap();
                if active {
                    counts.deactivated += 1;
                } else {
                    counts.reactivated += 1;
                }
            }
        }
        // The app keeps editing while the worker runs.
        let racing = rng.random_bool(0.2).then(|| {
            let (i, delay) = (rng.random_range(0..MENTORS), rng.random_range(0..300));
            (i, delay, rng.random_range(0u64..1_000_000))
        });

        // Faults for this run.
        let faults = sim.faults();
        faults.clear();
        if rng.random_bool(0.15) {
            faults.throttle_for(
                Duration::from_millis(rng.random_range(100..1500)),
                Duration::from_secs(1),
            );
            counts.storms += 1;
        }
        if rng.random_bool(0.25) {
            let status = [500, 502, 503][rng.random_range(0..3)];
            faults.set_error_rate(status, 0.15).unwrap();
            counts.error_rates += 1;
        }
        if rng.random_bool(0.1) {
            faults.set_hang_duration(Duration::from_secs(3));
            faults.timeout_next(1);
            counts.timeouts += 1;
        }
        if rng.random_bool(0.15) {
            faults.set_reset_rate(0.1);
            counts.resets += 1;
        }
        if rng.random_bool(0.1) {
            // The first request of a run is the token request.
            faults.fail_next(rng.random_range(1..4), 503);
            counts.token_failures += 1;
        }
        if rng.random_bool(0.2) {
            faults.race_next_update("contacts", None);
            counts.races += 1;
        }
        if rng.random_bool(0.15) {
            // Requests Dynamics carries out whose answers are then lost: dropped, or replaced by a gateway's error.
            faults.set_after_commit_reset_rate(0.05);
            faults.set_after_commit_error_rate(504, 0.05).unwrap();
            counts.after_commit += 1;
        }
        if rng.random_bool(0.05) {
            faults.expire_delta_tokens();
            counts.delta_expiries += 1;
        }
        let late_after = rng
            .random_bool(0.15)
            .then(|| Duration::from_millis(rng.random_range(0..500)));
        if let Some(after) = late_after {
            // Some request of this run is carried out but answered after the client's timeout.
            let faults = faults.clone();
            faults.set_hang_duration(Duration::from_secs(3));
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                faults.answer_late_next(1);
            });
            counts.late_answers += 1;
        }
        let kill_after = rng
            .random_bool(0.25)
            .then(|| Duration::from_millis(rng.random_range(10..600)));
        let cut_after = proxy
            .as_ref()
            .filter(|_| rng.random_bool(0.15))
            .map(|p| (p.clone(), Duration::from_millis(rng.random_range(0..400))));
        if let Some((proxy, after)) = cut_after {
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                proxy.cut();
            });
        }

        // Every run logs at debug level, so the secret and personal-data checks below cover the most verbose logs.
        let mut env = sim.worker_environment("DYNAMICS");
        env.insert("RUST_LOG".into(), "debug".into());
        let edit_during_run = racing.filter(|(i, _, _)| present.contains(i)).map(|(i, delay, seed)| {
            counts.racing_edits += 1;
            let store = store.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let mut rng = StdRng::seed_from_u64(seed);
                let c = random_certification(&mut rng, i, today, Utc::now());
                store.upsert_certification(&c).await.unwrap();
                (i, c)
            })
        });
        let outcome = worker(&config, &env, &["run"], kill_after).await;
        if let Some(edit) = edit_during_run {
            let (i, c) = edit.await.unwrap();
            app_written.insert(i, c);
        }
        counts.runs += 1;
        match outcome {
            Outcome::Killed => counts.killed += 1,
            Outcome::Exited(code, output) => {
                assert_no_secret(&output, run);
                assert_no_personal_data(&output, run, &numbers);
                counts.log_bytes += output.len() as u64;
                match code {
                    0 => counts.exit_ok += 1,
                    1 => counts.exit_failed += 1,
                    _ => panic!("run {run}: unexpected exit {code}:\n{output}"),
                }
            }
        }
    }
    let soak_secs = started.elapsed().as_secs_f64();

    // Fault-free runs: every one succeeds or only queues records that cannot sync (a mentor whose member number no
    // active contact has).
    sim.faults().clear();
    for _ in 0..3 {
        let Outcome::Exited(code, output) = worker(&config, &sim.worker_environment("DYNAMICS"), &["run"], None).await
        else {
            unreachable!()
        };
        assert!(
            !output.contains(DEFAULT_CLIENT_SECRET),
            "the secret leaked into the output"
        );
        assert_no_personal_data(&output, runs(), &numbers);
        assert_eq!(code, 0, "{output}");
    }

    // Divergence zero: every linked record agrees field by field.
    let Outcome::Exited(code, output) =
        worker(&config, &sim.worker_environment("DYNAMICS"), &["reconcile"], None).await
    else {
        unreachable!()
    };
    assert_eq!(code, 0, "{output}");
    assert_no_personal_data(&output, runs(), &numbers);
    assert!(output.contains("linked records compared, 0 differ"), "{output}");

    let check_store = Store::connect(&db.url).await.unwrap();
    let today = local_today(Utc::now(), chrono_tz::Europe::Oslo);
    let rows = sim.state().rows("contacts");
    let active = |row: &serde_json::Value| row["statecode"] == 0;
    let links: BTreeMap<String, sync_store::Link> = check_store
        .links_page("hlf", "mentor", None, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.app_id.clone(), l))
        .collect();
    let mut failing = std::collections::BTreeSet::new();
    for state in [FailureState::Retrying, FailureState::Dead] {
        failing.extend(
            check_store
                .failures("hlf", state)
                .await
                .unwrap()
                .into_iter()
                .map(|f| f.record_key),
        );
    }
    let mentors = check_store
        .mentors("hlf", &(0..MENTORS).map(mentor_id).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(mentors.len(), present.len());

    // No lost edit: each side kept what its users wrote last, and the other side shows it.
    for snapshot in &mentors {
        let i: usize = snapshot.mentor.id.trim_start_matches("soak-").parse().unwrap();
        if let Some(written) = app_written.get(&i) {
            assert_eq!(&snapshot.certifications[0], written, "app edit of mentor {i} lost");
        }
        let number = snapshot.mentor.member_number.clone().unwrap();
        let link = links.get(&snapshot.mentor.id);
        let Some(row) = rows
            .iter()
            .find(|r| r["hlf_membernumber"] == number.as_str() && active(r))
        else {
            assert!(
                link.is_none(),
                "mentor {i} (member {number}) linked without an active contact: {link:?}; the linked row: {:?}",
                link.and_then(|l| sim.state().row("contacts", l.dynamics_id))
            );
            continue;
        };
        let id = uuid::Uuid::parse_str(row["contactid"].as_str().unwrap()).unwrap();
        assert_eq!(
            link.map(|l| l.dynamics_id),
            Some(id),
            "mentor {i} is linked to the contact with its number"
        );
        assert!(
            !failing.contains(&snapshot.mentor.id),
            "mentor {i} with a contact is still failing"
        );
        let shown = certification_view(&snapshot.certifications, today).status == "active";
        assert_eq!(
            row["hlf_showonpublicsite"],
            json!(shown),
            "mentor {i}: Dynamics shows {row}"
        );
        assert_eq!(
            snapshot.mentor.given_name.as_deref(),
            row["firstname"].as_str(),
            "the Dynamics edit of mentor {i}'s contact is not in the app"
        );
    }
    for (id, name) in &dynamics_written {
        if let Some(row) = sim.state().row("contacts", *id) {
            assert_eq!(
                row["firstname"],
                json!(name),
                "Dynamics edit of contact {id} overwritten"
            );
        }
    }

    // Nobody gone, renumbered away or expired on the public site.
    for row in &rows {
        if row["hlf_showonpublicsite"] != true && row["hlf_peermentorstatus"] != 100_000_000 {
            continue;
        }
        let id = uuid::Uuid::parse_str(row["contactid"].as_str().unwrap()).unwrap();
        let behind = mentors.iter().find(|s| {
            s.mentor.member_number.as_deref() == row["hlf_membernumber"].as_str()
                && certification_view(&s.certifications, today).status == "active"
                && links.get(&s.mentor.id).is_some_and(|l| l.dynamics_id == id)
        });
        assert!(
            behind.is_some() && active(row),
            "a contact is shown with no certified mentor behind it: {row}"
        );
    }
    for conflict in check_store.pending_conflicts("hlf").await.unwrap() {
        assert_ne!(
            conflict.app_value, conflict.dynamics_value,
            "a conflict over equal values: {conflict:?}"
        );
    }

    // No duplicate contact: the rows made, each member number once.
    assert_eq!(
        rows.len(),
        contacts_made - counts.deleted as usize,
        "the sync never creates or deletes contacts"
    );
    let mut numbers: Vec<&str> = rows.iter().filter_map(|r| r["hlf_membernumber"].as_str()).collect();
    let total = numbers.len();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), total, "duplicate member numbers in Dynamics");

    // Every failure visible and run-wide: the run log holds every run that got as far as starting, and no run
    // failed for something one record did.
    let log = check_store.recent_runs("hlf", 10_000).await.unwrap();
    let logged: Vec<_> = log.iter().filter(|r| r.kind == RunKind::Sync).collect();
    let failed_logged = logged.iter().filter(|r| r.status == RunStatus::Failed).count();
    let interrupted = logged.iter().filter(|r| r.status == RunStatus::Running).count();
    for run in logged.iter().filter(|r| r.status == RunStatus::Failed) {
        let error = run.error.as_deref().unwrap_or_default();
        assert!(
            ![
                "constraint",
                "UNIQUE",
                "duplicate key",
                "not found",
                "refused the change",
                "cannot be read"
            ]
            .iter()
            .any(|record_level| error.contains(record_level)),
            "a run failed for a record-level cause: {error}"
        );
    }
    check_store.close().await;
    let stats = sim.stats();
    println!(
        "fault soak on {} (seed {seed}): {} runs in {soak_secs:.0} s: {} exited 0, {} exited 1 (run failed), {} killed \
         with SIGKILL; run log: {} sync runs, {} failed, {} interrupted (killed mid-run); edits: {} in the app, {} in \
         Dynamics; faults: {} 429 storms, {} error-rate runs, {} timeouts, {} reset-rate runs, {} token-endpoint \
         failures, {} 412 races, {} delta-token expiries, {} late answers, {} after-commit runs, {} database cuts; events: {} renumbered, \
         {} mentors removed, {} contacts deleted, {} re-created, {} deactivated, {} reactivated, {} app edits during a \
         run; emulator: {} requests, {} throttled, {} faults injected; {} bytes of output and logs (every run at debug \
         level) with no secret, token or personal data. After fault-free runs: 0 lost edits, 0 runs failed for a record, 0 \
         duplicate contacts, divergence 0, nobody gone or expired on the public site, every mentor with a contact \
         linked and not failing.",
        if filtered {
            format!("{} with an entity filter", db.name)
        } else {
            db.name.to_owned()
        },
        counts.runs,
        counts.exit_ok,
        counts.exit_failed,
        counts.killed,
        logged.len(),
        failed_logged,
        interrupted,
        counts.app_edits,
        counts.dynamics_edits,
        counts.storms,
        counts.error_rates,
        counts.timeouts,
        counts.resets,
        counts.token_failures,
        counts.races,
        counts.delta_expiries,
        counts.late_answers,
        counts.after_commit,
        proxy.as_ref().map_or(0, |p| p.cuts.load(Ordering::Relaxed)),
        counts.renumbered,
        counts.removed,
        counts.deleted,
        counts.recreated,
        counts.deactivated,
        counts.reactivated,
        counts.racing_edits,
        stats.requests,
        stats.throttled,
        stats.faults_injected,
        counts.log_bytes,
    );
    sim.shutdown().await;
}

/// A certification edit the app's users make: renewed, revoked or expired.
fn random_certification(rng: &mut StdRng, i: usize, today: NaiveDate, at: chrono::DateTime<Utc>) -> Certification {
    match rng.random_range(0..3) {
        0 => certification(i, today + chrono::Duration::days(rng.random_range(30..700)), None, at),
        1 => certification(i, today + chrono::Duration::days(100), Some(at), at),
        _ => certification(i, today - chrono::Duration::days(rng.random_range(1..100)), None, at),
    }
}

fn certification(
    i: usize,
    expires_on: NaiveDate,
    revoked_at: Option<chrono::DateTime<Utc>>,
    at: chrono::DateTime<Utc>,
) -> Certification {
    Certification {
        id: format!("c-{}", mentor_id(i)),
        mentor_id: mentor_id(i),
        kind: "likeperson".into(),
        issued_on: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
        expires_on,
        // Whole milliseconds: what the store keeps.
        revoked_at: revoked_at.map(millis),
        updated_at: millis(at),
    }
}

fn millis(at: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
    chrono::DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap()
}

enum Outcome {
    Exited(i32, String),
    Killed,
}

/// Runs the worker; with `kill_after`, SIGKILLs it then (if it is still running).
async fn worker(
    config: &std::path::Path,
    env: &BTreeMap<String, String>,
    args: &[&str],
    kill_after: Option<Duration>,
) -> Outcome {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_sync-worker"));
    command
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("SYNC_DATABASE_URL")
        .envs(env)
        // Files, not pipes: a chatty run cannot block on a full pipe while nobody reads it.
        .stdout(append(log.path()))
        .stderr(append(log.path()));
    tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().unwrap();
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let text = std::fs::read_to_string(log.path()).unwrap_or_default();
                return Outcome::Exited(status.code().unwrap_or(-1), text);
            }
            if kill_after.is_some_and(|after| started.elapsed() >= after) {
                child.kill().unwrap();
                child.wait().unwrap();
                return Outcome::Killed;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "a run hung for two minutes"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .await
    .unwrap()
}

/// Neither the client secret nor any bearer token (the emulator issues JWTs, which start `eyJ`) may appear in a
/// run's output or logs.
#[track_caller]
fn assert_no_secret(output: &str, run: u32) {
    assert!(
        !output.contains(DEFAULT_CLIENT_SECRET),
        "run {run}: the client secret leaked:\n{output}"
    );
    assert!(!output.contains("eyJ"), "run {run}: a bearer token leaked:\n{output}");
}

/// No member number, name or e-mail address the soak seeded or wrote may appear in a run's output at any level:
/// logs name app ids, Dynamics ids and record kinds. A member number counts only standing alone (not inside an id
/// or another number).
#[track_caller]
fn assert_no_personal_data(output: &str, run: u32, numbers: &[String]) {
    let others = (0..OTHER_CONTACTS).map(|i| (700_000 + i).to_string());
    for number in numbers.iter().cloned().chain(others) {
        let standing_alone = output.match_indices(number.as_str()).any(|(at, _)| {
            let before = output[..at].chars().next_back();
            let after = output[at + number.len()..].chars().next();
            let part_of_id = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-');
            !part_of_id(before) && !part_of_id(after)
        });
        assert!(
            !standing_alone,
            "run {run}: member number {number} in the output:\n{output}"
        );
    }
    for value in [
        "koordinator@hlf.example",
        "Navn",
        "Mentor ",
        "Reserve",
        "Igjen",
        "Medlem",
    ] {
        assert!(
            !output.contains(value),
            "run {run}: `{value}` (personal data) in the output:\n{output}"
        );
    }
}

fn append(path: &std::path::Path) -> std::fs::File {
    std::fs::OpenOptions::new().append(true).open(path).unwrap()
}
