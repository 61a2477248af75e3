//! Tests of the CSV fallback and the certification cache reads, against SQLite and, when `TEST_DATABASE_URL` is
//! set, PostgreSQL.

// Test helpers may unwrap and panic: that is how they report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

mod cache;
mod export;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use integration_config::{IntegrationConfig, OrganisationConfig};
use sync_engine::FixedClock;
use sync_store::testing::TestDatabase;
use sync_store::{Certification, Mentor, Store};

pub(crate) fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

pub(crate) fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// The configuration of organisation `hlf` with the default mapping (no Dynamics is contacted).
pub(crate) fn config() -> IntegrationConfig {
    let env: BTreeMap<String, String> = [
        ("DYNAMICS_TENANT_ID", "00000000-0000-0000-0000-000000000001"),
        ("DYNAMICS_CLIENT_ID", "00000000-0000-0000-0000-000000000002"),
        ("DYNAMICS_CLIENT_SECRET", "not-a-real-secret"),
        ("DYNAMICS_INSTANCE_URL", "https://hlf.crm4.dynamics.com"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let text = "mapping = \"builtin:hlf-default\"\n[[organisations]]\nid = \"hlf\"\nname = \"HLF\"\n";
    IntegrationConfig::from_toml(text, "test.toml", std::path::Path::new("."), &env).unwrap()
}

pub(crate) fn organisation() -> OrganisationConfig {
    config().organisations.remove(0)
}

/// The clock at 02:30 Oslo time on 1 June 2026.
pub(crate) fn clock() -> Arc<FixedClock> {
    Arc::new(FixedClock::new(at("2026-06-01T00:30:00Z")))
}

/// Adds a mentor of `organisation` (id `<organisation>-<label>`) with one certification, when `expires` is given.
pub(crate) async fn mentor(
    store: &Store,
    organisation: &str,
    label: &str,
    member: Option<&str>,
    expires: Option<NaiveDate>,
    revoked: bool,
) -> String {
    let id = format!("{organisation}-{label}");
    store
        .upsert_mentor(&Mentor {
            id: id.clone(),
            organisation_id: organisation.to_owned(),
            member_number: member.map(str::to_owned),
            given_name: Some("Kari".into()),
            family_name: Some("Nordmann".into()),
            email: Some(format!("{label}@example.org")),
            phone: None,
            coordinator_email: None,
            dynamics_contact_id: None,
            updated_at: at("2026-05-01T10:00:00Z"),
        })
        .await
        .unwrap();
    if let Some(expires) = expires {
        store
            .upsert_certification(&Certification {
                id: format!("c-{id}"),
                mentor_id: id.clone(),
                kind: "likeperson".into(),
                issued_on: day(2024, 1, 1),
                expires_on: expires,
                revoked_at: revoked.then(|| at("2026-05-15T12:00:00Z")),
                updated_at: at("2026-05-01T10:00:00Z"),
            })
            .await
            .unwrap();
    }
    id
}

/// Runs a test against SQLite and, when `TEST_DATABASE_URL` is set, PostgreSQL.
pub(crate) async fn each<F, Fut>(test: F)
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    for db in TestDatabase::all().await.unwrap() {
        eprintln!("-- on {}", db.name);
        db.store.upsert_organisation("hlf", "HLF").await.unwrap();
        db.store
            .upsert_organisation("other", "Another organisation")
            .await
            .unwrap();
        test(db.store.clone()).await;
        db.cleanup().await.unwrap();
    }
}
