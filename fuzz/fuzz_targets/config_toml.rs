//! The configuration parser: `IntegrationConfig::from_toml` on any text, with a fixed fake environment holding
//! credentials for the `DYNAMICS` and `BERGEN` prefixes, the notification and dashboard secrets and a database URL with
//! a password. Relative paths (the mapping file, a CA certificate) resolve against `fixtures/config/`.
//!
//! Beyond "no panic": loading is deterministic, and no secret value from the environment appears in the loaded
//! configuration's `Debug` output, its summary, or any error, unless the input itself spells part of it.

#![no_main]

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::LazyLock;

use integration_config::IntegrationConfig;
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

/// Fake values: none of them is, or was, a real credential.
const SECRETS: [&str; 6] = [
    "fuzz-Secret~Value.0123456789abcdef",
    "bergen-Secret~Value.fedcba9876543210",
    "smtp-Password~Value.00aa11bb22cc",
    "webhook-Secret~Value.33dd44ee55ff",
    "dashboard-Token~Value.6677889900",
    "db-Password~Value.1a2b3c4d5e",
];

static ENV: LazyLock<BTreeMap<String, String>> = LazyLock::new(|| {
    [
        ("DYNAMICS_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
        ("DYNAMICS_CLIENT_ID", "0b6f3c1e-9a63-4c62-8b1e-2f6f1c9b7d11"),
        ("DYNAMICS_CLIENT_SECRET", SECRETS[0]),
        ("DYNAMICS_INSTANCE_URL", "https://hlf.crm4.dynamics.com"),
        ("BERGEN_TENANT_ID", "bergen.onmicrosoft.com"),
        ("BERGEN_CLIENT_ID", "5d1c0e44-2d4b-4f0e-9a55-0b8e1f7c2a90"),
        ("BERGEN_CLIENT_SECRET", SECRETS[1]),
        ("BERGEN_INSTANCE_URL", "https://bergen.crm4.dynamics.com/"),
        ("SYNC_SMTP_PASSWORD", SECRETS[2]),
        ("SYNC_WEBHOOK_SECRET", SECRETS[3]),
        ("SYNC_DASHBOARD_CREDENTIAL", SECRETS[4]),
        (
            "SYNC_DATABASE_URL",
            "postgres://sync:db-Password~Value.1a2b3c4d5e@db.internal/sync",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
});

static BASE_DIR: LazyLock<PathBuf> = LazyLock::new(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/config"));

/// The one path outside `fixtures/config/` an input may name: the mapping the fixtures use.
const FIXTURE_MAPPING: &str = "../mapping/hlf-default.toml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if !stays_in_fixtures(text) {
        return;
    }
    let load = || IntegrationConfig::from_toml(text, "fuzz.toml", &BASE_DIR, &*ENV);
    let printed = match load() {
        Ok(config) => {
            let printed = format!("{config:?}\n{}", config.summary());
            let again = load().map(|c| format!("{c:?}\n{}", c.summary()));
            assert_eq!(Some(&printed), again.as_ref().ok(), "loading is not deterministic");
            printed
        }
        Err(error) => {
            let printed = format!("{error}\n{error:?}");
            let again = load().err().map(|e| format!("{e}\n{e:?}"));
            assert_eq!(Some(&printed), again.as_ref(), "loading is not deterministic");
            printed
        }
    };
    for secret in SECRETS {
        if !spells_part_of(text, secret) {
            assert!(!printed.contains(secret), "a secret leaked into:\n{printed}");
        }
    }
});

/// Whether every string in the document is a path that stays inside the fixtures, so the fuzzer never makes the
/// loader read `/dev/zero`, a FIFO or files elsewhere on the machine. Text the loader cannot parse is safe: it stops
/// before reading any file.
fn stays_in_fixtures(text: &str) -> bool {
    let Ok(document) = toml::Deserializer::parse(text) else {
        return true;
    };
    let Ok(value) = toml::Value::deserialize(document) else {
        return false;
    };
    every_string(&value, &|s| {
        s == FIXTURE_MAPPING
            || Path::new(s)
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    })
}

fn every_string(value: &toml::Value, ok: &dyn Fn(&str) -> bool) -> bool {
    match value {
        toml::Value::String(s) => ok(s),
        toml::Value::Array(items) => items.iter().all(|v| every_string(v, ok)),
        toml::Value::Table(table) => table.values().all(|v| every_string(v, ok)),
        _ => true,
    }
}

/// Whether the input holds any eight-character piece of the secret: then an echoed value may legitimately contain it.
fn spells_part_of(text: &str, secret: &str) -> bool {
    // `str::contains` rather than comparing byte windows: libFuzzer intercepts every `memcmp`, which made the
    // window-by-window version the slowest part of the target.
    (0..=secret.len().saturating_sub(8)).any(|i| secret.get(i..i + 8).is_some_and(|piece| text.contains(piece)))
}
