//! The dashboard router as a browser and an API client use it, over data made by real syncs against the Dataverse
//! emulator (SQLite, and PostgreSQL when `TEST_DATABASE_URL` is set), and over fixed data for the snapshot.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod access;
mod actions;
mod export;
mod health;
mod language;
mod snapshot;
mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use chrono::{DateTime, NaiveDate, Utc};
use dashboard::{Dashboard, DashboardOptions};
use dataverse_sim::{RunningSimulator, Simulator};
use dynamics_client::{ClientOptions, DynamicsClient};
use field_mapping::HLF_DEFAULT_MAPPING;
use integration_config::{IntegrationConfig, RetrySettings};
use serde_json::{Value, json};
use sync_engine::{FixedClock, SyncService};
use sync_store::testing::TestDatabase;
use sync_store::{Certification, Mentor, Store};
use tower::ServiceExt;

/// The dashboard token the tests sign in with.
pub(crate) const TOKEN: &str = "dashboard-token-0123456789abcdef";

/// The emulator, a store, HLF's sync service and the dashboard over them, wired like `sync-worker serve`.
pub(crate) struct World {
    pub(crate) sim: RunningSimulator,
    pub(crate) store: Store,
    pub(crate) service: SyncService,
    pub(crate) router: Router,
    pub(crate) dashboard: Dashboard,
    pub(crate) clock: Arc<FixedClock>,
    pub(crate) config: IntegrationConfig,
}

/// The default mapping with `phone` shared, so both sides may change it.
pub(crate) fn shared_phone_mapping() -> String {
    HLF_DEFAULT_MAPPING.replace(
        "field = \"phone\"\ncolumn = \"mobilephone\"\nowner = \"dynamics\"",
        "field = \"phone\"\ncolumn = \"mobilephone\"\nowner = \"shared\"",
    )
}

impl World {
    /// `manual` conflicts on `phone`, and a record is dead after one failed run.
    pub(crate) async fn new(db: &TestDatabase) -> World {
        let sim = Simulator::builder().start().await.unwrap();
        let dir = tempfile_dir();
        std::fs::write(dir.join("mapping.toml"), shared_phone_mapping()).unwrap();
        let text = format!(
            "mapping = \"mapping.toml\"\n[retry]\nrecord_max_attempts = 1\n[conflicts.fields]\nphone = \"manual\"\n\
             [[organisations]]\nid = \"hlf\"\nname = \"HLF\"\nauthority_host = \"{}\"\n",
            sim.authority_url()
        );
        let mut env = sim.worker_environment("DYNAMICS");
        env.insert("SYNC_DASHBOARD_CREDENTIAL".into(), TOKEN.into());
        let config = IntegrationConfig::from_toml(&text, "test.toml", &dir, &env).unwrap();
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
        let clock = Arc::new(FixedClock::new(at("2026-06-01T00:30:00Z")));
        let service = SyncService::new(
            &organisation,
            &config,
            client,
            Arc::new(store.clone()),
            store.clone(),
            clock.clone(),
        )
        .unwrap();
        let dashboard = Dashboard::new(
            config.clone(),
            store.clone(),
            vec![service.clone()],
            DashboardOptions {
                clock: Some(clock.clone()),
                ..DashboardOptions::default()
            },
        )
        .unwrap();
        World {
            sim,
            store,
            service,
            router: dashboard.router(),
            dashboard,
            clock,
            config,
        }
    }

    /// Adds a contact to Dynamics with a phone number.
    pub(crate) fn contact(&self, member: &str, phone: &str) -> uuid::Uuid {
        self.sim
            .state()
            .insert(
                "contacts",
                json!({
                    "hlf_membernumber": member,
                    "firstname": "Kari",
                    "lastname": format!("Medlem {member}"),
                    "mobilephone": phone,
                    "hlf_peermentorstatus": 100000003,
                    "hlf_showonpublicsite": false,
                }),
            )
            .unwrap()
    }

    /// Adds a mentor to the app, certified until `expires`.
    pub(crate) async fn mentor(&self, member: &str, family_name: &str, phone: Option<&str>, expires: NaiveDate) {
        let id = format!("hlf-{member}");
        self.store
            .upsert_mentor(&Mentor {
                id: id.clone(),
                organisation_id: "hlf".into(),
                member_number: Some(member.into()),
                given_name: Some("Kari".into()),
                family_name: Some(family_name.into()),
                email: None,
                phone: phone.map(str::to_owned),
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
                issued_on: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
                expires_on: expires,
                revoked_at: None,
                updated_at: at("2026-05-01T10:00:00Z"),
            })
            .await
            .unwrap();
    }

    /// One conflict (member 8001's phone changed on both sides) and one dead record (member 899990, unknown to
    /// Dynamics), both made by real syncs.
    pub(crate) async fn with_conflict_and_failure(&self) -> uuid::Uuid {
        let contact = self.contact("8001", "1");
        self.mentor("8001", "Nordmann", Some("1"), day(2027, 6, 30)).await;
        self.mentor("899990", "Ukjent", None, day(2027, 6, 30)).await;
        self.service.run().await.unwrap();
        self.sim
            .state()
            .update("contacts", contact, json!({ "mobilephone": "2 from Dynamics" }))
            .unwrap();
        let mut mentor = self.store_mentor("hlf-8001").await;
        mentor.phone = Some("3 from the app".into());
        mentor.updated_at = at("2026-05-31T12:00:00Z");
        self.store.upsert_mentor(&mentor).await.unwrap();
        let report = self.service.run().await.unwrap();
        assert_eq!(
            report.metrics.pull.conflicts + report.metrics.push.conflicts,
            1,
            "{report:?}"
        );
        contact
    }

    pub(crate) async fn store_mentor(&self, id: &str) -> Mentor {
        use sync_store::AppStore;
        self.store
            .mentors("hlf", &[id.to_owned()])
            .await
            .unwrap()
            .remove(0)
            .mentor
    }

    /// A CSRF token, as an API client gets one.
    pub(crate) async fn csrf_token(&self) -> String {
        let (status, _, body) = send(&self.router, get("/api/session").bearer(TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let session: Value = serde_json::from_str(&body).unwrap();
        session["csrf_token"].as_str().unwrap().to_owned()
    }
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dashboard-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A request being built.
pub(crate) struct Req {
    method: Method,
    uri: String,
    headers: Vec<(String, String)>,
    body: String,
    client: Option<std::net::SocketAddr>,
}

/// A GET as an English-speaking browser sends it (`Accept-Language: en`), so the assertions of most tests read in
/// English; the language tests take the header away with [`Req::no_language`] or set another.
pub(crate) fn get(uri: &str) -> Req {
    Req {
        method: Method::GET,
        uri: uri.to_owned(),
        headers: vec![(header::ACCEPT_LANGUAGE.to_string(), "en".to_owned())],
        body: String::new(),
        client: None,
    }
}

pub(crate) fn post(uri: &str, form: &str) -> Req {
    Req {
        method: Method::POST,
        uri: uri.to_owned(),
        headers: vec![
            (
                header::CONTENT_TYPE.to_string(),
                "application/x-www-form-urlencoded".to_owned(),
            ),
            (header::ACCEPT_LANGUAGE.to_string(), "en".to_owned()),
        ],
        body: form.to_owned(),
        client: None,
    }
}

impl Req {
    pub(crate) fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The request with no `Accept-Language`, as from a browser that names no language.
    pub(crate) fn no_language(mut self) -> Self {
        self.headers
            .retain(|(name, _)| !name.eq_ignore_ascii_case("accept-language"));
        self
    }

    /// The request with `Accept-Language: value` instead of English.
    pub(crate) fn language(self, value: &str) -> Self {
        self.no_language().header("accept-language", value)
    }

    /// The client's address, as `serve` records it for each connection.
    pub(crate) fn from(mut self, client: std::net::SocketAddr) -> Self {
        self.client = Some(client);
        self
    }

    pub(crate) fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub(crate) fn json(mut self, body: &Value) -> Self {
        self.headers.retain(|(k, _)| k != "content-type");
        self.headers.push(("content-type".into(), "application/json".into()));
        self.body = body.to_string();
        self
    }
}

/// Sends a request through the router; answers status, headers and body text.
pub(crate) async fn send(router: &Router, req: Req) -> (StatusCode, HeaderMap, String) {
    let mut builder = Request::builder()
        .method(req.method.clone())
        .uri(&req.uri)
        .header("host", "127.0.0.1:8088");
    for (name, value) in &req.headers {
        builder = builder.header(name, value);
    }
    let mut request = builder.body(Body::from(req.body.clone())).unwrap();
    if let Some(client) = req.client {
        request.extensions_mut().insert(axum::extract::ConnectInfo(client));
    }
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = String::from_utf8(to_bytes(response.into_body(), 10 << 20).await.unwrap().to_vec()).unwrap();
    (status, headers, body)
}

/// Runs `test` on SQLite, and on PostgreSQL when `TEST_DATABASE_URL` is set.
pub(crate) async fn each<F, Fut>(test: F)
where
    F: Fn(TestDatabase) -> Fut,
    Fut: Future<Output = TestDatabase>,
{
    for db in TestDatabase::all().await.unwrap() {
        let db = test(db).await;
        db.cleanup().await.unwrap();
    }
}

pub(crate) fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

pub(crate) fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}
