//! Golden files of the worker's human output: `config check`, `plan`, `run`, `export-postings --dry-run` and the
//! daemon's lines, produced by the binary against the emulator, normalized (`normalize.rs`) and compared with
//! `docs/output/*.txt` (`UPDATE_EXPECT=1 cargo nextest run -p sync-worker golden` rewrites them). The README's and
//! the runbook's example outputs are checked against the same files, so no example can drift from the real output.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use chrono::{Duration, Utc};
use expect_test::{ExpectFile, expect_file};
use sync_store::{Certification, Mentor, Posting, Store};

use crate::normalize::{documented_outputs, golden_dir, normalize};

/// A mentor of the golden scenario: member number and days until the certification expires (negative: expired).
const MENTORS: [(&str, &str, i64); 3] = [("m1", "1001", 300), ("m2", "1002", -10), ("m3", "999999", 200)];

/// The emulator with two members' contacts (beside its bundled demo rows), and a configuration folder with the
/// emulator's CA, a SQLite store holding three mentors (one active, one expired, one whose member number Dynamics
/// does not know) and one approved posting.
async fn scenario(dir: &Path) -> dataverse_sim::RunningSimulator {
    let sim = dataverse_sim::Simulator::builder().start().await.unwrap();
    std::fs::write(dir.join("ca.pem"), sim.ca_certificate_pem().unwrap()).unwrap();
    std::fs::write(
        dir.join("sync.toml"),
        format!(
            "mapping = \"builtin:hlf-default\"\n[store]\nurl = \"sqlite://sync.db\"\n\
             [[organisations]]\nid = \"hlf\"\nname = \"Hørselshemmedes Landsforbund\"\nauthority_host = \"{}\"\n\
             ca_certificate_file = \"ca.pem\"\n[notifications]\nadmin_emails = [\"it@hlf.example\"]\n\
             [notifications.webhook]\nurl = \"http://127.0.0.1:9/hooks\"\n[accounting]\nenabled = true\n",
            sim.authority_url()
        ),
    )
    .unwrap();
    // Fixed contact ids: the run and the plan handle contacts in id order, so the output's order is fixed too.
    for (id, member, name) in [
        ("00000000-0000-4000-8000-000000001001", "1001", "Nordmann"),
        ("00000000-0000-4000-8000-000000001002", "1002", "Hansen"),
    ] {
        sim.state()
            .insert(
                "contacts",
                serde_json::json!({ "contactid": id, "hlf_membernumber": member, "firstname": "Kari", "lastname": name }),
            )
            .unwrap();
    }
    let store = Store::connect(&format!("sqlite://{}", dir.join("sync.db").display()))
        .await
        .unwrap();
    store
        .upsert_organisation("hlf", "Hørselshemmedes Landsforbund")
        .await
        .unwrap();
    let now = Utc::now();
    let today = now.date_naive();
    for (id, member, days) in MENTORS {
        store
            .upsert_mentor(&Mentor {
                id: id.into(),
                organisation_id: "hlf".into(),
                member_number: Some(member.into()),
                given_name: Some("Kari".into()),
                family_name: Some("Nordmann".into()),
                email: None,
                phone: None,
                coordinator_email: None,
                dynamics_contact_id: None,
                updated_at: now - Duration::hours(1),
            })
            .await
            .unwrap();
        store
            .upsert_certification(&Certification {
                id: format!("c-{id}"),
                mentor_id: id.into(),
                kind: "likeperson".into(),
                issued_on: today - Duration::days(400),
                expires_on: today + Duration::days(days),
                revoked_at: None,
                updated_at: now - Duration::hours(1),
            })
            .await
            .unwrap();
    }
    store
        .upsert_posting(&Posting {
            id: "P-0001".into(),
            mentor_id: "m1".into(),
            member_number: None,
            amount: "1250.50".parse().unwrap(),
            account: "5000".into(),
            description: Some("Honorar".into()),
            approved_at: Some(now - Duration::hours(1)),
            exported_at: None,
        })
        .await
        .unwrap();
    store.close().await;
    sim
}

/// Runs the worker on the scenario's configuration, from another folder (relative paths resolve beside the file).
async fn worker(sim: &dataverse_sim::RunningSimulator, dir: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sync-worker"));
    command
        .arg("--config")
        .arg(dir.join("sync.toml"))
        .args(args)
        .envs(sim.worker_environment("DYNAMICS"))
        .env_remove("RUST_LOG")
        .env_remove("SYNC_DATABASE_URL")
        .current_dir(std::env::temp_dir());
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

#[track_caller]
fn check(output: &Output, dir: &Path, golden: ExpectFile) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    golden.assert_eq(&normalize(&String::from_utf8_lossy(&output.stdout), dir));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_s_human_output_matches_its_golden_files() {
    let dir = tempfile::tempdir().unwrap();
    let sim = scenario(dir.path()).await;
    let d = dir.path();
    check(
        &worker(&sim, d, &["config", "check"]).await,
        d,
        expect_file!["../../../../docs/output/config-check.txt"],
    );
    // The live check, with the role the accounting export needs on top of the sync's.
    let mut role = dataverse_sim::hlf_sync_role();
    for privilege in ["prvCreatehlf_posting", "prvReadhlf_posting", "prvWritehlf_posting"] {
        role.push(dataverse_sim::RolePrivilege::global(privilege));
    }
    sim.faults().set_role(role);
    check(
        &worker(&sim, d, &["config", "check", "--live"]).await,
        d,
        expect_file!["../../../../docs/output/config-check-live.txt"],
    );
    sim.faults().clear();
    check(
        &worker(&sim, d, &["plan"]).await,
        d,
        expect_file!["../../../../docs/output/plan.txt"],
    );
    check(
        &worker(&sim, d, &["export-postings", "--dry-run"]).await,
        d,
        expect_file!["../../../../docs/output/export-postings-dry-run.txt"],
    );
    check(
        &worker(&sim, d, &["run"]).await,
        d,
        expect_file!["../../../../docs/output/run.txt"],
    );
    check(
        &worker(&sim, d, &["reconcile"]).await,
        d,
        expect_file!["../../../../docs/output/reconcile.txt"],
    );
    sim.shutdown().await;
}

/// The daemon's lines on stdout and its log on stderr, from start to a SIGTERM while idle.
#[test]
fn the_daemon_s_lines_match_their_golden_file() {
    use std::io::{BufRead, BufReader, Read};

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sync.toml");
    std::fs::write(
        &config,
        "mapping = \"builtin:hlf-default\"\n[schedule]\nnightly_at = \"02:00\"\ntime_zone = \"Europe/Oslo\"\n\
         [store]\nurl = \"sqlite://sync.db\"\n[[organisations]]\nid = \"hlf\"\nname = \"HLF\"\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sync-worker"))
        .args(["--config", config.to_str().unwrap(), "daemon"])
        .env("DYNAMICS_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47")
        .env("DYNAMICS_CLIENT_ID", "0b6f3c1e-9a63-4c62-8b1e-2f6f1c9b7d11")
        .env("DYNAMICS_CLIENT_SECRET", "not-used-before-the-first-run")
        .env("DYNAMICS_INSTANCE_URL", "https://hlf.crm4.dynamics.com")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with("next run at"), "{first}");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    let printed = format!("{first}{rest}{log}");
    expect_file!["../../../../docs/output/daemon.txt"].assert_eq(&normalize(&printed, dir.path()));
}

/// Every `<!-- output: NAME -->` block in the README and docs/ is the golden file `docs/output/NAME.txt` (the same
/// text, its first lines followed by a line `...`, or a line `...` followed by its last lines).
#[test]
fn documented_example_outputs_are_the_golden_files() {
    let documented = documented_outputs();
    assert!(
        documented.len() >= 3,
        "the README and runbook show example outputs: {documented:?}"
    );
    for (file, name, block) in documented {
        let golden = std::fs::read_to_string(golden_dir().join(format!("{name}.txt")))
            .unwrap_or_else(|e| panic!("{file}: `<!-- output: {name} -->` names no golden file: {e}"));
        if let Some(tail) = block.strip_prefix("...\n") {
            assert!(
                golden.ends_with(tail),
                "{file}: the example `{name}` is not how the real output ends; copy docs/output/{name}.txt"
            );
            continue;
        }
        match block.strip_suffix("...\n") {
            Some(head) => assert!(
                golden.starts_with(head),
                "{file}: the example `{name}` is not how the real output begins; copy docs/output/{name}.txt"
            ),
            None => assert_eq!(
                block, golden,
                "{file}: the example `{name}` is not the real output; copy docs/output/{name}.txt"
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn config_check_live_names_each_difference_from_the_live_instance_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let sim = scenario(dir.path()).await;
    let d = dir.path();
    let before = sim.stats().requests;
    // A column HLF removed, and a role without the accounting export's privileges.
    sim.faults().drop_column("contact", "hlf_showonpublicsite").unwrap();
    let output = worker(&sim, d, &["config", "check", "--live", "--org", "hlf"]).await;
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(
        output.status.code(),
        Some(3),
        "{printed}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "table contact: 1 difference(s) from the mapping",
        "column `hlf_showonpublicsite` (field `show_on_public_site`) does not exist on table `contact`",
        "table hlf_posting: the ",
        "error: prvCreatehlf_posting is missing",
        "configuration does not fit the live instance",
    ] {
        assert!(printed.contains(expected), "{expected}\n{printed}");
    }
    // It only read: no row changed, and only GETs were sent.
    assert!(sim.stats().requests > before);
    assert_eq!(
        sim.state()
            .rows("contacts")
            .iter()
            .filter(|r| r["hlf_appsyncedon"].is_string())
            .count(),
        0
    );
    // An unknown organisation is a configuration error.
    let output = worker(&sim, d, &["config", "check", "--live", "--org", "nobody"]).await;
    assert_eq!(output.status.code(), Some(3));
    sim.shutdown().await;
}
