//! Tests of the health monitor: every alert rule with an injected clock (raise, dedupe, resolve) on SQLite and,
//! when `TEST_DATABASE_URL` is set, PostgreSQL; the health verdict against the Dataverse emulator; the Prometheus
//! exposition parsed back; and delivery to a real SMTP listener on loopback and a wiremock webhook.

// Test helpers may unwrap and panic: that is how they report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod delivery;
mod metrics;
mod probe;
mod rules;
mod smtp;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use health_monitor::HealthMonitor;
use integration_config::IntegrationConfig;
use sync_engine::{FixedClock, NOTE_AADSTS, NOTE_PULL_COMPLETED};
use sync_store::testing::TestDatabase;
use sync_store::{Certification, Mentor, RunKind, RunMetrics, RunStatus, Store};

/// A secret value that must never appear in any output.
pub(crate) const SECRET: &str = "client-secret-value-that-must-not-leak";

/// The webhook signing secret.
pub(crate) const WEBHOOK_SECRET: &str = "webhook-signing-secret";

/// The credential variables of the test organisation.
pub(crate) fn environment() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "DYNAMICS_TENANT_ID".to_owned(),
            "00000000-0000-0000-0000-000000000001".to_owned(),
        ),
        (
            "DYNAMICS_CLIENT_ID".to_owned(),
            "00000000-0000-0000-0000-000000000002".to_owned(),
        ),
        ("DYNAMICS_CLIENT_SECRET".to_owned(), SECRET.to_owned()),
        (
            "DYNAMICS_INSTANCE_URL".to_owned(),
            "https://hlf.crm4.dynamics.com".to_owned(),
        ),
        ("HOOK_SECRET".to_owned(), WEBHOOK_SECRET.to_owned()),
    ])
}

/// Configuration text with one organisation `hlf`; `extra` is appended at the top level before it and
/// `organisation` inside it.
pub(crate) fn config(extra: &str, organisation: &str) -> IntegrationConfig {
    let text = format!(
        "mapping = \"builtin:hlf-default\"\n{extra}\n[[organisations]]\nid = \"hlf\"\nname = \"HLF\"\n{organisation}\n"
    );
    IntegrationConfig::from_toml(&text, "test.toml", std::path::Path::new("."), &environment())
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// A store, a clock and a monitor over them.
pub(crate) struct Fixture {
    pub(crate) store: Store,
    pub(crate) clock: Arc<FixedClock>,
    pub(crate) config: IntegrationConfig,
    pub(crate) monitor: HealthMonitor,
}

impl Fixture {
    pub(crate) async fn new(db: &TestDatabase, config: IntegrationConfig) -> Fixture {
        let store = db.store.clone();
        store.upsert_organisation("hlf", "HLF").await.unwrap();
        let clock = Arc::new(FixedClock::new(at("2026-06-01T02:00:00Z")));
        let monitor = HealthMonitor::new(&config, store.clone(), Arc::new(store.clone()), clock.clone());
        Fixture {
            store,
            clock,
            config,
            monitor,
        }
    }

    pub(crate) fn organisation(&self) -> &integration_config::OrganisationConfig {
        &self.config.organisations[0]
    }

    /// Records a finished sync run starting now, as the engine does.
    pub(crate) async fn run(&self, status: RunStatus, notes: &[(&str, &str)]) -> String {
        let now = sync_engine::Clock::now(&*self.clock);
        let id = self.store.start_run("hlf", RunKind::Sync, now).await.unwrap();
        let mut metrics = RunMetrics::default();
        for (k, v) in notes {
            metrics.notes.insert((*k).to_owned(), (*v).to_owned());
        }
        let error = (status == RunStatus::Failed).then_some("the sync for organisation hlf could not use Dynamics");
        self.store.finish_run(&id, status, &metrics, error, now).await.unwrap();
        id
    }

    /// A run that completed both directions.
    pub(crate) async fn succeeded(&self) -> String {
        self.run(RunStatus::Succeeded, &[(NOTE_PULL_COMPLETED, "true")]).await
    }

    /// A run that failed as a whole, optionally with an Azure AD code.
    pub(crate) async fn failed(&self, aadsts: Option<&str>) -> String {
        match aadsts {
            Some(code) => self.run(RunStatus::Failed, &[(NOTE_AADSTS, code)]).await,
            None => self.run(RunStatus::Failed, &[]).await,
        }
    }

    pub(crate) fn advance_hours(&self, hours: i64) {
        self.clock.advance(chrono::Duration::hours(hours));
    }

    /// Adds a mentor with one certification expiring on `expires` (changed a month before the test's start).
    pub(crate) async fn mentor(&self, member: &str, expires: NaiveDate) {
        let id = format!("hlf-{member}");
        self.store
            .upsert_mentor(&Mentor {
                id: id.clone(),
                organisation_id: "hlf".into(),
                member_number: Some(member.to_owned()),
                given_name: Some("Kari".into()),
                family_name: Some("Nordmann".into()),
                email: None,
                phone: None,
                coordinator_email: Some("koordinator@hlf.example".into()),
                dynamics_contact_id: None,
                updated_at: at("2026-05-01T10:00:00Z"),
            })
            .await
            .unwrap();
        self.store
            .upsert_certification(&Certification {
                id: format!("c-{id}"),
                mentor_id: id,
                kind: "likeperson".into(),
                issued_on: day(2024, 1, 1),
                expires_on: expires,
                revoked_at: None,
                updated_at: at("2026-05-01T10:00:00Z"),
            })
            .await
            .unwrap();
    }

    /// What Dynamics last confirmed for a mentor, as the engine records it.
    pub(crate) async fn confirmed(&self, member: &str, status: &str, shown: bool) {
        self.store
            .save_cache_entry(&sync_store::CacheEntry {
                organisation_id: "hlf".into(),
                mentor_id: format!("hlf-{member}"),
                member_number: Some(member.to_owned()),
                status: status.to_owned(),
                expires_on: None,
                show_on_public_site: shown,
                as_of: sync_engine::Clock::now(&*self.clock),
            })
            .await
            .unwrap();
    }

    /// Causes of the open and acknowledged alerts.
    pub(crate) async fn open_causes(&self) -> Vec<String> {
        let mut causes: Vec<String> = self
            .store
            .active_alerts("hlf")
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.cause)
            .collect();
        causes.sort();
        causes
    }

    /// Subjects of every queued notification, oldest first.
    pub(crate) async fn notifications(&self) -> Vec<sync_store::Notification> {
        let mut all = self.store.notifications("hlf", 1000).await.unwrap();
        all.reverse();
        all
    }
}

pub(crate) fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

pub(crate) fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// Runs `test` on every test database (SQLite always, PostgreSQL when configured), cleaning up after each.
pub(crate) async fn each_database<F, Fut>(test: F)
where
    F: Fn(TestDatabase) -> Fut,
    Fut: std::future::Future<Output = TestDatabase>,
{
    for db in TestDatabase::all().await.unwrap() {
        let db = test(db).await;
        db.cleanup().await.unwrap();
    }
}
