//! What the engine's test binaries share: the emulator, a store (SQLite, and PostgreSQL when `TEST_DATABASE_URL` is
//! set) and an HLF sync service wired like production, and small helpers.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use dataverse_sim::{RunningSimulator, Simulator};
use dynamics_client::{ClientOptions, DynamicsClient};
use integration_config::{IntegrationConfig, RetrySettings};
use serde_json::{Value, json};
use sync_engine::{FixedClock, SyncService};
use sync_store::testing::TestDatabase;
use sync_store::{Certification, Mentor, Store};
use uuid::Uuid;

/// The emulator, a store, and an HLF sync service wired like production.
pub(crate) struct World {
    pub(crate) sim: RunningSimulator,
    pub(crate) store: Store,
    pub(crate) service: SyncService,
    pub(crate) clock: Arc<FixedClock>,
}

/// The default mapping with `phone` shared, so both sides may change it.
pub(crate) fn shared_phone_mapping() -> String {
    field_mapping::HLF_DEFAULT_MAPPING.replace(
        "field = \"phone\"\ncolumn = \"mobilephone\"\nowner = \"dynamics\"",
        "field = \"phone\"\ncolumn = \"mobilephone\"\nowner = \"shared\"",
    )
}

pub(crate) const DEFAULT_CONFIG: &str = "mapping = \"builtin:hlf-default\"\n[retry]\nrecord_max_attempts = 3\ninitial_backoff_ms = 10\nmax_backoff_seconds = 1\n";

impl World {
    pub(crate) async fn new(db: &TestDatabase) -> World {
        Self::with_config(db, DEFAULT_CONFIG, None).await
    }

    /// A world with configuration text (without the organisation, which is added) and an optional mapping file
    /// text replacing the built-in one.
    pub(crate) async fn with_config(db: &TestDatabase, config: &str, mapping: Option<&str>) -> World {
        Self::with_organisation(db, config, mapping, "").await
    }

    /// Like [`World::with_config`], with `organisation` appended to the organisation's table (e.g. its filters).
    pub(crate) async fn with_organisation(
        db: &TestDatabase,
        config: &str,
        mapping: Option<&str>,
        organisation: &str,
    ) -> World {
        Self::with_app(db, config, mapping, organisation, |store| Arc::new(store)).await
    }

    /// Like [`World::with_organisation`], with the app side wrapped by `app` (to act during a run).
    pub(crate) async fn with_app(
        db: &TestDatabase,
        config: &str,
        mapping: Option<&str>,
        organisation: &str,
        app: impl FnOnce(Store) -> Arc<dyn sync_store::AppStore>,
    ) -> World {
        let sim = Simulator::builder().start().await.unwrap();
        let dir = std::env::temp_dir().join(format!("sync-engine-test-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut text = config.to_owned();
        if let Some(mapping) = mapping {
            std::fs::write(dir.join("mapping.toml"), mapping).unwrap();
            text = text.replace("builtin:hlf-default", "mapping.toml");
        }
        text.push_str(&format!(
            "\n[[organisations]]\nid = \"hlf\"\nname = \"HLF\"\nauthority_host = \"{}\"\n",
            sim.authority_url()
        ));
        text.push_str(organisation);
        let env = sim.worker_environment("DYNAMICS");
        let config =
            IntegrationConfig::from_toml(&text, "test.toml", &dir, &env).unwrap_or_else(|e| panic!("{e}\n{text}"));
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
        let clock = Arc::new(FixedClock::new(at("2026-06-01T00:30:00Z")));
        let service = SyncService::new(
            &organisation,
            &config,
            client,
            app(store.clone()),
            store.clone(),
            clock.clone(),
        )
        .unwrap();
        World {
            sim,
            store,
            service,
            clock,
        }
    }

    /// Adds a contact to Dynamics, as HLF's staff would.
    pub(crate) fn contact(&self, member: &str, extra: Value) -> Uuid {
        let mut row = json!({
            "hlf_membernumber": member,
            "firstname": "Kari",
            "lastname": format!("Medlem {member}"),
            "emailaddress1": format!("m{member}@example.org"),
            "hlf_peermentorstatus": 100000003,
            "hlf_showonpublicsite": false,
            "hlf_membershipstatus": 100000000,
            "hlf_membershiptype": 100000000,
            "hlf_paiduntil": "2026-12-31",
        });
        for (k, v) in extra.as_object().unwrap() {
            row[k] = v.clone();
        }
        self.sim.state().insert("contacts", row).unwrap()
    }

    pub(crate) fn row(&self, id: Uuid) -> Value {
        self.sim.state().row("contacts", id).unwrap()
    }

    /// Runs as a worker restarted after one was killed: the killed run's SQLite lease has lapsed (the caller moves
    /// the clock); on PostgreSQL its lock goes with its session, which ends a moment after its connection closes in
    /// the background, so this tries again until then (at most ten seconds).
    pub(crate) async fn run_after_kill(&self) -> sync_engine::RunReport {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match self.service.run().await {
                Err(sync_engine::Error::AlreadyRunning { .. }) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other.unwrap(),
            }
        }
    }

    /// Adds a mentor to the app with one certification expiring on `expires`.
    pub(crate) async fn mentor(&self, organisation: &str, member: &str, expires: NaiveDate) {
        let id = mentor_id(organisation, member);
        self.store
            .upsert_mentor(&Mentor {
                id: id.clone(),
                organisation_id: organisation.to_owned(),
                member_number: Some(member.to_owned()),
                given_name: Some("Kari".into()),
                family_name: Some(format!("Medlem {member}")),
                email: Some(format!("m{member}@example.org")),
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
}

/// An app store that runs a test's action when the engine makes a given call: a coordinator saving while the run
/// reads, a worker dying at a chosen point. An action stays until the test removes it; it decides itself whether
/// to act more than once.
#[derive(Clone)]
pub(crate) struct Hooked {
    pub(crate) inner: Store,
    hooks: Arc<std::sync::Mutex<std::collections::BTreeMap<&'static str, Hook>>>,
}

pub(crate) type Hook = Box<dyn FnMut() -> futures::future::BoxFuture<'static, ()> + Send>;

impl Hooked {
    pub(crate) fn new(inner: Store) -> Self {
        Hooked {
            inner,
            hooks: Arc::default(),
        }
    }

    /// Runs `hook` before every call of `method` (`changed_mentors`, `mentors`, `apply_pull`, ...).
    pub(crate) fn on(&self, method: &'static str, hook: Hook) {
        self.hooks.lock().unwrap().insert(method, hook);
    }

    pub(crate) fn clear(&self) {
        self.hooks.lock().unwrap().clear();
    }

    async fn fire(&self, method: &'static str) {
        let future = self.hooks.lock().unwrap().get_mut(method).map(|hook| hook());
        if let Some(future) = future {
            future.await;
        }
    }
}

#[async_trait::async_trait]
impl sync_store::AppStore for Hooked {
    async fn changed_mentors(
        &self,
        organisation: &str,
        since: Option<DateTime<Utc>>,
        after: Option<&sync_store::ChangeCursor>,
        limit: u32,
    ) -> sync_store::Result<Vec<(sync_store::ChangeCursor, sync_store::MentorSnapshot)>> {
        self.fire("changed_mentors").await;
        self.inner.changed_mentors(organisation, since, after, limit).await
    }
    async fn mentors(&self, organisation: &str, ids: &[String]) -> sync_store::Result<Vec<sync_store::MentorSnapshot>> {
        self.fire("mentors").await;
        self.inner.mentors(organisation, ids).await
    }
    async fn all_mentors(
        &self,
        organisation: &str,
        after: Option<&str>,
        limit: u32,
    ) -> sync_store::Result<Vec<sync_store::MentorSnapshot>> {
        self.inner.all_mentors(organisation, after, limit).await
    }
    async fn mentor_by_member_number(
        &self,
        organisation: &str,
        number: &str,
    ) -> sync_store::Result<Option<sync_store::MentorSnapshot>> {
        self.inner.mentor_by_member_number(organisation, number).await
    }
    async fn mentors_by_member_numbers(
        &self,
        organisation: &str,
        numbers: &[String],
    ) -> sync_store::Result<Vec<sync_store::MentorSnapshot>> {
        self.inner.mentors_by_member_numbers(organisation, numbers).await
    }
    async fn existing_mentors(&self, organisation: &str, ids: &[String]) -> sync_store::Result<Vec<String>> {
        self.fire("existing_mentors").await;
        self.inner.existing_mentors(organisation, ids).await
    }
    async fn apply_pull(
        &self,
        organisation: &str,
        mentor: &str,
        update: &sync_store::PullUpdate,
    ) -> sync_store::Result<sync_store::PullOutcome> {
        self.fire("apply_pull").await;
        self.inner.apply_pull(organisation, mentor, update).await
    }
    async fn set_dynamics_contact(
        &self,
        organisation: &str,
        mentor: &str,
        contact: Option<Uuid>,
    ) -> sync_store::Result<()> {
        self.inner.set_dynamics_contact(organisation, mentor, contact).await
    }
}

/// Revokes the certification of an HLF mentor in the app at `when`.
pub(crate) async fn revoke(store: &Store, member: &str, when: DateTime<Utc>) {
    use sync_store::AppStore;
    let mut certification = store
        .mentors("hlf", &[mentor_id("hlf", member)])
        .await
        .unwrap()
        .remove(0)
        .certifications
        .remove(0);
    certification.revoked_at = Some(when);
    certification.updated_at = when;
    store.upsert_certification(&certification).await.unwrap();
}

pub(crate) fn mentor_id(organisation: &str, member: &str) -> String {
    format!("{organisation}-{member}")
}

pub(crate) fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

pub(crate) fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
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

#[allow(dead_code)]
pub(crate) fn fixtures() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}
