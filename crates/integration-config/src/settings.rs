//! The validated settings every other crate reads. Built only by [`crate::IntegrationConfig::load`] (or by hand in
//! tests and the demo); once built, every value is known to be usable.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use chrono::{NaiveDate, NaiveTime};
use chrono_tz::Tz;
use field_mapping::{ConflictStrategy, FieldMapping};
use secrecy::SecretString;

use crate::secret::SecretSource;
use url::Url;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct IntegrationConfig {
    /// The organisations that sync, each with its own Dynamics instance and credentials.
    pub organisations: Vec<OrganisationConfig>,
    /// When the worker's daemon mode runs.
    pub schedule: Schedule,
    /// How the sync reads and writes.
    pub sync: SyncSettings,
    /// How conflicts on shared fields are resolved.
    pub conflicts: ConflictPolicy,
    /// Dynamics' service-protection limits, which the client stays under.
    pub rate_limit: RateLimitSettings,
    /// Retry limits for requests and for failed records.
    pub retry: RetrySettings,
    /// Where coordinator and admin notifications go.
    pub notifications: NotificationSettings,
    /// The admin dashboard.
    pub dashboard: DashboardSettings,
    /// The database holding the app-side reference schema and the sync state.
    pub store: StoreSettings,
    /// Health and alert thresholds.
    pub health: HealthSettings,
    /// The local certification status cache.
    pub cache: CacheSettings,
    /// How long personal data in logs and queues is kept.
    pub retention: RetentionSettings,
    /// The accounting export.
    pub accounting: AccountingSettings,
}

/// One organisation served by the app that syncs with a Dynamics instance.
#[derive(Debug, Clone)]
pub struct OrganisationConfig {
    /// The app's organisation id; only mentors of this organisation are synced with these credentials.
    pub id: String,
    /// A human name for logs, the dashboard and notifications.
    pub name: String,
    /// The prefix of the credential variables, e.g. `DYNAMICS` for `DYNAMICS_CLIENT_SECRET`.
    pub credential_prefix: String,
    /// The Dynamics instance and the Azure AD app registration to reach it.
    pub credentials: DynamicsCredentials,
    /// The organisation's local time zone: a certification expires when the local date is past its expiry date.
    pub time_zone: Tz,
    /// The language of notifications.
    pub language: Language,
    /// The field mapping in effect for this organisation.
    pub mapping: FieldMapping,
    /// Where the mapping came from (a path or `builtin:hlf-default`), for `config check` and the dashboard.
    pub mapping_source: String,
    /// OData `$filter` expressions by table logical name, limiting which rows are read.
    pub filters: BTreeMap<String, String>,
    /// When the client secret expires, if HLF IT has said; alerts warn ahead of it.
    pub client_secret_expires_on: Option<NaiveDate>,
    /// Extra root certificates (PEM) to trust for Azure AD and Dynamics, e.g. a TLS-inspecting proxy's or the
    /// local emulator's; empty when the system's roots suffice.
    pub extra_root_certificates: Vec<Vec<u8>>,
    /// The file those certificates came from (`ca_certificate_file`, made absolute), for `config check`.
    pub ca_certificate_file: Option<String>,
}

/// Everything needed to obtain a token for, and call, one Dynamics instance.
#[derive(Debug, Clone)]
pub struct DynamicsCredentials {
    /// The Azure AD tenant (GUID or verified domain).
    pub tenant_id: String,
    /// The app registration's application (client) id.
    pub client_id: String,
    /// The client secret, from the variable or read again from its file at each token request. Its `Debug` prints
    /// no value; expose it only to the token request.
    pub client_secret: SecretSource,
    /// The Dynamics instance.
    pub instance_url: InstanceUrl,
    /// The Azure AD authority, `https://login.microsoftonline.com` unless a sovereign cloud is used.
    pub authority_host: Url,
}

/// A validated Dynamics instance address: https (or http on loopback), a Dynamics host, no path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceUrl(pub(crate) Url);

/// When the daemon runs a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Once a day at a local wall-clock time.
    Nightly {
        /// The local time of day.
        at: NaiveTime,
        /// The time zone the time is in.
        time_zone: Tz,
    },
    /// Every fixed interval.
    Every(Duration),
}

/// A notification language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    /// Norwegian bokmål, HLF's default.
    Norwegian,
    /// English.
    English,
}

/// How the sync reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSettings {
    /// Use Dynamics change tracking where the table has it and no filter applies.
    pub change_tracking: bool,
    /// How far before the last watermark a `modifiedon` query starts, to catch rows committed late.
    pub overlap: Duration,
    /// Rows per page (`Prefer: odata.maxpagesize`), at most 5,000.
    pub page_size: u32,
    /// Operations in the first `$batch`; the size grows while no throttling is seen.
    pub batch_size_initial: u32,
    /// The largest `$batch`, at most 1,000.
    pub batch_size_max: u32,
    /// Requests the sync keeps in flight at once.
    pub parallel_requests: u32,
}

/// The global conflict strategy and per-field overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictPolicy {
    /// The strategy for fields without an override.
    pub default: ConflictStrategy,
    /// Overrides by app field name.
    pub fields: BTreeMap<String, ConflictStrategy>,
}

/// Dynamics' service-protection limits (per user, per web server, over a sliding window) and the headroom kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Requests allowed per window (a `$batch` counts once).
    pub requests_per_window: u32,
    /// Combined execution time allowed per window.
    pub execution_time_per_window: Duration,
    /// The sliding window.
    pub window: Duration,
    /// Concurrent requests allowed.
    pub max_concurrent_requests: u32,
    /// The share of each limit left unused, for other clients of the same application user.
    pub headroom_percent: u8,
}

/// Retry limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySettings {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// The first backoff before jitter; it doubles each attempt.
    pub initial_backoff: Duration,
    /// The longest single backoff.
    pub max_backoff: Duration,
    /// The most time one request may spend waiting and retrying.
    pub total_budget: Duration,
    /// The timeout of one HTTP request.
    pub request_timeout: Duration,
    /// Runs a failed record is retried in before it is marked dead.
    pub record_max_attempts: u32,
}

/// Notification channels.
#[derive(Debug, Clone)]
pub struct NotificationSettings {
    /// Who receives admin alerts by email.
    pub admin_emails: Vec<String>,
    /// Delivery attempts before a notification is given up and shown as undeliverable.
    pub max_delivery_attempts: u32,
    /// The SMTP channel, if configured.
    pub email: Option<EmailSettings>,
    /// The webhook channel, if configured.
    pub webhook: Option<WebhookSettings>,
}

/// The SMTP channel.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// The SMTP server.
    pub smtp_host: String,
    /// Its port.
    pub smtp_port: u16,
    /// How the connection is secured.
    pub tls: SmtpTls,
    /// The sender address.
    pub from: String,
    /// The SMTP user and password, if the server needs them.
    pub login: Option<(String, SecretSource)>,
}

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Upgrade with STARTTLS (port 587).
    StartTls,
    /// TLS from the start (port 465).
    Tls,
    /// Plain text; accepted only for a loopback relay.
    None,
}

/// The webhook channel: a JSON POST per notification.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Where to POST.
    pub url: Url,
    /// A shared secret to sign the body with, if configured.
    pub secret: Option<SecretSource>,
}

/// The admin dashboard.
#[derive(Debug, Clone)]
pub struct DashboardSettings {
    /// Where `sync-worker serve` listens.
    pub bind: SocketAddr,
    /// The admin credential; `None` when its variable is unset, and then the dashboard refuses to start.
    pub auth: Option<DashboardAuth>,
    /// The variable the credential is read from, for error messages.
    pub credential_env: String,
    /// A bearer token that may read `/metrics` and nothing else, so a Prometheus scraper holds no credential that
    /// can act; with the variable that holds it. `None` when not configured or the variable is unset.
    pub metrics_token: Option<(String, SecretSource)>,
    /// The certificate chain and private key (PEM files, absolute paths) `serve` speaks TLS with, when set.
    pub tls: Option<DashboardTls>,
    /// The operator's statement that a TLS-terminating proxy forwards to the dashboard, which may then listen on a
    /// non-loopback address in plain HTTP.
    pub behind_tls_proxy: bool,
}

/// The dashboard's own TLS: a certificate chain and its private key, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardTls {
    /// The certificate chain, leaf first.
    pub cert_file: std::path::PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: std::path::PathBuf,
}

impl DashboardSettings {
    /// Why `serve` must not listen as configured: a non-loopback address in plain HTTP (the credential would cross
    /// the network in clear text) without TLS or a declared TLS proxy. `None` when it may.
    pub fn clear_text_problem(&self) -> Option<String> {
        if self.bind.ip().is_loopback() || self.tls.is_some() || self.behind_tls_proxy {
            return None;
        }
        Some(format!(
            "dashboard.bind {} is not a loopback address, and the dashboard would speak plain HTTP there (its \
             credential would cross the network in clear text); set dashboard.tls_cert_file and \
             dashboard.tls_key_file, or dashboard.behind_tls_proxy = true when a TLS-terminating proxy (an ingress, \
             nginx) is the only way to it",
            self.bind
        ))
    }
}

/// The admin credential every dashboard route but the liveness probe requires.
#[derive(Debug, Clone)]
pub enum DashboardAuth {
    /// `Authorization: Bearer <token>`.
    Bearer(SecretSource),
    /// HTTP basic authentication.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: SecretSource,
    },
}

/// The sync-state database.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// A `sqlite:` or `postgres://` URL. It may carry a password, so it is kept secret.
    pub url: SecretString,
}

/// Health and alert thresholds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSettings {
    /// The last successful sync must be more recent than this.
    pub freshness: Duration,
    /// Consecutive failed runs that raise an alert.
    pub failed_runs_alert: u32,
    /// Days before the client secret expires at which to warn, largest first.
    pub secret_expiry_warn_days: Vec<u32>,
    /// How long Dynamics keeps delta tokens (`ExpireChangeTrackingInDays`).
    pub delta_token_lifetime: Duration,
}

/// The local certification status cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// Cached status older than this is flagged stale.
    pub stale_after: Duration,
}

/// The accounting export (the card's AccountingExporterService).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AccountingSettings {
    /// Whether `run` and `daemon` export approved postings after each organisation's sync and reconcile them.
    pub enabled: bool,
}

/// Retention of personal data in run logs, failed-record payloads and sent notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionSettings {
    /// How long to keep them.
    pub period: Duration,
}

impl InstanceUrl {
    /// Validates an instance address as configuration loading does: https (or http on loopback), a Dynamics host,
    /// no path. The error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        crate::validate::parse_instance_url(text)
    }

    /// The instance root, e.g. `https://hlf.crm4.dynamics.com/`.
    pub fn as_url(&self) -> &Url {
        &self.0
    }

    /// The Web API v9.2 base, e.g. `https://hlf.crm4.dynamics.com/api/data/v9.2/`.
    pub fn api_base(&self) -> Url {
        let mut url = self.0.clone();
        url.set_path("/api/data/v9.2/");
        url
    }

    /// The OAuth scope for client credentials: `<instance>/.default`.
    pub fn scope(&self) -> String {
        format!("{}.default", self.0)
    }

    /// Whether the instance is on this machine (the emulator).
    pub fn is_loopback(&self) -> bool {
        crate::validate::is_loopback(&self.0)
    }
}

impl std::fmt::Display for InstanceUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Language {
    /// The configuration spelling: `nb` or `en`.
    pub fn code(self) -> &'static str {
        match self {
            Language::Norwegian => "nb",
            Language::English => "en",
        }
    }
}

impl ConflictPolicy {
    /// The strategy for one app field.
    pub fn strategy_for(&self, field: &str) -> ConflictStrategy {
        self.fields.get(field).copied().unwrap_or(self.default)
    }
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            change_tracking: true,
            overlap: Duration::from_secs(300),
            page_size: 5000,
            batch_size_initial: 500,
            batch_size_max: 1000,
            parallel_requests: 4,
        }
    }
}

impl Default for ConflictPolicy {
    fn default() -> Self {
        ConflictPolicy {
            default: ConflictStrategy::NewestWins,
            fields: BTreeMap::new(),
        }
    }
}

impl Default for RateLimitSettings {
    /// Microsoft's documented limits: 6,000 requests and 1,200 s of execution time per 5 minutes, 52 concurrent.
    fn default() -> Self {
        RateLimitSettings {
            requests_per_window: 6000,
            execution_time_per_window: Duration::from_secs(1200),
            window: Duration::from_secs(300),
            max_concurrent_requests: 52,
            headroom_percent: 10,
        }
    }
}

impl Default for RetrySettings {
    /// Like Microsoft's .NET client: up to 10 attempts; bounded backoff; a 15-minute budget per request.
    fn default() -> Self {
        RetrySettings {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            total_budget: Duration::from_secs(900),
            request_timeout: Duration::from_secs(120),
            record_max_attempts: 5,
        }
    }
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            freshness: Duration::from_secs(24 * 3600),
            failed_runs_alert: 2,
            secret_expiry_warn_days: vec![30, 14, 7, 1],
            delta_token_lifetime: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            stale_after: Duration::from_secs(26 * 3600),
        }
    }
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            period: Duration::from_secs(90 * 24 * 3600),
        }
    }
}
