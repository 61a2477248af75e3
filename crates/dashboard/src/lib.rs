//! IntegrationConfigDashboard: the admin dashboard of the HLF Dynamics sync, as an [`axum::Router`] a backend mounts
//! under any prefix, or that `sync-worker serve` serves on its own.
//!
//! Pages (HTML, rendered on the server, no JavaScript) and the same data as JSON:
//!
//! | page | JSON | what it is for |
//! | --- | --- | --- |
//! | `/` | `/api/overview`, `/api/health` | status per organisation with the health monitor's reasons, last successful sync, open alerts, a chart of the last 30 runs |
//! | `/runs` | `/api/runs` | the run log with each run's metrics |
//! | `/failures` | `/api/failures` | failed records with their reason and attempts; requeue or dismiss |
//! | `/conflicts` | `/api/conflicts` | both values of a conflicting shared field with their times; pick a side |
//! | `/config` | `/api/config` | effective settings, the mapping table and the schedule; secrets only as "set" |
//! | `/cache` | `/api/cache` | the certification cache with its as-of times and stale flags |
//! | `/alerts` | `/api/alerts` | active alerts; acknowledge |
//! | `/export` | | the CSV fallback: download an organisation's full or delta export for the Dynamics Import Data wizard |
//!
//! Pages are in Norwegian bokmål or English: the reader's choice from the switch on every page (`GET /lang/nb` or
//! `/lang/en`, a plain link that sets the `hlf_dashboard_lang` cookie and goes back), else the browser's
//! `Accept-Language` when it names one of the two, else the first organisation's `language`. Times are shown in the
//! first organisation's `time_zone` with the zone's abbreviation (`02:00 CET`, `02:00 CEST`) and how long ago beside
//! them; the JSON API keeps its English field values and UTC RFC 3339 times. Texts that come from elsewhere (an error
//! from Dynamics, a stored alert message) stay English and are marked `lang="en"` on a bokmål page.
//!
//! The status on the overview is [`health_monitor::HealthMonitor::check`]'s verdict without a Dynamics call
//! ([`health_monitor::Probe::Skip`]), so the dashboard, `health-check` and the metrics always agree; `/api/health`
//! returns each organisation's whole [`health_monitor::OrganisationHealth`]. `GET /metrics` serves
//! [`health_monitor::render_metrics`] in the Prometheus text format (a scraper sends the bearer token). Stale flags
//! use the one definition of staleness, [`sync_store::Staleness`].
//!
//! List pages take `?org=ID` to show one organisation. Actions are POSTs: `/failures/requeue` and
//! `/failures/dismiss` (form fields `org`, `key`, `direction`), `/conflicts/{id}/resolve` (`side` = `app` or
//! `dynamics`, optional `apply_now`), `/alerts/{id}/acknowledge` (`org`); each also exists under `/api/` taking a
//! JSON body with the same fields. `POST /export` (`org`, `kind` = `full` or `delta`, `part` = the 1-based file
//! number or `errors`) answers one file of a [`csv_fallback::CsvExporter`] export as a download; it is a POST only
//! so that it carries the CSRF token, and changes nothing. `GET /api/session` returns the CSRF token for API
//! clients. [`ROUTES`] lists every route.
//!
//! Access: every route but `GET /healthz` needs the admin credential of `[dashboard]` in the configuration. With
//! `auth = "basic"` that is the user name and password; with `auth = "bearer"` it is `Authorization: Bearer TOKEN`,
//! or, for a browser's login prompt, basic authentication with any user name and the token as the password. Both
//! are compared in constant time. Every POST needs a CSRF token (the hidden `csrf` field of the page's forms, or the
//! `X-CSRF-Token` header), an HMAC under a secret made at start, and is refused when the browser says it comes from
//! another site (`Origin`, `Sec-Fetch-Site`). GET never changes anything. Every response carries a strict
//! Content-Security-Policy (no script at all), `X-Content-Type-Options`, `X-Frame-Options`, `Referrer-Policy` and
//! `Cache-Control: no-store`.
//!
//! Resolving a conflict goes through [`sync_engine::SyncService::resolve_conflict`], so the chosen value is written
//! by the next run (or at once, with `apply_now`). Requeue and dismiss go through the service too. Secrets are never
//! shown, in a page, the JSON, the metrics or a CSV file. Names appear only on the failed-record and conflict pages,
//! where an admin needs them to find the person; member numbers also on the cache page, in `/api/health`'s sample of
//! mismatching mentors and in the CSV files, never in a log line.
//!
//! ```no_run
//! # async fn mount(config: integration_config::IntegrationConfig, store: sync_store::Store,
//! #                services: Vec<sync_engine::SyncService>) -> Result<(), dashboard::Error> {
//! let dashboard = dashboard::Dashboard::new(config, store, services, dashboard::DashboardOptions::default())?;
//! let app: axum::Router = axum::Router::new().nest("/admin/integration", dashboard.router());
//! # let _ = app; Ok(()) }
//! ```

mod assets;
mod auth;
mod chart;
mod csrf;
mod error;
mod i18n;
mod pages;
mod routes;
mod security;
mod tls;
mod view;

use std::collections::BTreeMap;
use std::sync::Arc;

use health_monitor::HealthMonitor;
use integration_config::{DashboardAuth, ExposeSecret, IntegrationConfig};
use sync_engine::{Clock, SyncService, SystemClock};
use sync_store::{AppStore, Store};

pub use error::{Error, Result};
pub use routes::{ROUTES, Route, RouteMethod};
pub use tls::ServerTls;

/// The dashboard: configuration, store and one sync service per organisation. Cheap to clone.
#[derive(Clone)]
pub struct Dashboard {
    pub(crate) shared: Arc<Shared>,
}

/// Optional settings of a [`Dashboard`].
#[derive(Debug, Default)]
pub struct DashboardOptions {
    /// The clock for "now" (staleness, CSRF token age, the page's time stamp); the system clock when `None`.
    pub clock: Option<Arc<dyn Clock>>,
    /// The key CSRF tokens are signed with; 32 random bytes made at start when `None`. Set it only in tests, or to
    /// share tokens between replicas behind one load balancer.
    pub csrf_key: Option<[u8; 32]>,
}

pub(crate) struct Shared {
    pub(crate) config: IntegrationConfig,
    pub(crate) store: Store,
    pub(crate) services: BTreeMap<String, SyncService>,
    pub(crate) credential: auth::Credential,
    pub(crate) csrf: csrf::CsrfKey,
    pub(crate) clock: Arc<dyn Clock>,
    /// Judges each organisation for the overview, `/api/health` and `/metrics`.
    pub(crate) monitor: HealthMonitor,
    /// The app's mentors, for the health monitor's mismatch check and the CSV export.
    pub(crate) app: Arc<dyn AppStore>,
    /// Failed sign-ins by client address, to slow a guesser down.
    pub(crate) sign_in_failures: auth::SignInFailures,
    /// The read-only token that opens `/metrics` and nothing else, when configured.
    pub(crate) metrics_token: Option<auth::Credential>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("organisations", &self.shared.services.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Dashboard {
    /// A dashboard over `store` for the organisations of `config`, with one service per organisation (each
    /// organisation's own, as `sync-worker` builds them). Fails when `[dashboard]` has no credential, or when an
    /// organisation of the configuration has no service.
    pub fn new(
        config: IntegrationConfig,
        store: Store,
        services: Vec<SyncService>,
        options: DashboardOptions,
    ) -> Result<Self> {
        let credential = match &config.dashboard.auth {
            Some(auth) => {
                let length = auth::secret_length(auth);
                if length < auth::MIN_CREDENTIAL_LENGTH {
                    return Err(Error::WeakCredential {
                        variable: config.dashboard.credential_env.clone(),
                        length,
                        minimum: auth::MIN_CREDENTIAL_LENGTH,
                    });
                }
                auth::Credential::new(auth)
            }
            None => {
                return Err(Error::NoCredential {
                    variable: config.dashboard.credential_env.clone(),
                });
            }
        };
        let metrics_token = match &config.dashboard.metrics_token {
            Some((variable, token)) => {
                let length = token.loaded().expose_secret().chars().count();
                if length < auth::MIN_CREDENTIAL_LENGTH {
                    return Err(Error::WeakCredential {
                        variable: variable.clone(),
                        length,
                        minimum: auth::MIN_CREDENTIAL_LENGTH,
                    });
                }
                Some(auth::Credential::new(&DashboardAuth::Bearer(token.clone())))
            }
            None => None,
        };
        let services: BTreeMap<String, SyncService> = services
            .into_iter()
            .map(|s| (s.organisation_id().to_owned(), s))
            .collect();
        if let Some(missing) = config.organisations.iter().find(|o| !services.contains_key(&o.id)) {
            return Err(Error::NoService {
                organisation: missing.id.clone(),
            });
        }
        let csrf = match options.csrf_key {
            Some(key) => csrf::CsrfKey::new(key),
            None => csrf::CsrfKey::random()?,
        };
        let clock = options.clock.unwrap_or_else(|| Arc::new(SystemClock));
        // The sync store's reference schema holds the app's mentors, as the pages that name people already read
        // them.
        let app: Arc<dyn AppStore> = Arc::new(store.clone());
        let monitor = HealthMonitor::new(&config, store.clone(), app.clone(), clock.clone());
        Ok(Dashboard {
            shared: Arc::new(Shared {
                config,
                store,
                services,
                credential,
                csrf,
                clock,
                monitor,
                app,
                sign_in_failures: auth::SignInFailures::default(),
                metrics_token,
            }),
        })
    }

    /// The router, to serve as it is or to `nest` under a prefix: links, forms and redirects follow the prefix.
    pub fn router(&self) -> axum::Router {
        routes::router(self.shared.clone())
    }

    /// Serves the dashboard on `listener` until `shutdown` completes.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        // The client's address, for the failed sign-in log and limit.
        axum::serve(
            listener,
            self.router()
                .into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
    }

    /// Serves the dashboard over HTTPS on `listener` until `shutdown` completes, then lets requests in flight finish
    /// for up to 10 seconds. Every answer carries `Strict-Transport-Security`.
    pub async fn serve_tls(
        &self,
        listener: tokio::net::TcpListener,
        tls: ServerTls,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = self.router().layer(axum::middleware::map_response(
            |mut response: axum::response::Response| async move {
                response.headers_mut().insert(
                    axum::http::header::STRICT_TRANSPORT_SECURITY,
                    axum::http::HeaderValue::from_static("max-age=31536000"),
                );
                response
            },
        ));
        let handle = axum_server::Handle::new();
        let stopper = handle.clone();
        let stop = tokio::spawn(async move {
            shutdown.await;
            stopper.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
        });
        let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(
            axum_server::tls_rustls::RustlsConfig::from_config(tls.config),
        );
        let served = axum_server::from_tcp(listener.into_std()?)
            .acceptor(acceptor)
            .handle(handle)
            .serve(router.into_make_service_with_connect_info::<std::net::SocketAddr>())
            .await;
        stop.abort();
        served
    }
}
