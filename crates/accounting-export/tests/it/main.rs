//! End-to-end tests of the accounting export: the production client and credential against the Dataverse
//! emulator's `hlf_posting` table, with the app's postings on SQLite and, when `TEST_DATABASE_URL` is set,
//! PostgreSQL.

// Test helpers may unwrap and panic: that is how they report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

mod export;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use accounting_export::AccountingExporter;
use chrono::{DateTime, Utc};
use dataverse_sim::{RunningSimulator, Simulator};
use dynamics_client::{ClientOptions, DynamicsClient};
use integration_config::{IntegrationConfig, RetrySettings};
use serde_json::Value;
use sync_engine::FixedClock;
use sync_store::testing::TestDatabase;
use sync_store::{Mentor, Posting, Store};

/// The emulator, a store and an exporter wired like production.
pub(crate) struct World {
    pub(crate) sim: RunningSimulator,
    pub(crate) store: Store,
    pub(crate) exporter: AccountingExporter,
    pub(crate) clock: Arc<FixedClock>,
}

pub(crate) const ENTITY_SET: &str = "hlf_postings";

impl World {
    pub(crate) async fn new(db: &TestDatabase) -> World {
        let sim = Simulator::builder().start().await.unwrap();
        let text = format!(
            "mapping = \"builtin:hlf-default\"\n[retry]\nrecord_max_attempts = 3\ninitial_backoff_ms = 10\nmax_backoff_seconds = 1\n\
             [[organisations]]\nid = \"hlf\"\nname = \"HLF\"\nauthority_host = \"{}\"\n",
            sim.authority_url()
        );
        let env = sim.worker_environment("DYNAMICS");
        let config = IntegrationConfig::from_toml(&text, "test.toml", std::path::Path::new("."), &env)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let organisation = config.organisations[0].clone();
        let client = DynamicsClient::for_organisation(
            &organisation,
            ClientOptions {
                extra_root_certificates: vec![sim.ca_certificate_pem().unwrap().as_bytes().to_vec()],
                retry: RetrySettings {
                    initial_backoff: Duration::from_millis(10),
                    max_backoff: Duration::from_millis(200),
                    ..config.retry.clone()
                },
                ..ClientOptions::default()
            },
        )
        .unwrap();
        let store = db.store.clone();
        store.upsert_organisation("hlf", "HLF").await.unwrap();
        store
            .upsert_organisation("other", "Another organisation")
            .await
            .unwrap();
        for (id, organisation, member) in [("hlf-1001", "hlf", "1001"), ("other-9001", "other", "9001")] {
            store
                .upsert_mentor(&Mentor {
                    id: id.into(),
                    organisation_id: organisation.into(),
                    member_number: Some(member.into()),
                    given_name: Some("Kari".into()),
                    family_name: Some("Nordmann".into()),
                    email: None,
                    phone: None,
                    coordinator_email: None,
                    dynamics_contact_id: None,
                    updated_at: at("2026-05-01T10:00:00Z"),
                })
                .await
                .unwrap();
        }
        let clock = Arc::new(FixedClock::new(at("2026-06-01T00:30:00Z")));
        let exporter = AccountingExporter::new(
            &organisation,
            &config,
            client,
            Arc::new(store.clone()),
            store.clone(),
            clock.clone(),
        )
        .unwrap();
        World {
            sim,
            store,
            exporter,
            clock,
        }
    }

    /// Records an approved posting of the HLF mentor (or, with `mentor = "other-9001"`, another organisation's).
    pub(crate) async fn posting(&self, id: &str, mentor: &str, amount: &str) {
        self.store
            .upsert_posting(&Posting {
                id: id.into(),
                mentor_id: mentor.into(),
                member_number: None,
                amount: amount.parse().unwrap(),
                account: "5000".into(),
                description: Some("Honorar likepersonarbeid".into()),
                approved_at: Some(at("2026-05-31T22:30:00Z")),
                exported_at: None,
            })
            .await
            .unwrap();
    }

    /// The emulator's row for a posting id.
    pub(crate) fn row(&self, posting_id: &str) -> Option<Value> {
        let id = self
            .sim
            .state()
            .find_by_key(ENTITY_SET, "hlf_postingnumber", posting_id)?;
        self.sim.state().row(ENTITY_SET, id)
    }

    pub(crate) fn rows_in_dynamics(&self) -> usize {
        self.sim.state().row_count(ENTITY_SET).unwrap()
    }
}

pub(crate) fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

/// Runs a test against SQLite and, when `TEST_DATABASE_URL` is set, PostgreSQL.
pub(crate) async fn each<F, Fut>(test: F)
where
    F: Fn(TestDatabase) -> Fut,
    Fut: Future<Output = TestDatabase>,
{
    for db in TestDatabase::all().await.unwrap() {
        eprintln!("-- on {}", db.name);
        let db = test(db).await;
        db.cleanup().await.unwrap();
    }
}
