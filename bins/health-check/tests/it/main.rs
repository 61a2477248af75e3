//! The `health-check` binary as CI and a probe run it: exit statuses 0/1/2/3, the human summary and `--json`,
//! against the Dataverse emulator and a SQLite sync store it must only read.

// Test helpers may unwrap and panic: that is how they report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// The golden-output normalizer the worker's tests use, so both binaries' examples are fixed the same way.
#[path = "../../../sync-worker/tests/it/normalize.rs"]
#[allow(dead_code)]
mod normalize;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use dataverse_sim::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, RunningSimulator, Simulator};
use dynamics_client::{ClientOptions, DynamicsClient};
use integration_config::IntegrationConfig;
use sync_engine::{SyncService, SystemClock};
use sync_store::{Certification, Direction, Mentor, RunStatus, Store};

/// The emulator, a synced SQLite store, and a configuration file for both.
struct Setup {
    sim: RunningSimulator,
    dir: tempfile::TempDir,
    db: String,
    config: PathBuf,
}

async fn setup() -> Setup {
    let sim = Simulator::builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), sim.ca_certificate_pem().unwrap()).unwrap();
    let db = format!("sqlite://{}", dir.path().join("sync.db").display());
    let config = dir.path().join("sync.toml");
    std::fs::write(
        &config,
        format!(
            "mapping = \"builtin:hlf-default\"\n[store]\nurl = \"{db}\"\n[[organisations]]\nid = \"hlf\"\nname = \"HLF\"\n\
             authority_host = \"{}\"\nca_certificate_file = \"ca.pem\"\n",
            sim.authority_url()
        ),
    )
    .unwrap();
    let setup = Setup { sim, dir, db, config };
    setup.sync().await;
    setup
}

impl Setup {
    fn environment(&self) -> BTreeMap<String, String> {
        self.sim.worker_environment("DYNAMICS")
    }

    /// One real sync of a mentor through the engine, as `sync-worker run` does.
    async fn sync(&self) {
        let config = IntegrationConfig::load(&self.config, &self.environment()).unwrap();
        let organisation = &config.organisations[0];
        let store = Store::connect(&self.db).await.unwrap();
        store.upsert_organisation("hlf", "HLF").await.unwrap();
        let now = chrono::Utc::now();
        store
            .upsert_mentor(&Mentor {
                id: "m1".into(),
                organisation_id: "hlf".into(),
                member_number: Some("1001".into()),
                given_name: Some("Kari".into()),
                family_name: Some("Nordmann".into()),
                email: None,
                phone: None,
                coordinator_email: None,
                dynamics_contact_id: None,
                updated_at: now - chrono::Duration::hours(1),
            })
            .await
            .unwrap();
        store
            .upsert_certification(&Certification {
                id: "c1".into(),
                mentor_id: "m1".into(),
                kind: "likeperson".into(),
                issued_on: now.date_naive() - chrono::Duration::days(300),
                expires_on: now.date_naive() + chrono::Duration::days(300),
                revoked_at: None,
                updated_at: now - chrono::Duration::hours(1),
            })
            .await
            .unwrap();
        self.sim
            .state()
            .insert(
                "contacts",
                serde_json::json!({"hlf_membernumber": "1001", "lastname": "Nordmann"}),
            )
            .unwrap();
        let client = DynamicsClient::for_organisation(organisation, ClientOptions::default()).unwrap();
        let service = SyncService::new(
            organisation,
            &config,
            client,
            Arc::new(store.clone()),
            store.clone(),
            Arc::new(SystemClock),
        )
        .unwrap();
        assert_eq!(service.run().await.unwrap().status, RunStatus::Succeeded);
        store.close().await;
    }

    async fn check(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_health-check"));
        command
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .envs(self.environment())
            .env_remove("SYNC_DATABASE_URL")
            .env_remove("RUST_LOG");
        tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap()
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn healthy_after_a_sync_exits_0_reads_only_and_prints_json() {
    let setup = setup().await;
    let db_file = setup.dir.path().join("sync.db");
    let before = file_bytes(&db_file);
    let rows_before = setup.sim.state().rows("contacts");

    let output = setup.check(&[]).await;
    let printed = text(&output);
    assert_eq!(output.status.code(), Some(0), "{printed}");
    assert!(printed.contains("organisation hlf (HLF): healthy"), "{printed}");
    assert!(printed.contains("connectivity:        ok (WhoAmI in"), "{printed}");
    assert!(printed.contains("overall: healthy"), "{printed}");

    let output = setup.check(&["--json"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["status"], "healthy");
    let org = &json["organisations"][0];
    assert_eq!(org["organisation"], "hlf");
    assert_eq!(org["connectivity"]["state"], "ok");
    assert_eq!(org["authentication"]["state"], "ok");
    assert_eq!(org["consecutive_failed_runs"], 0);
    assert!(org["last_success"]["pull"].is_string() && org["last_success"]["push"].is_string());

    assert_eq!(file_bytes(&db_file), before, "the sync database is opened read-only");
    assert_eq!(
        setup.sim.state().rows("contacts"),
        rows_before,
        "nothing is written to Dynamics"
    );
    setup.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_failed_for_good_is_degraded_exit_1() {
    let setup = setup().await;
    let store = Store::connect(&setup.db).await.unwrap();
    store
        .record_failure(
            "hlf",
            "mentor",
            "1002",
            Direction::Push,
            "Dynamics refused the write",
            1,
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    store.close().await;
    let output = setup.check(&["--no-probe"]).await;
    let printed = text(&output);
    assert_eq!(output.status.code(), Some(1), "{printed}");
    assert!(printed.contains("DEGRADED"), "{printed}");
    assert!(
        printed.contains("1 record failed for good and needs an admin"),
        "{printed}"
    );
    setup.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_secret_is_unhealthy_exit_2_naming_the_fix_without_the_secret() {
    let setup = setup().await;
    setup.sim.faults().expire_secret(DEFAULT_CLIENT_ID).unwrap();
    let output = setup.check(&[]).await;
    let printed = text(&output);
    assert_eq!(output.status.code(), Some(2), "{printed}");
    assert!(printed.contains("UNHEALTHY"), "{printed}");
    assert!(printed.contains("AADSTS7000222"), "{printed}");
    assert!(printed.contains("DYNAMICS_CLIENT_SECRET"), "{printed}");
    assert!(!printed.contains(DEFAULT_CLIENT_SECRET), "{printed}");
    // Said once: no line repeats the code, no alert is printed twice, and no "expires in N days" beside it.
    for line in printed.lines() {
        assert!(line.matches("AADSTS7000222").count() <= 1, "{line}");
    }
    let mut seen = std::collections::BTreeSet::new();
    for line in printed.lines().filter(|l| l.contains("AADSTS7000222")) {
        assert!(seen.insert(line.trim()), "printed twice: {line}");
    }
    assert!(!printed.contains("expires in"), "{printed}");

    let output = setup.check(&["--json"]).await;
    assert_eq!(output.status.code(), Some(2));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["organisations"][0]["authentication"]["aadsts"], 7000222);
    assert!(!String::from_utf8_lossy(&output.stdout).contains(DEFAULT_CLIENT_SECRET));
    setup.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn misconfiguration_exits_3() {
    let setup = setup().await;
    // No configuration at all.
    let output = tokio::task::spawn_blocking(|| {
        Command::new(env!("CARGO_BIN_EXE_health-check"))
            .env_remove("SYNC_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", text(&output));
    assert!(text(&output).contains("pass --config FILE or set SYNC_CONFIG"));

    // A missing credential, in JSON.
    let mut command = Command::new(env!("CARGO_BIN_EXE_health-check"));
    command
        .arg("--config")
        .arg(&setup.config)
        .arg("--json")
        .envs(setup.environment())
        .env_remove("DYNAMICS_CLIENT_SECRET");
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", text(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["status"], "misconfigured");
    assert!(
        json["error"].as_str().unwrap().contains("DYNAMICS_CLIENT_SECRET"),
        "{json}"
    );

    // An unknown organisation.
    let output = setup.check(&["--org", "nope"]).await;
    assert_eq!(output.status.code(), Some(3), "{}", text(&output));
    setup.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_never_synced_is_unhealthy_exit_2() {
    let setup = setup().await;
    let empty = setup.dir.path().join("empty.db");
    let mut command = Command::new(env!("CARGO_BIN_EXE_health-check"));
    command
        .arg("--config")
        .arg(&setup.config)
        .envs(setup.environment())
        .env("SYNC_DATABASE_URL", format!("sqlite://{}", empty.display()));
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("cannot be read") || text(&output).contains("reading the sync store"),
        "{}",
        text(&output)
    );
    assert!(!empty.exists(), "a probe never creates the database");
    setup.sim.shutdown().await;
}

/// `health-check`'s human summary after a good sync, normalized and compared with `docs/output/health-check.txt`
/// (`UPDATE_EXPECT=1` rewrites it); the README's example is checked against the same file by the worker's tests.
#[tokio::test(flavor = "multi_thread")]
async fn the_human_summary_matches_its_golden_file() {
    let setup = setup().await;
    let output = setup.check(&[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let printed = normalize::normalize(&String::from_utf8_lossy(&output.stdout), setup.dir.path());
    expect_test::expect_file!["../../../../docs/output/health-check.txt"].assert_eq(&printed);
    setup.sim.shutdown().await;
}

#[tokio::test]
async fn privileges_are_compared_with_what_the_mapping_needs() {
    let setup = setup().await;
    // The emulator's default role is the minimal one of docs/hlf-it-prerequisites.md.
    let output = setup.check(&["--privileges"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let printed = normalize::normalize(&String::from_utf8_lossy(&output.stdout), setup.dir.path());
    expect_test::expect_file!["../../../../docs/output/health-check-privileges.txt"].assert_eq(&printed);

    // A role without write on contacts, at user depth for reading, and with delete and share it does not need.
    use dataverse_sim::{PrivilegeDepth, RolePrivilege};
    setup.sim.faults().set_role(vec![
        RolePrivilege {
            name: "prvReadContact".into(),
            depth: PrivilegeDepth::Basic,
        },
        RolePrivilege::global("prvDeleteContact"),
        RolePrivilege::global("prvShareContact"),
        RolePrivilege::global("prvReadAccount"),
    ]);
    let output = setup.check(&["--privileges"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let printed = normalize::normalize(&String::from_utf8_lossy(&output.stdout), setup.dir.path());
    expect_test::expect_file!["../../../../docs/output/health-check-privileges-missing.txt"].assert_eq(&printed);
    let json = setup.check(&["--privileges", "--json"]).await;
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let privileges = &report["organisations"][0]["privileges"];
    assert_eq!(privileges["missing"][1]["privilege"], "prvWriteContact", "{report}");
    assert_eq!(privileges["missing"][0]["held"], "Basic", "{report}");
    assert_eq!(privileges["excess"].as_array().unwrap().len(), 2, "{report}");

    // Only more than it needs: a warning, exit 1.
    let mut role = dataverse_sim::hlf_sync_role();
    role.push(RolePrivilege::global("prvDeleteContact"));
    setup.sim.faults().set_role(role);
    let output = setup.check(&["--privileges"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("warning: prvDeleteContact is more than the sync needs"));

    // And the enforced role makes Dynamics refuse what it lacks, as the real one does.
    setup
        .sim
        .faults()
        .set_role(vec![RolePrivilege::global("prvReadContact")]);
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(setup.sim.ca_certificate_pem().unwrap().as_bytes()).unwrap(),
        )
        .build()
        .unwrap();
    let token: serde_json::Value = client
        .post(setup.sim.token_url())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&client_id={DEFAULT_CLIENT_ID}&client_secret={}&scope={}",
            DEFAULT_CLIENT_SECRET
                .replace('+', "%2B")
                .replace('/', "%2F")
                .replace('=', "%3D"),
            setup.sim.scope().replace(':', "%3A").replace('/', "%2F")
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = token["access_token"].as_str().unwrap();
    let read = client
        .get(format!("{}/contacts?$select=lastname", setup.sim.api_url()))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let write = client
        .patch(format!("{}/contacts(hlf_membernumber='1001')", setup.sim.api_url()))
        .bearer_auth(bearer)
        .header("If-Match", "*")
        .json(&serde_json::json!({ "lastname": "Endret" }))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 403);
    let body: serde_json::Value = write.json().await.unwrap();
    assert_eq!(body["error"]["code"], "0x80040220", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("prvWriteContact"),
        "{body}"
    );
    setup.sim.shutdown().await;
}
