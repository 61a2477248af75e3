//! The worker binary as an operator runs it.

// Test helpers may unwrap and panic: that is how they report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

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
    assert!(printed.contains("no contact with member number 899990"), "{printed}");
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
