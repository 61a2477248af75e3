//! The worker binary as an operator runs it.

// Test helpers may unwrap and panic: that is how they report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

mod golden;
mod normalize;
mod serve;
mod soak;

use std::process::{Command, Output};

fn worker(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sync-worker"))
        .args(args)
        .env_remove("SYNC_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn demo_syncs_through_the_production_path_and_hides_overnight_expiries() {
    let output = worker(&["demo"]);
    let printed = text(&output);
    assert!(output.status.success(), "{printed}");
    assert!(
        printed.contains("42 HLF mentors now shown on the public website"),
        "{printed}"
    );
    assert!(
        printed.contains("36 HLF mentors shown on the public website after"),
        "{printed}"
    );
    assert!(
        printed.contains("another organisation's mentors linked to HLF's Dynamics: 0"),
        "{printed}"
    );
    assert!(
        printed.contains("no contact in Dynamics has the mentor's member number"),
        "{printed}"
    );
    assert!(
        printed.contains("conflict held for an admin: mentor hlf-mentor-0005 field email"),
        "{printed}"
    );
    assert!(
        printed.contains("dead after 2 runs, waits for an admin: hlf-mentor-unregistered-1"),
        "{printed}"
    );
    assert!(
        !printed.contains(dataverse_sim::DEFAULT_CLIENT_SECRET),
        "the secret must never be printed"
    );
}

#[test]
fn config_check_without_a_file_exits_3_and_says_what_to_do() {
    let output = worker(&["config", "check"]);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output));
    assert!(text(&output).contains("pass --config FILE or set SYNC_CONFIG"));
}

#[test]
fn config_check_lists_every_missing_credential() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sync.toml");
    std::fs::write(
        &path,
        "mapping = \"builtin:hlf-default\"\n[[organisations]]\nid = \"hlf\"\nname = \"HLF\"\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sync-worker"))
        .args(["--config", path.to_str().unwrap(), "config", "check"])
        .env_remove("DYNAMICS_TENANT_ID")
        .env_remove("DYNAMICS_CLIENT_ID")
        .env_remove("DYNAMICS_CLIENT_SECRET")
        .env_remove("DYNAMICS_INSTANCE_URL")
        .output()
        .unwrap();
    let printed = text(&output);
    assert_eq!(output.status.code(), Some(3), "{printed}");
    for var in [
        "DYNAMICS_TENANT_ID",
        "DYNAMICS_CLIENT_ID",
        "DYNAMICS_CLIENT_SECRET",
        "DYNAMICS_INSTANCE_URL",
    ] {
        assert!(printed.contains(&format!("{var}: missing")), "{printed}");
    }
}

/// `run` and `plan` as a CronJob runs them: configuration file, credentials in the environment, SQLite store, the
/// emulator standing in for Dynamics (trusted through `ca_certificate_file`).
#[tokio::test(flavor = "multi_thread")]
async fn run_syncs_each_organisation_and_plan_then_has_nothing_to_do() {
    use chrono::{Duration, Utc};
    use sync_store::{Certification, Mentor, Store};

    let sim = dataverse_sim::Simulator::builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), sim.ca_certificate_pem().unwrap()).unwrap();
    let db = format!("sqlite://{}", dir.path().join("sync.db").display());
    let config = dir.path().join("sync.toml");
    // Relative paths, as an operator writes them: relative to the configuration file, wherever the worker starts.
    std::fs::write(
        &config,
        format!(
            "mapping = \"builtin:hlf-default\"\n[store]\nurl = \"sqlite://sync.db\"\n[[organisations]]\nid = \"hlf\"\n\
             name = \"HLF\"\nauthority_host = \"{}\"\nca_certificate_file = \"ca.pem\"\n",
            sim.authority_url()
        ),
    )
    .unwrap();
    let contact = sim
        .state()
        .insert(
            "contacts",
            serde_json::json!({ "hlf_membernumber": "1001", "firstname": "Kari", "lastname": "N" }),
        )
        .unwrap();
    let store = Store::connect(&db).await.unwrap();
    store.upsert_organisation("hlf", "HLF").await.unwrap();
    let now = Utc::now();
    let mentor = Mentor {
        id: "m1".into(),
        organisation_id: "hlf".into(),
        member_number: Some("1001".into()),
        given_name: Some("Kari".into()),
        family_name: Some("N".into()),
        email: None,
        phone: None,
        coordinator_email: None,
        dynamics_contact_id: None,
        updated_at: now,
    };
    store.upsert_mentor(&mentor).await.unwrap();
    let certification = Certification {
        id: "c1".into(),
        mentor_id: "m1".into(),
        kind: "likeperson".into(),
        issued_on: now.date_naive() - Duration::days(10),
        expires_on: now.date_naive() + Duration::days(300),
        revoked_at: None,
        updated_at: now,
    };
    store.upsert_certification(&certification).await.unwrap();
    store.close().await;

    let env = sim.worker_environment("DYNAMICS");
    let invoke = |args: Vec<String>| {
        let env = env.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_sync-worker"))
                .args(args)
                .envs(env)
                .env_remove("RUST_LOG")
                // Started from elsewhere: the relative paths still resolve beside the configuration file.
                .current_dir(std::env::temp_dir())
                .output()
                .unwrap()
        })
    };
    let config = config.display().to_string();
    let output = invoke(vec!["--config".into(), config.clone(), "run".into()])
        .await
        .unwrap();
    let printed = text(&output);
    assert!(output.status.success(), "{printed}");
    assert!(printed.contains("organisation hlf: succeeded"), "{printed}");
    assert!(printed.contains("health of organisation hlf: healthy"), "{printed}");
    // RUST_LOG unset: a run logs at INFO, one line as it starts and one as it ends.
    assert!(printed.contains("sync run started"), "{printed}");
    assert_eq!(
        sim.state().row("contacts", contact).unwrap()["hlf_showonpublicsite"],
        true
    );
    assert!(!printed.contains(dataverse_sim::DEFAULT_CLIENT_SECRET));

    let output = invoke(vec!["--config".into(), config.clone(), "plan".into()])
        .await
        .unwrap();
    assert!(text(&output).contains("nothing to do"), "{}", text(&output));
    let output = invoke(vec!["--config".into(), config.clone(), "config".into(), "check".into()])
        .await
        .unwrap();
    let ca = dir.path().join("ca.pem");
    assert!(
        text(&output).contains(&format!("extra CA certificate   {}", ca.display())),
        "{}",
        text(&output)
    );
    // An organisation the configuration does not have is a configuration problem (3), for every command.
    for command in ["run", "plan", "reconcile", "export-csv"] {
        let mut args = vec![
            "--config".into(),
            config.clone(),
            command.into(),
            "--org".into(),
            "nope".into(),
        ];
        if command == "export-csv" {
            args.extend(["--out".into(), dir.path().join("out").display().to_string()]);
        }
        let output = invoke(args).await.unwrap();
        assert_eq!(output.status.code(), Some(3), "{command}: {}", text(&output));
        assert!(text(&output).contains("no organisation `nope`"), "{}", text(&output));
    }
    let output = invoke(vec![
        "--config".into(),
        config,
        "reconcile".into(),
        "--org".into(),
        "hlf".into(),
    ])
    .await
    .unwrap();
    assert!(
        text(&output).contains("1 linked record compared, 0 differ"),
        "{}",
        text(&output)
    );
}

/// The daemon waits for its schedule and exits cleanly on SIGTERM.
#[test]
fn daemon_exits_cleanly_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sync.toml");
    std::fs::write(
        &config,
        format!(
            "mapping = \"builtin:hlf-default\"\n[schedule]\nevery_minutes = 60\n[store]\nurl = \"sqlite://{}\"\n\
             [[organisations]]\nid = \"hlf\"\nname = \"HLF\"\n",
            dir.path().join("sync.db").display()
        ),
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
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("next run at"), "{line}");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not stop on SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `export-csv` as staff run it while the API path is down: the files for the Import Data wizard, and an errors
/// file naming the mentor that cannot be imported.
#[tokio::test(flavor = "multi_thread")]
async fn export_csv_writes_the_import_files_and_the_errors_file() {
    use chrono::{Duration, Utc};
    use sync_store::{Certification, Mentor, Store};

    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("sync.db").display());
    let config = dir.path().join("sync.toml");
    std::fs::write(
        &config,
        format!("mapping = \"builtin:hlf-default\"\n[store]\nurl = \"{db}\"\n[[organisations]]\nid = \"hlf\"\nname = \"HLF\"\n"),
    )
    .unwrap();
    let store = Store::connect(&db).await.unwrap();
    store.upsert_organisation("hlf", "HLF").await.unwrap();
    let now = Utc::now();
    for (id, member) in [("m1", "1001"), ("m2", "10/02")] {
        store
            .upsert_mentor(&Mentor {
                id: id.into(),
                organisation_id: "hlf".into(),
                member_number: Some(member.into()),
                given_name: Some("Kari".into()),
                family_name: Some("N".into()),
                email: None,
                phone: None,
                coordinator_email: None,
                dynamics_contact_id: None,
                updated_at: now,
            })
            .await
            .unwrap();
        store
            .upsert_certification(&Certification {
                id: format!("c-{id}"),
                mentor_id: id.into(),
                kind: "likeperson".into(),
                issued_on: now.date_naive() - Duration::days(10),
                expires_on: now.date_naive() + Duration::days(300),
                revoked_at: None,
                updated_at: now,
            })
            .await
            .unwrap();
    }
    store.close().await;

    let out = dir.path().join("export");
    let secret = "csv-test-secret-value";
    let args = vec![
        "--config".to_owned(),
        config.display().to_string(),
        "export-csv".into(),
        "--org".into(),
        "hlf".into(),
        "--out".into(),
        out.display().to_string(),
    ];
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_sync-worker"))
            .args(args)
            .env("DYNAMICS_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47")
            .env("DYNAMICS_CLIENT_ID", "0b6f3c1e-9a63-4c62-8b1e-2f6f1c9b7d11")
            .env("DYNAMICS_CLIENT_SECRET", secret)
            .env("DYNAMICS_INSTANCE_URL", "https://hlf.crm4.dynamics.com")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let printed = text(&output);
    assert!(output.status.success(), "{printed}");
    assert!(printed.contains("1 mentor to import"), "{printed}");
    assert!(printed.contains("1 mentor cannot be imported"), "{printed}");
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files[0].starts_with("hlf-mentors-full-") && files[0].ends_with("-1.csv"),
        "{files:?}"
    );
    assert!(files[1].ends_with("-errors.csv"), "{files:?}");
    let import = std::fs::read_to_string(out.join(&files[0])).unwrap();
    assert!(
        import.starts_with(
            "\u{feff}Medlemsnummer,Likepersonstatus,Sertifisering utløper,Vis på nettsiden\r\n1001,active,"
        ),
        "{import}"
    );
    let errors = std::fs::read_to_string(out.join(&files[1])).unwrap();
    // In the organisation's language (bokmål by default), without jargon.
    assert!(
        errors.starts_with("\u{feff}Likeperson-id,Medlemsnummer,Felt,Problem\r\n"),
        "{errors}"
    );
    assert!(
        errors.contains("m2,10/02,member_number,medlemsnummeret er tomt eller inneholder et tegn"),
        "{errors}"
    );
    assert!(
        !errors.contains("alternate key") && !errors.contains("Dataverse"),
        "{errors}"
    );
    for text in [&printed, &import, &errors] {
        assert!(!text.contains(secret), "the secret must never be written");
    }
}

/// `--log-format json` writes one JSON object per log line, for a log collector.
#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sync.toml");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &config,
        format!(
            "mapping = \"builtin:hlf-default\"\n[retry]\nmax_attempts = 1\n[store]\nurl = \"sqlite://{}\"\n\
             [[organisations]]\nid = \"hlf\"\nname = \"HLF\"\nauthority_host = \"http://127.0.0.1:{closed}\"\n",
            dir.path().join("sync.db").display()
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sync-worker"))
        .args(["--log-format", "json", "--config", config.to_str().unwrap(), "run"])
        .env("DYNAMICS_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47")
        .env("DYNAMICS_CLIENT_ID", "0b6f3c1e-9a63-4c62-8b1e-2f6f1c9b7d11")
        .env("DYNAMICS_CLIENT_SECRET", "json-log-test-secret")
        .env("DYNAMICS_INSTANCE_URL", format!("http://127.0.0.1:{closed}"))
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let logs: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!logs.is_empty(), "{stderr}");
    assert!(
        logs.iter().all(|l| l["level"].is_string() && l["message"].is_string()),
        "{stderr}"
    );
    assert!(
        logs.iter().any(|l| l["level"] == "WARN" && l["org"] == "hlf"),
        "{stderr}"
    );
    assert!(!stderr.contains("json-log-test-secret"));
}

/// `[accounting] enabled`: `run` exports approved postings after the sync and reconciles them; `export-postings
/// --dry-run` shows what it would send and writes nothing; with the export off, `export-postings` exits 3.
#[tokio::test(flavor = "multi_thread")]
async fn run_exports_postings_when_the_accounting_export_is_on() {
    use chrono::Utc;
    use sync_store::{Mentor, Posting, Store};

    let sim = dataverse_sim::Simulator::builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), sim.ca_certificate_pem().unwrap()).unwrap();
    let base = format!(
        "mapping = \"builtin:hlf-default\"\n[store]\nurl = \"sqlite://sync.db\"\n[[organisations]]\nid = \"hlf\"\n\
         name = \"HLF\"\nauthority_host = \"{}\"\nca_certificate_file = \"ca.pem\"\n",
        sim.authority_url()
    );
    let off = dir.path().join("off.toml");
    std::fs::write(&off, &base).unwrap();
    let on = dir.path().join("on.toml");
    std::fs::write(&on, format!("{base}[accounting]\nenabled = true\n")).unwrap();

    let store = Store::connect(&format!("sqlite://{}", dir.path().join("sync.db").display()))
        .await
        .unwrap();
    store.upsert_organisation("hlf", "HLF").await.unwrap();
    let now = Utc::now();
    store
        .upsert_mentor(&Mentor {
            id: "m1".into(),
            organisation_id: "hlf".into(),
            member_number: Some("1001".into()),
            given_name: Some("Kari".into()),
            family_name: Some("N".into()),
            email: None,
            phone: None,
            coordinator_email: None,
            dynamics_contact_id: None,
            updated_at: now,
        })
        .await
        .unwrap();
    // A run log entry from two years ago: retention (90 days by default) deletes it after the next `run`.
    let ancient = store
        .start_run("hlf", sync_store::RunKind::Sync, now - chrono::Duration::days(730))
        .await
        .unwrap();
    for (id, amount) in [("P-0001", "1250.50"), ("P-0002", "1.005")] {
        store
            .upsert_posting(&Posting {
                id: id.into(),
                mentor_id: "m1".into(),
                member_number: None,
                amount: amount.parse().unwrap(),
                account: "5000".into(),
                description: Some("Honorar".into()),
                approved_at: Some(now),
                exported_at: None,
            })
            .await
            .unwrap();
    }
    store.close().await;

    let env = sim.worker_environment("DYNAMICS");
    let invoke = |args: Vec<String>| {
        let env = env.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_sync-worker"))
                .args(args)
                .envs(env)
                .env_remove("RUST_LOG")
                .output()
                .unwrap()
        })
    };
    let with = |config: &std::path::Path, args: &[&str]| {
        let mut all = vec!["--config".to_owned(), config.display().to_string()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        all
    };

    let output = invoke(with(&off, &["export-postings"])).await.unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", text(&output));
    assert!(
        text(&output).contains("the accounting export is off"),
        "{}",
        text(&output)
    );
    let output = invoke(with(&off, &["run"])).await.unwrap();
    assert!(
        !text(&output).contains("postings of hlf"),
        "off: no export: {}",
        text(&output)
    );

    let output = invoke(with(&on, &["export-postings", "--dry-run"])).await.unwrap();
    let printed = text(&output);
    assert!(output.status.success(), "{printed}");
    assert!(
        printed.contains(
            "postings of hlf (dry run, nothing written): 1 would be exported, 1 would be queued as failed, 0 held"
        ),
        "{printed}"
    );
    assert!(printed.contains("  posting P-0002: "), "{printed}");
    assert_eq!(
        sim.state().row_count("hlf_postings").unwrap(),
        0,
        "a dry run writes nothing"
    );

    let output = invoke(with(&on, &["run"])).await.unwrap();
    let printed = text(&output);
    assert!(output.status.success(), "{printed}");
    assert!(
        printed.contains(
            "postings of hlf: 1 exported, 1 failed, 0 held; reconciled 1: 0 missing in Dynamics, 0 with another amount"
        ),
        "{printed}"
    );
    assert!(printed.contains("posting export finished"), "an INFO line: {printed}");
    assert!(!printed.contains("1250"), "no amounts on the output: {printed}");
    assert_eq!(sim.state().row_count("hlf_postings").unwrap(), 1);

    // Someone deletes the exported posting in Dynamics: the next export names it and the alert is raised.
    let state = sim.state();
    let id = state
        .find_by_key("hlf_postings", "hlf_postingnumber", "P-0001")
        .unwrap();
    state.delete("hlf_postings", id).unwrap();
    let output = invoke(with(&on, &["export-postings"])).await.unwrap();
    let printed = text(&output);
    assert!(output.status.success(), "{printed}");
    assert!(
        printed.contains("reconciled 1: 1 missing in Dynamics, 0 with another amount (posting ids P-0001)"),
        "{printed}"
    );
    assert!(printed.contains("  alert raised: postings-unreconciled"), "{printed}");

    let store = Store::connect(&format!("sqlite://{}", dir.path().join("sync.db").display()))
        .await
        .unwrap();
    let runs = store.recent_runs("hlf", 100).await.unwrap();
    assert!(runs.iter().all(|r| r.id != ancient), "retention ran after `run`");
    store.close().await;
}

/// `purge --dry-run` counts what retention would delete, kind by kind; `purge` deletes it.
#[tokio::test(flavor = "multi_thread")]
async fn purge_counts_then_deletes_what_is_older_than_the_retention_period() {
    use sync_store::{Direction, RunKind, Store};

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sync.toml"),
        "mapping = \"builtin:hlf-default\"\n[store]\nurl = \"sqlite://sync.db\"\n[retention]\ndays = 30\n\
         [[organisations]]\nid = \"hlf\"\nname = \"HLF\"\n",
    )
    .unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("sync.db").display()))
        .await
        .unwrap();
    let now = chrono::Utc::now();
    store
        .start_run("hlf", RunKind::Sync, now - chrono::Duration::days(40))
        .await
        .unwrap();
    store
        .start_run("hlf", RunKind::Sync, now - chrono::Duration::days(10))
        .await
        .unwrap();
    store
        .record_failure(
            "hlf",
            "mentor",
            "m1",
            Direction::Push,
            "no contact",
            5,
            now - chrono::Duration::days(31),
        )
        .await
        .unwrap();
    store.close().await;
    let purge = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sync-worker"))
            .arg("--config")
            .arg(dir.path().join("sync.toml"))
            .arg("purge")
            .args(args)
            .env("DYNAMICS_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47")
            .env("DYNAMICS_CLIENT_ID", "0b6f3c1e-9a63-4c62-8b1e-2f6f1c9b7d11")
            .env("DYNAMICS_CLIENT_SECRET", "not-used")
            .env("DYNAMICS_INSTANCE_URL", "https://hlf.crm4.dynamics.com")
            .output()
            .unwrap()
    };
    let output = purge(&["--dry-run"]);
    let printed = text(&output);
    assert!(output.status.success(), "{printed}");
    assert!(
        printed.starts_with("retention 30 days: would delete 2 rows from before "),
        "{printed}"
    );
    assert!(printed.contains("       1 runs: run log entries"), "{printed}");
    assert!(printed.contains("       1 failed records: "), "{printed}");
    let output = purge(&[]);
    let printed = text(&output);
    assert!(printed.starts_with("retention 30 days: deleted 2 rows"), "{printed}");
    let output = purge(&["--dry-run"]);
    assert!(
        text(&output).starts_with("retention 30 days: would delete 0 rows"),
        "{}",
        text(&output)
    );
}

/// `forget` as for an erasure request: refused while the app still has the member, then it removes the sync state's
/// data of a member the app no longer has and says what went.
#[tokio::test(flavor = "multi_thread")]
async fn forget_removes_a_former_member_and_refuses_a_current_one() {
    use sync_store::{CacheEntry, Direction, Mentor, Store};

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sync.toml"),
        "mapping = \"builtin:hlf-default\"\n[store]\nurl = \"sqlite://sync.db\"\n[[organisations]]\nid = \"hlf\"\n\
         name = \"HLF\"\n",
    )
    .unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("sync.db").display()))
        .await
        .unwrap();
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
            updated_at: now,
        })
        .await
        .unwrap();
    // A former member: gone from the app, still in the cache and the failed-record queue.
    store
        .save_cache_entry(&CacheEntry {
            organisation_id: "hlf".into(),
            mentor_id: "m2".into(),
            member_number: Some("2002".into()),
            status: "active".into(),
            expires_on: None,
            show_on_public_site: true,
            as_of: now,
        })
        .await
        .unwrap();
    store
        .record_failure("hlf", "mentor", "m2", Direction::Push, "refused", 5, now)
        .await
        .unwrap();
    store.close().await;
    let forget = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sync-worker"))
            .arg("--config")
            .arg(dir.path().join("sync.toml"))
            .arg("forget")
            .args(args)
            .env("DYNAMICS_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47")
            .env("DYNAMICS_CLIENT_ID", "0b6f3c1e-9a63-4c62-8b1e-2f6f1c9b7d11")
            .env("DYNAMICS_CLIENT_SECRET", "not-used")
            .env("DYNAMICS_INSTANCE_URL", "https://hlf.crm4.dynamics.com")
            .output()
            .unwrap()
    };
    let output = forget(&["--org", "hlf", "--member", "1001"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("the app still has mentor m1 with this member number; remove them from the app first"),
        "{}",
        text(&output)
    );
    let output = forget(&["--org", "hlf", "--member", "2002"]);
    let printed = text(&output);
    assert!(output.status.success(), "{printed}");
    assert!(
        printed.contains("removed from the sync state of organisation hlf (app ids m2):"),
        "{printed}"
    );
    assert!(printed.contains("     1 failed records"), "{printed}");
    assert!(printed.contains("     1 certification-cache entries"), "{printed}");
    let output = forget(&["--org", "hlf", "--member", "2002"]);
    assert!(
        text(&output).contains("holds nothing of this member"),
        "{}",
        text(&output)
    );
    let output = forget(&["--org", "nope", "--member", "2002"]);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output));
}
