//! Integration tests of configuration loading: the fixtures under `fixtures/config/`, every required variable, bad
//! values, several problems at once, and secret redaction.

// Test helpers may unwrap and panic: that is how they report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod load;
mod reference;
mod secrets;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use integration_config::{ConfigError, IntegrationConfig};

pub(crate) const SECRET: &str = "s3cr3t~Value.With-Chars_0123456789abcdef";

pub(crate) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/config")
}

/// A complete, valid environment for the example configuration's two organisations.
pub(crate) fn good_env() -> BTreeMap<String, String> {
    [
        ("DYNAMICS_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
        ("DYNAMICS_CLIENT_ID", "0b6f3c1e-9a63-4c62-8b1e-2f6f1c9b7d11"),
        ("DYNAMICS_CLIENT_SECRET", SECRET),
        ("DYNAMICS_INSTANCE_URL", "https://hlf.crm4.dynamics.com"),
        ("BERGEN_TENANT_ID", "bergen.onmicrosoft.com"),
        ("BERGEN_CLIENT_ID", "5d1c0e44-2d4b-4f0e-9a55-0b8e1f7c2a90"),
        ("BERGEN_CLIENT_SECRET", "another-secret-value"),
        ("BERGEN_INSTANCE_URL", "https://bergen.crm4.dynamics.com/"),
        ("SYNC_SMTP_PASSWORD", "smtp-password-value"),
        ("SYNC_WEBHOOK_SECRET", "webhook-secret-value"),
        ("SYNC_DASHBOARD_CREDENTIAL", "dashboard-token-value"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Loads configuration text as if it were a file in `fixtures/config/`.
pub(crate) fn load(text: &str, env: &BTreeMap<String, String>) -> Result<IntegrationConfig, ConfigError> {
    IntegrationConfig::from_toml(text, "test.toml", &fixtures(), env)
}

pub(crate) fn example_text() -> String {
    std::fs::read_to_string(fixtures().join("example.toml")).unwrap()
}

/// The problems of a configuration that must not load, as `path: message` lines.
#[track_caller]
pub(crate) fn problems(text: &str, env: &BTreeMap<String, String>) -> Vec<String> {
    match load(text, env) {
        Ok(config) => panic!("configuration loaded but should not have:\n{text}\n{config:#?}"),
        Err(e) => e.problems().iter().map(ToString::to_string).collect(),
    }
}
