//! An example backend that links the sync crates as a library, as the peer-mentor app's backend does: its own
//! tables ([`store`]), an [`sync_store::AppStore`] over them, the admin dashboard mounted under
//! `/admin/integration`, the nightly sync per organisation on its schedule, and certification events pushed to
//! Dynamics at once ([`pusher`]).
//!
//! Routes: `GET /healthz`; `POST /mentors/{id}/certification/revoke`; `POST /mentors/{id}/certification/renew`
//! (JSON `{"valid_to": "YYYY-MM-DD"}`); `GET /mentors/{id}/dynamics` (the Dynamics contact the mentor is linked to);
//! the dashboard under `/admin/integration`.

pub mod pusher;
pub mod store;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use chrono::{NaiveDate, Utc};
use integration_config::{ExposeSecret, IntegrationConfig};
use serde::Deserialize;
use sync_engine::{SyncService, SystemClock};

pub use pusher::Pusher;
pub use store::{BackendStore, Certificate, User};

/// The backend: its store, one sync service per organisation, the pusher.
#[derive(Clone)]
pub struct Backend {
    /// The backend's own tables.
    pub store: BackendStore,
    /// The sync's own state (watermarks, links, run log).
    pub sync_state: sync_store::Store,
    /// One service per organisation.
    pub services: Arc<BTreeMap<String, SyncService>>,
    /// The push queue's drainer.
    pub pusher: Pusher,
    config: IntegrationConfig,
}

/// How the backend is built.
#[derive(Debug, Clone)]
pub struct BackendOptions {
    /// Extra root certificates for Dynamics and Azure AD (the emulator's, in tests).
    pub extra_root_certificates: Vec<Vec<u8>>,
    /// A failed push waits this long, doubled per failure...
    pub push_backoff: Duration,
    /// ...at most this long.
    pub push_backoff_max: Duration,
}

impl Default for BackendOptions {
    fn default() -> Self {
        Self {
            extra_root_certificates: Vec::new(),
            push_backoff: Duration::from_secs(5),
            push_backoff_max: Duration::from_secs(300),
        }
    }
}

impl Backend {
    /// Opens the backend's database at `database_url` and the sync state at the configuration's `store.url`.
    pub async fn new(config: IntegrationConfig, database_url: &str, options: BackendOptions) -> anyhow::Result<Self> {
        let store = BackendStore::connect(database_url).await?;
        let sync_state = sync_store::Store::connect(config.store.url.expose_secret()).await?;
        let mut services = BTreeMap::new();
        for organisation in &config.organisations {
            sync_state
                .upsert_organisation(&organisation.id, &organisation.name)
                .await?;
            let client = dynamics_client::DynamicsClient::for_organisation(
                organisation,
                dynamics_client::ClientOptions {
                    extra_root_certificates: options.extra_root_certificates.clone(),
                    retry: config.retry.clone(),
                    rate_limit: config.rate_limit.clone(),
                    ..dynamics_client::ClientOptions::default()
                },
            )?;
            let app: Arc<dyn sync_store::AppStore> = Arc::new(store.clone());
            let service = SyncService::new(
                organisation,
                &config,
                client,
                app,
                sync_state.clone(),
                Arc::new(SystemClock),
            )?;
            services.insert(organisation.id.clone(), service);
        }
        let services = Arc::new(services);
        let pusher = Pusher::new(
            store.clone(),
            services.clone(),
            options.push_backoff,
            options.push_backoff_max,
        );
        Ok(Self {
            store,
            sync_state,
            services,
            pusher,
            config,
        })
    }

    /// The backend's router with the dashboard nested under `/admin/integration`.
    pub fn router(&self) -> anyhow::Result<axum::Router> {
        let dashboard = dashboard::Dashboard::new(
            self.config.clone(),
            self.sync_state.clone(),
            self.services.values().cloned().collect(),
            dashboard::DashboardOptions::default(),
        )?;
        Ok(axum::Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/mentors/{id}/certification/revoke", post(revoke))
            .route("/mentors/{id}/certification/renew", post(renew))
            .route("/mentors/{id}/dynamics", get(dynamics_link))
            .with_state(self.clone())
            .nest("/admin/integration", dashboard.router()))
    }

    /// Starts the background tasks: the pusher, and each organisation's nightly sync on the configured schedule.
    pub fn spawn_background(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = vec![tokio::spawn(self.pusher.clone().run())];
        for service in self.services.values() {
            let service = service.clone();
            let schedule = self.config.schedule;
            tasks.push(tokio::spawn(async move {
                loop {
                    let next = schedule.next_after(Utc::now());
                    tokio::time::sleep((next - Utc::now()).to_std().unwrap_or(Duration::ZERO)).await;
                    match service.run().await {
                        Ok(report) => {
                            tracing::info!(org = service.organisation_id(), status = ?report.status, "nightly sync")
                        }
                        Err(e) => tracing::error!(org = service.organisation_id(), error = %e, "nightly sync failed"),
                    }
                }
            }));
        }
        tasks
    }
}

/// Changes every certificate of a user, then queues the push.
async fn change_certificates(
    backend: &Backend,
    user_id: &str,
    change: impl Fn(&mut Certificate),
) -> Result<StatusCode, (StatusCode, String)> {
    let failed = |e: sync_store::Error| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let Some(org) = backend.store.org_of(user_id).await.map_err(failed)? else {
        return Err((StatusCode::NOT_FOUND, format!("no user {user_id}")));
    };
    let now = Utc::now();
    for mut certificate in backend.store.certificates_of(user_id).await.map_err(failed)? {
        change(&mut certificate);
        certificate.changed = now;
        backend.store.upsert_certificate(&certificate).await.map_err(failed)?;
    }
    // Durable before the answer: the event survives a crash and a Dynamics outage.
    backend.pusher.push(&org, user_id).await.map_err(failed)?;
    Ok(StatusCode::ACCEPTED)
}

async fn revoke(State(backend): State<Backend>, Path(id): Path<String>) -> Result<StatusCode, (StatusCode, String)> {
    let now = Utc::now();
    change_certificates(&backend, &id, |c| {
        c.revoked.get_or_insert(now);
    })
    .await
}

#[derive(Deserialize)]
struct Renewal {
    valid_to: NaiveDate,
}

async fn renew(
    State(backend): State<Backend>,
    Path(id): Path<String>,
    Json(renewal): Json<Renewal>,
) -> Result<StatusCode, (StatusCode, String)> {
    change_certificates(&backend, &id, |c| {
        c.revoked = None;
        c.valid_to = renewal.valid_to;
    })
    .await
}

/// Which Dynamics contact a mentor is linked to, as the app's profile page would show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DynamicsLink {
    /// The mentor.
    pub mentor: String,
    /// The linked contact, once the sync found it.
    pub contact: Option<uuid::Uuid>,
}

/// The link of `mentor` in `org`, read through the [`sync_store::AppStore`] (so a unit test can use
/// `MockAppStore`); `None` when the mentor does not exist.
pub async fn link_of(
    app: &dyn sync_store::AppStore,
    org: &str,
    mentor: &str,
) -> sync_store::Result<Option<DynamicsLink>> {
    Ok(app
        .mentors(org, &[mentor.to_owned()])
        .await?
        .into_iter()
        .next()
        .map(|snapshot| DynamicsLink {
            mentor: snapshot.mentor.id,
            contact: snapshot.mentor.dynamics_contact_id,
        }))
}

async fn dynamics_link(
    State(backend): State<Backend>,
    Path(id): Path<String>,
) -> Result<Json<DynamicsLink>, (StatusCode, String)> {
    let failed = |e: sync_store::Error| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let Some(org) = backend.store.org_of(&id).await.map_err(failed)? else {
        return Err((StatusCode::NOT_FOUND, format!("no user {id}")));
    };
    match link_of(&backend.store, &org, &id).await.map_err(failed)? {
        Some(link) => Ok(Json(link)),
        None => Err((StatusCode::NOT_FOUND, format!("no user {id}"))),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use sync_store::{Mentor, MentorSnapshot, MockAppStore};

    use super::*;

    fn snapshot(contact: Option<uuid::Uuid>) -> MentorSnapshot {
        MentorSnapshot {
            mentor: Mentor {
                id: "u1".into(),
                organisation_id: "hlf".into(),
                member_number: Some("1001".into()),
                given_name: None,
                family_name: None,
                email: None,
                phone: None,
                coordinator_email: None,
                dynamics_contact_id: contact,
                updated_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            },
            certifications: Vec::new(),
            membership: None,
        }
    }

    #[tokio::test]
    async fn the_link_is_read_through_the_app_store_of_the_mentor_s_organisation() {
        let contact = uuid::Uuid::from_u128(42);
        let mut app = MockAppStore::new();
        app.expect_mentors()
            .withf(|org, ids| org == "hlf" && ids == ["u1".to_owned()])
            .times(1)
            .returning(move |_, _| Ok(vec![snapshot(Some(contact))]));
        let link = link_of(&app, "hlf", "u1").await.unwrap();
        assert_eq!(
            link,
            Some(DynamicsLink {
                mentor: "u1".into(),
                contact: Some(contact)
            })
        );
    }

    #[tokio::test]
    async fn an_unknown_mentor_has_no_link_and_a_store_failure_is_passed_on() {
        let mut app = MockAppStore::new();
        app.expect_mentors().times(1).returning(|_, _| Ok(Vec::new()));
        assert_eq!(link_of(&app, "hlf", "nobody").await.unwrap(), None);
        let mut app = MockAppStore::new();
        app.expect_mentors().returning(|_, _| {
            Err(sync_store::Error::Refused {
                reason: "read-only replica".into(),
            })
        });
        assert!(link_of(&app, "hlf", "u1").await.is_err());
    }
}
