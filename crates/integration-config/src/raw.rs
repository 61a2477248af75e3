//! The configuration file as written: every value optional, numbers wide and enumerations as text, so that
//! validation can see every problem at once instead of stopping at the first one serde meets.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub(crate) struct RawConfig {
    pub(crate) mapping: Option<String>,
    #[serde(default)]
    pub(crate) organisations: Vec<RawOrganisation>,
    #[serde(default)]
    pub(crate) schedule: RawSchedule,
    #[serde(default)]
    pub(crate) sync: RawSync,
    #[serde(default)]
    pub(crate) conflicts: RawConflicts,
    #[serde(default)]
    pub(crate) rate_limit: RawRateLimit,
    #[serde(default)]
    pub(crate) retry: RawRetry,
    #[serde(default)]
    pub(crate) notifications: RawNotifications,
    #[serde(default)]
    pub(crate) dashboard: RawDashboard,
    #[serde(default)]
    pub(crate) store: RawStore,
    #[serde(default)]
    pub(crate) health: RawHealth,
    #[serde(default)]
    pub(crate) cache: RawCache,
    #[serde(default)]
    pub(crate) retention: RawRetention,
    #[serde(default)]
    pub(crate) accounting: RawAccounting,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub(crate) struct RawOrganisation {
    pub(crate) id: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) credential_prefix: Option<String>,
    pub(crate) time_zone: Option<String>,
    pub(crate) language: Option<String>,
    pub(crate) mapping: Option<String>,
    pub(crate) authority_host: Option<String>,
    pub(crate) ca_certificate_file: Option<String>,
    #[cfg_attr(test, schemars(with = "Option<String>"))]
    pub(crate) client_secret_expires_on: Option<toml::value::Datetime>,
    #[serde(default)]
    pub(crate) filters: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub(crate) struct RawSchedule {
    pub(crate) nightly_at: Option<String>,
    pub(crate) time_zone: Option<String>,
    pub(crate) every_minutes: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub(crate) struct RawSync {
    pub(crate) change_tracking: Option<bool>,
    pub(crate) overlap_seconds: Option<i64>,
    pub(crate) page_size: Option<i64>,
    pub(crate) batch_size_initial: Option<i64>,
    pub(crate) batch_size_max: Option<i64>,
    pub(crate) parallel_requests: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub(crate) struct RawConflicts {
    pub(crate) default: Option<String>,
    #[serde(default)]
    pub(crate) fields: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub(crate) struct RawRateLimit {
    pub(crate) requests_per_window: Option<i64>,
    pub(crate) execution_seconds_per_window: Option<i64>,
    pub(crate) window_seconds: Option<i64>,
    pub(crate) max_concurrent_requests: Option<i64>,
    pub(crate) headroom_percent: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub(crate) struct RawRetry {
    pub(crate) max_attempts: Option<i64>,
    pub(crate) initial_backoff_ms: Option<i64>,
    pub(crate) max_backoff_seconds: Option<i64>,
    pub(crate) total_budget_seconds: Option<i64>,
    pub(crate) request_timeout_seconds: Option<i64>,
    pub(crate) record_max_attempts: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub(crate) struct RawNotifications {
    #[serde(default)]
    pub(crate) admin_emails: Vec<String>,
    pub(crate) max_delivery_attempts: Option<i64>,
    pub(crate) email: Option<RawEmail>,
    pub(crate) webhook: Option<RawWebhook>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub(crate) struct RawEmail {
    pub(crate) smtp_host: Option<String>,
    pub(crate) smtp_port: Option<i64>,
    pub(crate) tls: Option<String>,
    pub(crate) from: Option<String>,
    pub(crate) username: Option<String>,
    pub(crate) password_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub(crate) struct RawWebhook {
    pub(crate) url: Option<String>,
    pub(crate) secret_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub(crate) struct RawDashboard {
    pub(crate) bind: Option<String>,
    pub(crate) auth: Option<String>,
    pub(crate) username: Option<String>,
    pub(crate) credential_env: Option<String>,
    pub(crate) metrics_credential_env: Option<String>,
    pub(crate) tls_cert_file: Option<String>,
    pub(crate) tls_key_file: Option<String>,
    pub(crate) behind_tls_proxy: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub(crate) struct RawStore {
    pub(crate) url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub(crate) struct RawHealth {
    pub(crate) freshness_hours: Option<i64>,
    pub(crate) failed_runs_alert: Option<i64>,
    pub(crate) secret_expiry_warn_days: Option<Vec<i64>>,
    pub(crate) delta_token_lifetime_days: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub(crate) struct RawCache {
    pub(crate) stale_after_hours: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub(crate) struct RawRetention {
    pub(crate) days: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub(crate) struct RawAccounting {
    pub(crate) enabled: Option<bool>,
}
