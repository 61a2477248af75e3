//! The example backend against the Dataverse emulator: its `AppStore` keeps the contract on SQLite and PostgreSQL,
//! a revoked certification is hidden on the public website within seconds, and an event while Dynamics is down
//! waits in the queue and goes through once Dynamics is back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{NaiveDate, Utc};
use dataverse_sim::{RunningSimulator, Simulator};
use example_backend::{Backend, BackendOptions, BackendStore, Certificate, User};
use serde_json::json;
use sync_store::testing::{AppFixture, TestDatabase, app_store_conformance};
use sync_store::{AppStore, Certification, Mentor};

/// The backend's store, written through its own API as the suite asks.
struct Fixture(BackendStore);

#[async_trait]
impl AppFixture for Fixture {
    fn app(&self) -> &dyn AppStore {
        &self.0
    }

    async fn add_organisation(&self, _id: &str) -> sync_store::Result<()> {
        Ok(())
    }

    async fn put_mentor(&self, mentor: &Mentor) -> sync_store::Result<()> {
        self.0
            .upsert_user(&User {
                user_id: mentor.id.clone(),
                org: mentor.organisation_id.clone(),
                medlemsnr: mentor.member_number.clone(),
                first_name: mentor.given_name.clone(),
                last_name: mentor.family_name.clone(),
                email: mentor.email.clone(),
                mobile: mentor.phone.clone(),
                coordinator: mentor.coordinator_email.clone(),
                changed: mentor.updated_at,
            })
            .await
    }

    async fn put_certification(&self, c: &Certification) -> sync_store::Result<()> {
        self.0
            .upsert_certificate(&Certificate {
                cert_id: c.id.clone(),
                user_id: c.mentor_id.clone(),
                kind: c.kind.clone(),
                valid_from: c.issued_on,
                valid_to: c.expires_on,
                revoked: c.revoked_at,
                changed: c.updated_at,
            })
            .await
    }
}

#[tokio::test]
async fn the_backend_s_app_store_keeps_the_contract_on_both_databases() {
    for db in TestDatabase::all().await.unwrap() {
        eprintln!("-- on {}", db.name);
        let store = BackendStore::connect(&db.url).await.unwrap();
        let report = app_store_conformance(&Fixture(store), "example").await;
        assert_eq!(report.checked, 10);
        report.assert_passed();
        db.cleanup().await.unwrap();
    }
}

/// The example's database: a fresh PostgreSQL database when `TEST_DATABASE_URL` is set (dropped at the end), SQLite
/// files in a temporary folder otherwise. The backend's tables and the sync state share it.
struct Database {
    url: String,
    postgres: Option<TestDatabase>,
}

impl Database {
    async fn new(dir: &std::path::Path) -> Database {
        match TestDatabase::postgres().await.unwrap() {
            Some(db) => Database {
                url: db.url.clone(),
                postgres: Some(db),
            },
            None => Database {
                url: format!("sqlite://{}", dir.join("backend.db").display()),
                postgres: None,
            },
        }
    }

    async fn cleanup(self) {
        if let Some(db) = self.postgres {
            db.cleanup().await.unwrap();
        }
    }
}

/// The emulator with `mentors` linked and shown on the public website after a first sync, and the backend on
/// `database`.
async fn world(dir: &std::path::Path, database: &Database, mentors: usize) -> (RunningSimulator, Backend) {
    let sim = Simulator::builder().start().await.unwrap();
    let text = format!(
        "mapping = \"builtin:hlf-default\"\n[store]\nurl = \"{}\"\n[retry]\nmax_attempts = 2\n\
         initial_backoff_ms = 20\ntotal_budget_seconds = 2\n[[organisations]]\nid = \"hlf\"\nname = \"HLF\"\n\
         authority_host = \"{}\"\n",
        database.url,
        sim.authority_url()
    );
    let mut env = sim.worker_environment("DYNAMICS");
    env.insert(
        "SYNC_DASHBOARD_CREDENTIAL".into(),
        "example-backend-dashboard-token-0123456789".into(),
    );
    let config = integration_config::IntegrationConfig::from_toml(&text, "sync.toml", dir, &env).unwrap();
    let options = BackendOptions {
        extra_root_certificates: vec![sim.ca_certificate_pem().unwrap().as_bytes().to_vec()],
        push_backoff: Duration::from_millis(100),
        push_backoff_max: Duration::from_millis(400),
    };
    let backend = Backend::new(config, &database.url, options).await.unwrap();
    let earlier = Utc::now() - chrono::Duration::hours(1);
    for i in 0..mentors {
        let member = format!("{}", 700_000 + i);
        sim.state()
            .insert(
                "contacts",
                json!({ "hlf_membernumber": member, "firstname": "Kari", "lastname": format!("Medlem {i}") }),
            )
            .unwrap();
        let user_id = format!("u{i:03}");
        backend
            .store
            .upsert_user(&User {
                user_id: user_id.clone(),
                org: "hlf".into(),
                medlemsnr: Some(member),
                first_name: Some("Kari".into()),
                last_name: Some(format!("Medlem {i}")),
                email: None,
                mobile: None,
                coordinator: None,
                changed: earlier,
            })
            .await
            .unwrap();
        backend
            .store
            .upsert_certificate(&Certificate {
                cert_id: format!("c{i:03}"),
                user_id,
                kind: "likeperson".into(),
                valid_from: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
                valid_to: Utc::now().date_naive() + chrono::Duration::days(365),
                revoked: None,
                changed: earlier,
            })
            .await
            .unwrap();
    }
    let report = backend.services["hlf"].run().await.unwrap();
    assert_eq!(report.status, sync_store::RunStatus::Succeeded, "{report:?}");
    assert_eq!(shown(&sim), mentors);
    (sim, backend)
}

fn shown(sim: &RunningSimulator) -> usize {
    sim.state()
        .rows("contacts")
        .iter()
        .filter(|r| r["hlf_showonpublicsite"] == json!(true))
        .count()
}

fn is_shown(sim: &RunningSimulator, i: usize) -> bool {
    let id = sim
        .state()
        .find_by_key("contacts", "hlf_membernumber", &format!("{}", 700_000 + i))
        .unwrap();
    sim.state().row("contacts", id).unwrap()["hlf_showonpublicsite"] == json!(true)
}

async fn serve(backend: &Backend) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = backend.router().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certification_is_hidden_on_the_public_site_within_seconds() {
    let dir = tempfile_dir();
    let database = Database::new(&dir).await;
    let (sim, backend) = world(&dir, &database, 50).await;
    let base = serve(&backend).await;
    let pusher = tokio::spawn(backend.pusher.clone().run());
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok"
    );
    let link: serde_json::Value = http
        .get(format!("{base}/mentors/u000/dynamics"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(link["contact"].is_string(), "{link}");
    let requests_before = sim.stats().requests;
    let mut latencies = Vec::new();
    for i in 0..50 {
        let started = Instant::now();
        let answer = http
            .post(format!("{base}/mentors/u{i:03}/certification/revoke"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202);
        wait_until(&format!("mentor {i} hidden"), || async { !is_shown(&sim, i) }).await;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let p95 = latencies[latencies.len() * 95 / 100 - 1];
    let requests = sim.stats().requests - requests_before;
    eprintln!(
        "revoke -> hidden over 50 revocations: median {:?}, p95 {p95:?}, max {:?}; {requests} requests to the emulator ({:.1} per revocation)",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
        requests as f64 / 50.0
    );
    assert!(p95 < Duration::from_secs(2), "p95 {p95:?}");
    assert_eq!(shown(&sim), 0);
    // A renewal shows the mentor again.
    let renewed = http
        .post(format!("{base}/mentors/u007/certification/renew"))
        .json(&json!({ "valid_to": (Utc::now().date_naive() + chrono::Duration::days(730)).to_string() }))
        .send()
        .await
        .unwrap();
    assert_eq!(renewed.status(), 202);
    wait_until("the renewed mentor shown again", || async { is_shown(&sim, 7) }).await;
    assert_eq!(shown(&sim), 1);
    // The dashboard is mounted and needs its credential.
    let dashboard = http.get(format!("{base}/admin/integration/runs")).send().await.unwrap();
    assert_eq!(dashboard.status(), 401);
    // Each push is forgotten once Dynamics has it.
    wait_until("an empty push queue", || queue_empty(&backend)).await;
    pusher.abort();
    sim.shutdown().await;
    database.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_while_dynamics_is_down_waits_in_the_queue_and_is_never_lost() {
    let dir = tempfile_dir();
    let database = Database::new(&dir).await;
    let (sim, backend) = world(&dir, &database, 3).await;
    let base = serve(&backend).await;
    let http = reqwest::Client::new();
    sim.faults().set_error_rate(503, 1.0).unwrap();
    let pusher = tokio::spawn(backend.pusher.clone().run());
    let answer = http
        .post(format!("{base}/mentors/u001/certification/revoke"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    // It fails, stays queued, and is retried with backoff.
    wait_until("a second failed attempt", || attempted(&backend, 2)).await;
    assert!(is_shown(&sim, 1));
    // A restart loses nothing: the queue is in the backend's database.
    pusher.abort();
    let reopened = BackendStore::connect(&database.url).await.unwrap();
    assert_eq!(reopened.queued_pushes().await.unwrap(), 1);
    drop(reopened);
    // Dynamics back: the next attempt goes through.
    sim.faults().clear();
    let pusher = tokio::spawn(backend.pusher.clone().run());
    wait_until("mentor 1 hidden after Dynamics came back", || async {
        !is_shown(&sim, 1)
    })
    .await;
    assert!(is_shown(&sim, 0) && is_shown(&sim, 2));
    wait_until("an empty push queue", || queue_empty(&backend)).await;

    // A run holding the organisation's lock: the push waits for it instead of overlapping it.
    let lock = backend
        .sync_state
        .try_lock("hlf", "a nightly run", Duration::from_secs(600), Utc::now())
        .await
        .unwrap()
        .expect("the lock is free");
    let answer = http
        .post(format!("{base}/mentors/u002/certification/revoke"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    wait_until("an attempt refused by the held lock", || attempted(&backend, 1)).await;
    assert!(is_shown(&sim, 2));
    lock.release().await.unwrap();
    wait_until("mentor 2 hidden after the lock was released", || async {
        !is_shown(&sim, 2)
    })
    .await;
    pusher.abort();
    sim.shutdown().await;
    drop(backend);
    database.cleanup().await;
}

/// Polls `done` every 5 ms until it holds; fails the test after 30 s naming `what`.
async fn wait_until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < Duration::from_secs(30), "no {what} within 30 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn queue_empty(backend: &Backend) -> bool {
    backend.store.queued_pushes().await.unwrap() == 0
}

/// Whether the first queued push has failed at least `attempts` times.
async fn attempted(backend: &Backend, attempts: u32) -> bool {
    let waiting = backend
        .store
        .due_pushes(Utc::now() + chrono::Duration::days(1), 10)
        .await
        .unwrap();
    waiting.first().is_some_and(|p| p.attempts >= attempts)
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("example-backend-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
