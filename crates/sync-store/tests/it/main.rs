//! The store's test suite. Every test runs against SQLite (a temporary file) and, when `TEST_DATABASE_URL` is set,
//! against a fresh PostgreSQL database: the same migrations must behave the same on both.

// Test helpers may unwrap and panic: that is how they report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

mod app;
mod contract;
mod edges;
mod lock;
mod postings;
mod state;

use std::future::Future;

use chrono::{DateTime, NaiveDate, Utc};
use sync_store::testing::TestDatabase;
use sync_store::{Certification, Mentor, Store};

/// Runs `test` against SQLite and, when `TEST_DATABASE_URL` is set, PostgreSQL; stderr names the backend, so a
/// failure says which one broke.
pub(crate) async fn each<F, Fut>(test: F)
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    for database in TestDatabase::all().await.unwrap() {
        eprintln!("-- on {}", database.name);
        test(database.store.clone()).await;
        database.cleanup().await.unwrap();
    }
}

pub(crate) fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

pub(crate) fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

pub(crate) fn mentor(id: &str, organisation: &str, member: &str, updated: &str) -> Mentor {
    Mentor {
        id: id.to_owned(),
        organisation_id: organisation.to_owned(),
        member_number: Some(member.to_owned()),
        given_name: Some("Kari".to_owned()),
        family_name: Some("Nordmann".to_owned()),
        email: Some(format!("{id}@example.org")),
        phone: None,
        coordinator_email: Some("coordinator@example.org".to_owned()),
        dynamics_contact_id: None,
        updated_at: at(updated),
    }
}

pub(crate) fn certification(id: &str, mentor: &str, expires: NaiveDate, updated: &str) -> Certification {
    Certification {
        id: id.to_owned(),
        mentor_id: mentor.to_owned(),
        kind: "likeperson".to_owned(),
        issued_on: day(2024, 1, 1),
        expires_on: expires,
        revoked_at: None,
        updated_at: at(updated),
    }
}

pub(crate) async fn seed_orgs(store: &Store) {
    store.upsert_organisation("hlf", "HLF").await.unwrap();
    store
        .upsert_organisation("other", "Another organisation")
        .await
        .unwrap();
}
