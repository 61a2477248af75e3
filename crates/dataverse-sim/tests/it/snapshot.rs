//! `dataverse-sim snapshot` as an operator runs it: against the emulator itself, the snapshot loads back into an
//! emulator whose snapshot is identical, and holds the definitions, option sets and keys, and no rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dataverse_sim::{RunningSimulator, Simulator};

/// What the command needs to reach an emulator, owned so it can run on a blocking thread.
struct Target {
    base: String,
    authority: String,
    ca: String,
    env: BTreeMap<String, String>,
}

impl Target {
    fn of(sim: &RunningSimulator) -> Target {
        Target {
            base: sim.base_url().to_owned(),
            authority: sim.authority_url().to_owned(),
            ca: sim.ca_certificate_pem().unwrap().to_owned(),
            env: sim.worker_environment("DYNAMICS"),
        }
    }
}

async fn snapshot(target: Target, out: PathBuf) -> Output {
    tokio::task::spawn_blocking(move || {
        let ca = out.with_extension("ca.pem");
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        std::fs::write(&ca, &target.ca).unwrap();
        Command::new(env!("CARGO_BIN_EXE_dataverse-sim"))
            .args([
                "snapshot",
                "--target",
                &target.base,
                "--tables",
                "contact,hlf_posting",
                "--out",
            ])
            .arg(&out)
            .args(["--authority-host", &target.authority, "--ca-file"])
            .arg(&ca)
            .envs(&target.env)
            .env_remove("DYNAMICS_INSTANCE_URL")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn files(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir.join("metadata"))
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&path).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_loads_back_into_the_emulator_and_snapshots_the_same() {
    let sim = Simulator::builder().demo_data().start().await.unwrap();
    let root = std::env::temp_dir().join(format!("sim-snapshot-{}", uuid::Uuid::new_v4().simple()));
    let (first, second) = (root.join("first"), root.join("second"));
    let output = snapshot(Target::of(&sim), first.clone()).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("contact.json"));
    let taken = files(&first);
    assert_eq!(
        taken.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["contact.json", "hlf_posting.json"]
    );
    let contact: serde_json::Value = serde_json::from_str(&taken[0].1).unwrap();
    assert_eq!(contact["LogicalName"], "contact");
    assert_eq!(contact["EntitySetName"], "contacts");
    assert_eq!(contact["Keys"][0]["KeyAttributes"][0], "hlf_membernumber");
    let status = contact["Attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["LogicalName"] == "hlf_peermentorstatus")
        .unwrap();
    assert!(
        !status["OptionSet"]["Options"].as_array().unwrap().is_empty(),
        "{status}"
    );
    // Definitions only: the demo rows stay in the instance.
    assert!(!first.join("data").exists());
    assert!(!taken[0].1.contains("Ingrid"), "a row leaked into the snapshot");

    // Loaded into a new emulator, the snapshot reads back the same.
    let reloaded = Simulator::builder().fixtures_dir(&first).start().await.unwrap();
    let output = snapshot(Target::of(&reloaded), second.clone()).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(files(&second), taken);
    reloaded.shutdown().await;
    sim.shutdown().await;
}
