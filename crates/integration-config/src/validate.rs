//! From the raw file and the environment to [`IntegrationConfig`], collecting every problem on the way.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

use chrono::{NaiveDate, NaiveTime};
use chrono_tz::Tz;
use field_mapping::{ConflictStrategy, FieldMapping, HLF_DEFAULT_MAPPING, Owner, Problem};
use secrecy::{ExposeSecret, SecretString};
use url::{Host, Url};

use crate::Environment;
use crate::raw::*;
use crate::secret::SecretSource;
use crate::settings::*;

/// The mapping name that selects the mapping compiled into the binary.
pub const BUILTIN_MAPPING: &str = "builtin:hlf-default";
/// The prefix of the credential variables when an organisation does not name its own.
pub const DEFAULT_CREDENTIAL_PREFIX: &str = "DYNAMICS";
/// The variable that, when set, replaces `store.url`.
pub const DATABASE_URL_ENV: &str = "SYNC_DATABASE_URL";
/// Azure AD's public-cloud authority.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";

const APP_REGISTRATION_HINT: &str = "HLF IT finds it in the Azure portal under App registrations";

/// The suffix of a variable naming a file that holds the value instead, as in `DYNAMICS_CLIENT_SECRET_FILE`.
pub const FILE_SUFFIX: &str = "_FILE";

/// What [`Validator::variable`] found.
enum Variable {
    Unset,
    Empty,
    Set(SecretSource),
    /// A problem with it is already on the list.
    Reported,
}

pub(crate) struct Validator<'a> {
    problems: Vec<Problem>,
    env: &'a dyn Environment,
    base_dir: &'a Path,
    mappings: BTreeMap<String, Option<FieldMapping>>,
}

impl<'a> Validator<'a> {
    pub(crate) fn new(env: &'a dyn Environment, base_dir: &'a Path) -> Self {
        Validator {
            problems: Vec::new(),
            env,
            base_dir,
            mappings: BTreeMap::new(),
        }
    }

    pub(crate) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    pub(crate) fn finish(mut self, raw: RawConfig) -> Result<IntegrationConfig, Vec<Problem>> {
        let config = self.config(raw);
        if self.problems.is_empty() {
            Ok(config)
        } else {
            Err(self.problems)
        }
    }

    fn config(&mut self, raw: RawConfig) -> IntegrationConfig {
        let organisations = self.organisations(raw.organisations, raw.mapping.as_deref());
        let conflicts = self.conflicts(raw.conflicts, &organisations);
        IntegrationConfig {
            schedule: self.schedule(raw.schedule),
            sync: self.sync(raw.sync),
            conflicts,
            rate_limit: self.rate_limit(raw.rate_limit),
            retry: self.retry(raw.retry),
            notifications: self.notifications(raw.notifications),
            dashboard: self.dashboard(raw.dashboard),
            store: self.store(raw.store),
            health: self.health(raw.health),
            cache: CacheSettings {
                stale_after: hours(self.int(raw.cache.stale_after_hours, "cache.stale_after_hours", 26, 1..=24 * 30)),
            },
            retention: RetentionSettings {
                period: days(self.int(raw.retention.days, "retention.days", 90, 1..=3650)),
            },
            accounting: self.accounting(&raw.accounting, &organisations),
            organisations,
        }
    }

    /// The accounting export: when enabled, every organisation's mapping must describe the postings table.
    fn accounting(&mut self, raw: &RawAccounting, organisations: &[OrganisationConfig]) -> AccountingSettings {
        let enabled = raw.enabled.unwrap_or(false);
        if enabled {
            for org in organisations {
                if org.mapping.record("posting").is_none() {
                    self.push(
                        "accounting.enabled",
                        format!(
                            "organisation {}'s mapping ({}) has no [records.posting], so its postings cannot be \
                             exported; add one (see builtin:hlf-default) or set enabled = false",
                            org.id, org.mapping_source
                        ),
                    );
                }
            }
        }
        AccountingSettings { enabled }
    }

    /// An integer setting in `range`, or `default` when absent.
    fn int(&mut self, value: Option<i64>, key: &str, default: u32, range: RangeInclusive<i64>) -> u32 {
        match value {
            None => default,
            Some(v) if range.contains(&v) => u32::try_from(v).unwrap_or(default),
            Some(v) => {
                self.push(
                    key,
                    format!(
                        "{v} is out of range; use a whole number from {} to {}",
                        range.start(),
                        range.end()
                    ),
                );
                default
            }
        }
    }

    fn time_zone(&mut self, value: Option<&str>, key: &str) -> Tz {
        match value {
            None => chrono_tz::Europe::Oslo,
            Some(name) => name.parse().unwrap_or_else(|_| {
                self.push(
                    key,
                    format!("`{name}` is not a time zone; use an IANA name such as \"Europe/Oslo\""),
                );
                chrono_tz::Europe::Oslo
            }),
        }
    }

    fn organisations(&mut self, raw: Vec<RawOrganisation>, default_mapping: Option<&str>) -> Vec<OrganisationConfig> {
        if raw.is_empty() {
            self.push(
                "organisations",
                "no organisation configured; add an [[organisations]] table with at least `id` and `name`",
            );
        }
        let mut ids = BTreeSet::new();
        let mut prefixes = BTreeSet::new();
        let mut out = Vec::new();
        for (i, org) in raw.into_iter().enumerate() {
            let at = |key: &str| format!("organisations[{i}].{key}");
            let id = match org.id {
                Some(id) if is_org_id(&id) => id,
                Some(id) => {
                    self.push(
                        at("id"),
                        format!("`{id}` is not a usable id; use letters, digits, `-` and `_`"),
                    );
                    id
                }
                None => {
                    self.push(at("id"), "missing; set it to the app's organisation id, e.g. \"hlf\"");
                    String::new()
                }
            };
            if !id.is_empty() && !ids.insert(id.clone()) {
                self.push(
                    at("id"),
                    format!("organisation `{id}` is configured twice; keep one entry"),
                );
            }
            let name = org.name.filter(|n| !n.trim().is_empty()).unwrap_or_else(|| {
                self.push(
                    at("name"),
                    "missing; set the organisation's name as coordinators know it",
                );
                String::new()
            });
            let prefix = org
                .credential_prefix
                .unwrap_or_else(|| DEFAULT_CREDENTIAL_PREFIX.to_owned());
            let prefix_ok = is_env_name(&prefix);
            if !prefix_ok {
                self.push(
                    at("credential_prefix"),
                    format!("`{prefix}` cannot prefix environment variables; use upper-case letters, digits and `_`"),
                );
            } else if !prefixes.insert(prefix.clone()) {
                self.push(
                    at("credential_prefix"),
                    format!(
                        "`{prefix}` is already used by another organisation; each organisation syncs with its own credentials"
                    ),
                );
            }
            let time_zone = self.time_zone(org.time_zone.as_deref(), &at("time_zone"));
            let language = match org.language.as_deref() {
                None | Some("nb") => Language::Norwegian,
                Some("en") => Language::English,
                Some(other) => {
                    self.push(
                        at("language"),
                        format!("`{other}` is not supported; use \"nb\" or \"en\""),
                    );
                    Language::Norwegian
                }
            };
            let authority_host = self.authority_host(org.authority_host.as_deref(), &at("authority_host"));
            // A bad prefix would only add four confusing "missing variable" problems.
            let credentials = prefix_ok.then(|| self.credentials(&prefix, authority_host)).flatten();
            let mapping_source = match org.mapping.as_deref().or(default_mapping) {
                Some(source) => source.to_owned(),
                None => {
                    self.push(
                        "mapping",
                        format!(
                            "missing; set `mapping` to the field-mapping file (relative to this file) or \"{BUILTIN_MAPPING}\""
                        ),
                    );
                    String::new()
                }
            };
            let key = if org.mapping.is_some() {
                at("mapping")
            } else {
                "mapping".to_owned()
            };
            let mapping = self.mapping(&mapping_source, &key);
            let client_secret_expires_on = org.client_secret_expires_on.and_then(|d| {
                let parsed = d
                    .date
                    .filter(|_| d.time.is_none())
                    .and_then(|d| NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day)));
                if parsed.is_none() {
                    self.push(at("client_secret_expires_on"), "not a date; write it as 2027-03-01");
                }
                parsed
            });
            if let Some(mapping) = &mapping {
                for (table, filter) in &org.filters {
                    if !mapping.records().any(|r| r.table() == table) {
                        self.push(
                            format!("organisations[{i}].filters.{table}"),
                            "not a table the mapping reads; key filters by table logical name, e.g. `contact`",
                        );
                    }
                    if let Err(reason) = check_filter(filter) {
                        self.push(format!("organisations[{i}].filters.{table}"), reason);
                    }
                }
            }
            let ca_certificate_file = org.ca_certificate_file.as_deref().map(|file| {
                let path = self.base_dir.join(file);
                std::path::absolute(&path).unwrap_or(path).display().to_string()
            });
            let extra_root_certificates = match org.ca_certificate_file.as_deref() {
                None => Vec::new(),
                Some(file) => {
                    let path = self.base_dir.join(file);
                    let path = std::path::absolute(&path).unwrap_or(path);
                    match std::fs::read(&path) {
                        Ok(pem) if String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") => vec![pem],
                        Ok(_) => {
                            self.push(
                                at("ca_certificate_file"),
                                format!(
                                    "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                                    path.display()
                                ),
                            );
                            Vec::new()
                        }
                        Err(e) => {
                            self.push(
                                at("ca_certificate_file"),
                                format!("cannot read {}: {e}", path.display()),
                            );
                            Vec::new()
                        }
                    }
                }
            };
            if let (Some(credentials), Some(mapping)) = (credentials, mapping) {
                out.push(OrganisationConfig {
                    id,
                    name,
                    credential_prefix: prefix,
                    credentials,
                    time_zone,
                    language,
                    mapping,
                    mapping_source,
                    filters: org.filters,
                    client_secret_expires_on,
                    extra_root_certificates,
                    ca_certificate_file,
                });
            }
        }
        out
    }

    fn authority_host(&mut self, value: Option<&str>, key: &str) -> Url {
        let default = || Url::parse(DEFAULT_AUTHORITY_HOST).unwrap_or_else(|_| unreachable!("constant URL"));
        let Some(text) = value else { return default() };
        match Url::parse(text) {
            Ok(url) if url.scheme() == "https" || (url.scheme() == "http" && is_loopback(&url)) => url,
            Ok(_) => {
                self.push(key, "must use https (http is accepted only for a loopback emulator)");
                default()
            }
            Err(_) => {
                self.push(
                    key,
                    format!("`{text}` is not a URL; use e.g. \"{DEFAULT_AUTHORITY_HOST}\" or your sovereign cloud's authority"),
                );
                default()
            }
        }
    }

    fn credentials(&mut self, prefix: &str, authority_host: Url) -> Option<DynamicsCredentials> {
        let before = self.problems.len();
        let var = |suffix: &str| format!("{prefix}_{suffix}");
        let tenant_id = self.required_env(
            &var("TENANT_ID"),
            &format!("the Directory (tenant) id of HLF's Azure AD; {APP_REGISTRATION_HINT}"),
        );
        let client_id = self.required_env(
            &var("CLIENT_ID"),
            &format!("the Application (client) id of the app registration; {APP_REGISTRATION_HINT}"),
        );
        let client_secret = self.required_secret(
            &var("CLIENT_SECRET"),
            "the client secret's value (Certificates & secrets in the app registration)",
        );
        let instance = self.required_env(
            &var("INSTANCE_URL"),
            "the Dynamics organisation address, e.g. https://hlf.crm4.dynamics.com",
        );
        if let Some(tenant) = &tenant_id
            && let Err(reason) = check_tenant(tenant)
        {
            self.push(var("TENANT_ID"), reason);
        }
        if let Some(client) = &client_id
            && !is_guid(client)
        {
            self.push(
                var("CLIENT_ID"),
                format!("not a GUID; copy the Application (client) id, not the app's name; {APP_REGISTRATION_HINT}"),
            );
        }
        if let Some(secret) = &client_secret
            && secret.loaded().expose_secret().trim() != secret.loaded().expose_secret()
        {
            // The value is never echoed: it is a secret.
            self.push(
                var("CLIENT_SECRET"),
                "has leading or trailing white space; copy the secret's value again without it",
            );
        }
        let instance_url = instance.and_then(|text| match parse_instance_url(&text) {
            Ok(url) => Some(url),
            Err(reason) => {
                self.push(var("INSTANCE_URL"), reason);
                None
            }
        });
        if self.problems.len() > before {
            return None;
        }
        Some(DynamicsCredentials {
            tenant_id: tenant_id?,
            client_id: client_id?,
            client_secret: client_secret?,
            instance_url: instance_url?,
            authority_host,
        })
    }

    /// A variable, or the file its `<NAME>_FILE` form names (relative to the configuration file's folder). Setting
    /// both, or naming a file that cannot be read, is a problem reported here.
    fn variable(&mut self, name: &str) -> Variable {
        let file_name = format!("{name}{FILE_SUFFIX}");
        let direct = self.env.get(name);
        let file = self.env.get(&file_name).filter(|v| !v.is_empty());
        match (direct, file) {
            (Some(value), Some(_)) if !value.is_empty() => {
                self.push(name, format!("is set, and so is {file_name}; keep only one of them"));
                Variable::Reported
            }
            (_, Some(path)) => {
                let path = self.base_dir.join(path);
                let path = std::path::absolute(&path).unwrap_or(path);
                match SecretSource::file(path) {
                    Ok(secret) => Variable::Set(secret),
                    Err(e) => {
                        self.push(file_name, e.to_string());
                        Variable::Reported
                    }
                }
            }
            (Some(value), None) if value.is_empty() => Variable::Empty,
            (Some(value), None) => Variable::Set(SecretSource::value(value)),
            (None, None) => Variable::Unset,
        }
    }

    fn required_secret(&mut self, name: &str, what: &str) -> Option<SecretSource> {
        match self.variable(name) {
            Variable::Set(secret) => Some(secret),
            Variable::Empty => {
                self.push(name, format!("is empty; set it to {what}"));
                None
            }
            Variable::Unset => {
                self.push(name, format!("missing; set it (or {name}{FILE_SUFFIX}) to {what}"));
                None
            }
            Variable::Reported => None,
        }
    }

    fn required_env(&mut self, name: &str, what: &str) -> Option<String> {
        self.required_secret(name, what)
            .map(|value| value.loaded().expose_secret().to_owned())
    }

    /// A secret named by a key of the file (`key`); `missing` is the problem to report when it is unset, if its
    /// absence is one.
    fn secret_env(&mut self, name: &str, key: &str, missing: Option<&str>) -> Option<SecretSource> {
        if !is_env_name(name) {
            self.push(
                key,
                format!("`{name}` is not a variable name; use upper-case letters, digits and `_`"),
            );
            return None;
        }
        match self.variable(name) {
            Variable::Set(secret) => Some(secret),
            Variable::Empty | Variable::Unset => {
                if let Some(missing) = missing {
                    self.push(name, format!("missing; set it (or {name}{FILE_SUFFIX}) to {missing}"));
                }
                None
            }
            Variable::Reported => None,
        }
    }

    fn mapping(&mut self, source: &str, key: &str) -> Option<FieldMapping> {
        if source.is_empty() {
            return None;
        }
        if let Some(cached) = self.mappings.get(source) {
            return cached.clone();
        }
        let (text, shown) = if source == BUILTIN_MAPPING {
            (Some(HLF_DEFAULT_MAPPING.to_owned()), source.to_owned())
        } else {
            let path = self.base_dir.join(source);
            let shown = std::path::absolute(&path).unwrap_or(path.clone()).display().to_string();
            match std::fs::read_to_string(&path) {
                Ok(text) => (Some(text), shown),
                Err(e) => {
                    self.push(key, format!("cannot read the mapping file {shown}: {e}"));
                    (None, shown)
                }
            }
        };
        let mapping = text.and_then(|text| match FieldMapping::from_toml(&text) {
            Ok(mapping) => {
                if mapping.record("mentor").is_none() {
                    self.push(
                        key,
                        format!("the mapping {shown} has no [records.mentor]; the sync needs it"),
                    );
                }
                Some(mapping)
            }
            Err(e) => {
                for problem in e.problems() {
                    self.push(format!("{key} ({shown}) {}", problem.path), problem.message);
                }
                None
            }
        });
        self.mappings.insert(source.to_owned(), mapping.clone());
        mapping
    }

    fn schedule(&mut self, raw: RawSchedule) -> Schedule {
        match (raw.nightly_at, raw.every_minutes) {
            (Some(_), Some(_)) => {
                self.push("schedule", "set either `nightly_at` or `every_minutes`, not both");
                Schedule::Every(Duration::from_secs(3600))
            }
            (None, Some(minutes)) => {
                if raw.time_zone.is_some() {
                    self.push("schedule.time_zone", "only used with `nightly_at`; remove it");
                }
                let minutes = self.int(Some(minutes), "schedule.every_minutes", 60, 5..=24 * 60);
                Schedule::Every(Duration::from_secs(u64::from(minutes) * 60))
            }
            (at, None) => {
                let text = at.unwrap_or_else(|| "02:00".to_owned());
                let at = NaiveTime::parse_from_str(&text, "%H:%M").unwrap_or_else(|_| {
                    self.push(
                        "schedule.nightly_at",
                        format!("`{text}` is not a time; write it as 24-hour HH:MM, e.g. \"02:00\""),
                    );
                    NaiveTime::MIN
                });
                let time_zone = self.time_zone(raw.time_zone.as_deref(), "schedule.time_zone");
                Schedule::Nightly { at, time_zone }
            }
        }
    }

    fn sync(&mut self, raw: RawSync) -> SyncSettings {
        let d = SyncSettings::default();
        let batch_size_initial = self.int(
            raw.batch_size_initial,
            "sync.batch_size_initial",
            d.batch_size_initial,
            1..=1000,
        );
        let batch_size_max = self.int(raw.batch_size_max, "sync.batch_size_max", d.batch_size_max, 1..=1000);
        if batch_size_initial > batch_size_max {
            self.push(
                "sync.batch_size_initial",
                format!("{batch_size_initial} is larger than sync.batch_size_max ({batch_size_max}); lower it"),
            );
        }
        SyncSettings {
            change_tracking: raw.change_tracking.unwrap_or(d.change_tracking),
            overlap: secs(self.int(raw.overlap_seconds, "sync.overlap_seconds", 300, 0..=24 * 3600)),
            page_size: self.int(raw.page_size, "sync.page_size", d.page_size, 1..=5000),
            batch_size_initial,
            batch_size_max,
            parallel_requests: self.int(
                raw.parallel_requests,
                "sync.parallel_requests",
                d.parallel_requests,
                1..=52,
            ),
        }
    }

    fn conflicts(&mut self, raw: RawConflicts, organisations: &[OrganisationConfig]) -> ConflictPolicy {
        let parse = |v: &mut Self, text: &str, key: &str| {
            ConflictStrategy::parse(text).unwrap_or_else(|| {
                let names: Vec<_> = ConflictStrategy::ALL.iter().map(|(_, n)| format!("\"{n}\"")).collect();
                v.push(
                    key,
                    format!("`{text}` is not a strategy; use one of {}", names.join(", ")),
                );
                ConflictStrategy::NewestWins
            })
        };
        let default = raw
            .default
            .as_deref()
            .map_or(ConflictStrategy::NewestWins, |t| parse(self, t, "conflicts.default"));
        let mut fields = BTreeMap::new();
        for (field, text) in &raw.fields {
            let key = format!("conflicts.fields.{field}");
            let strategy = parse(self, text, &key);
            let owners: BTreeSet<Owner> = organisations
                .iter()
                .flat_map(|o| o.mapping.records())
                .filter_map(|r| r.field(field).map(|f| f.owner))
                .collect();
            if owners.is_empty() && !organisations.is_empty() {
                self.push(
                    &key,
                    format!("`{field}` is not a field in the mapping; use an app field name"),
                );
            } else if !owners.is_empty() && !owners.contains(&Owner::Shared) {
                self.push(
                    &key,
                    format!(
                        "`{field}` is not a shared field, so it never conflicts; remove the override or make it shared"
                    ),
                );
            }
            fields.insert(field.clone(), strategy);
        }
        ConflictPolicy { default, fields }
    }

    fn rate_limit(&mut self, raw: RawRateLimit) -> RateLimitSettings {
        let d = RateLimitSettings::default();
        RateLimitSettings {
            requests_per_window: self.int(
                raw.requests_per_window,
                "rate_limit.requests_per_window",
                d.requests_per_window,
                1..=1_000_000,
            ),
            execution_time_per_window: secs(self.int(
                raw.execution_seconds_per_window,
                "rate_limit.execution_seconds_per_window",
                1200,
                1..=86_400,
            )),
            window: secs(self.int(raw.window_seconds, "rate_limit.window_seconds", 300, 1..=86_400)),
            max_concurrent_requests: self.int(
                raw.max_concurrent_requests,
                "rate_limit.max_concurrent_requests",
                d.max_concurrent_requests,
                1..=1000,
            ),
            headroom_percent: u8::try_from(self.int(raw.headroom_percent, "rate_limit.headroom_percent", 10, 0..=90))
                .unwrap_or(10),
        }
    }

    fn retry(&mut self, raw: RawRetry) -> RetrySettings {
        let d = RetrySettings::default();
        let initial_backoff = Duration::from_millis(u64::from(self.int(
            raw.initial_backoff_ms,
            "retry.initial_backoff_ms",
            500,
            1..=60_000,
        )));
        let max_backoff = secs(self.int(raw.max_backoff_seconds, "retry.max_backoff_seconds", 60, 1..=3600));
        if initial_backoff > max_backoff {
            self.push(
                "retry.initial_backoff_ms",
                "is longer than retry.max_backoff_seconds; lower it",
            );
        }
        RetrySettings {
            max_attempts: self.int(raw.max_attempts, "retry.max_attempts", d.max_attempts, 1..=100),
            initial_backoff,
            max_backoff,
            total_budget: secs(self.int(raw.total_budget_seconds, "retry.total_budget_seconds", 900, 1..=86_400)),
            request_timeout: secs(self.int(
                raw.request_timeout_seconds,
                "retry.request_timeout_seconds",
                120,
                1..=3600,
            )),
            record_max_attempts: self.int(
                raw.record_max_attempts,
                "retry.record_max_attempts",
                d.record_max_attempts,
                1..=1000,
            ),
        }
    }

    fn notifications(&mut self, raw: RawNotifications) -> NotificationSettings {
        for (i, address) in raw.admin_emails.iter().enumerate() {
            if !is_email(address) {
                self.push(
                    format!("notifications.admin_emails[{i}]"),
                    format!("`{address}` is not an email address"),
                );
            }
        }
        let email = raw.email.map(|raw| self.email(raw));
        let webhook = raw.webhook.and_then(|raw| self.webhook(raw));
        NotificationSettings {
            admin_emails: raw.admin_emails,
            max_delivery_attempts: self.int(
                raw.max_delivery_attempts,
                "notifications.max_delivery_attempts",
                10,
                1..=1000,
            ),
            email,
            webhook,
        }
    }

    fn email(&mut self, raw: RawEmail) -> EmailSettings {
        let smtp_host = raw.smtp_host.filter(|h| !h.is_empty()).unwrap_or_else(|| {
            self.push(
                "notifications.email.smtp_host",
                "missing; set the SMTP server's host name",
            );
            String::new()
        });
        let tls = match raw.tls.as_deref() {
            None | Some("starttls") => SmtpTls::StartTls,
            Some("tls") => SmtpTls::Tls,
            Some("none") => {
                if !host_is_loopback(&smtp_host) {
                    self.push(
                        "notifications.email.tls",
                        "\"none\" sends mail in plain text and is accepted only for a relay on this machine; use \"starttls\" or \"tls\"",
                    );
                }
                SmtpTls::None
            }
            Some(other) => {
                self.push(
                    "notifications.email.tls",
                    format!("`{other}` is not a choice; use \"starttls\", \"tls\" or \"none\""),
                );
                SmtpTls::StartTls
            }
        };
        let default_port: u16 = match tls {
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        };
        let smtp_port = u16::try_from(self.int(
            raw.smtp_port,
            "notifications.email.smtp_port",
            u32::from(default_port),
            1..=65_535,
        ))
        .unwrap_or(default_port);
        let from = raw.from.unwrap_or_default();
        if !is_email(&from) {
            self.push(
                "notifications.email.from",
                "missing or not an email address; set the sender address",
            );
        }
        let login = match (raw.username, raw.password_env) {
            (None, None) => None,
            (Some(user), Some(var)) => self
                .secret_env(
                    &var,
                    "notifications.email.password_env",
                    Some("the SMTP password (named by notifications.email.password_env)"),
                )
                .map(|password| (user, password)),
            _ => {
                self.push(
                    "notifications.email",
                    "set both `username` and `password_env`, or neither for a server without login",
                );
                None
            }
        };
        EmailSettings {
            smtp_host,
            smtp_port,
            tls,
            from,
            login,
        }
    }

    fn webhook(&mut self, raw: RawWebhook) -> Option<WebhookSettings> {
        let text = raw.url.unwrap_or_default();
        let url = match Url::parse(&text) {
            Ok(url) if url.scheme() == "https" || (url.scheme() == "http" && is_loopback(&url)) => Some(url),
            Ok(_) => {
                self.push(
                    "notifications.webhook.url",
                    "must use https (http is accepted only on loopback)",
                );
                None
            }
            Err(_) => {
                self.push(
                    "notifications.webhook.url",
                    "missing or not a URL; set the address to POST notifications to",
                );
                None
            }
        };
        let secret = match raw.secret_env {
            Some(var) => self.secret_env(
                &var,
                "notifications.webhook.secret_env",
                Some("the webhook signing secret (named by notifications.webhook.secret_env)"),
            ),
            // Unsigned, anyone who learns the address can post look-alike notifications; only a loopback
            // receiver (a local relay or a test) may do without.
            None => {
                if url.as_ref().is_some_and(|u| !is_loopback(u)) {
                    self.push(
                        "notifications.webhook.secret_env",
                        "required for a webhook off this machine: name a variable holding a long random signing \
                         secret (e.g. `openssl rand -hex 32`), and let the receiver check the X-HLF-Signature header \
                         (README: Webhook)",
                    );
                }
                None
            }
        };
        Some(WebhookSettings { url: url?, secret })
    }

    fn dashboard(&mut self, raw: RawDashboard) -> DashboardSettings {
        let bind_text = raw.bind.unwrap_or_else(|| "127.0.0.1:8088".to_owned());
        let bind = bind_text.parse::<SocketAddr>().unwrap_or_else(|_| {
            self.push(
                "dashboard.bind",
                format!("`{bind_text}` is not an address; write it as IP:PORT, e.g. \"127.0.0.1:8088\""),
            );
            SocketAddr::from(([127, 0, 0, 1], 8088))
        });
        let credential_env = raw
            .credential_env
            .unwrap_or_else(|| "SYNC_DASHBOARD_CREDENTIAL".to_owned());
        let secret = self.secret_env(&credential_env, "dashboard.credential_env", None);
        let auth = match raw.auth.as_deref() {
            None | Some("bearer") => {
                if raw.username.is_some() {
                    self.push("dashboard.username", "only used with auth = \"basic\"; remove it");
                }
                secret.map(DashboardAuth::Bearer)
            }
            Some("basic") => match raw.username.filter(|u| !u.is_empty()) {
                Some(username) => secret.map(|password| DashboardAuth::Basic { username, password }),
                None => {
                    self.push("dashboard.username", "missing; basic authentication needs a user name");
                    None
                }
            },
            Some(other) => {
                self.push(
                    "dashboard.auth",
                    format!("`{other}` is not a choice; use \"bearer\" or \"basic\""),
                );
                None
            }
        };
        let metrics_token = raw.metrics_credential_env.and_then(|var| {
            // Unset, the dashboard serves the metrics to the admin credential only (the worker's other commands do
            // not need it, so it is no configuration problem; `config check` shows it as not set).
            let token = self.secret_env(&var, "dashboard.metrics_credential_env", None)?;
            Some((var, token))
        });
        let file = |name: Option<String>| {
            name.map(|name| {
                let path = self.base_dir.join(name);
                std::path::absolute(&path).unwrap_or(path)
            })
        };
        let (cert, key) = (file(raw.tls_cert_file), file(raw.tls_key_file));
        let tls = match (cert, key) {
            (None, None) => None,
            (Some(cert_file), Some(key_file)) => {
                for (path, key) in [
                    (&cert_file, "dashboard.tls_cert_file"),
                    (&key_file, "dashboard.tls_key_file"),
                ] {
                    if let Err(e) = std::fs::metadata(path) {
                        self.push(key, format!("cannot read {}: {e}", path.display()));
                    }
                }
                Some(DashboardTls { cert_file, key_file })
            }
            _ => {
                self.push("dashboard", "set both tls_cert_file and tls_key_file (PEM), or neither");
                None
            }
        };
        DashboardSettings {
            bind,
            auth,
            credential_env,
            metrics_token,
            tls,
            behind_tls_proxy: raw.behind_tls_proxy.unwrap_or(false),
        }
    }

    fn store(&mut self, raw: RawStore) -> StoreSettings {
        let from_env = match self.variable(DATABASE_URL_ENV) {
            Variable::Set(url) => Some(url.loaded().expose_secret().to_owned()),
            _ => None,
        };
        let (url, key) = match from_env {
            Some(url) => (url, DATABASE_URL_ENV),
            // Like every path in the file, a relative SQLite path is relative to the configuration file, not to
            // the directory the worker happens to be started from.
            None => (
                sqlite_beside(
                    &raw.url.unwrap_or_else(|| "sqlite://sync-worker.db".to_owned()),
                    self.base_dir,
                ),
                "store.url",
            ),
        };
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            // The URL may hold a password, so it is not echoed.
            self.push(
                key,
                "is not a database URL; use sqlite://PATH or postgres://USER@HOST/DB",
            );
        }
        StoreSettings {
            url: SecretString::from(url),
        }
    }

    fn health(&mut self, raw: RawHealth) -> HealthSettings {
        let d = HealthSettings::default();
        let secret_expiry_warn_days = match raw.secret_expiry_warn_days {
            None => d.secret_expiry_warn_days,
            Some(days) => {
                let mut out: Vec<u32> = days
                    .iter()
                    .enumerate()
                    .map(|(i, day)| self.int(Some(*day), &format!("health.secret_expiry_warn_days[{i}]"), 1, 1..=365))
                    .collect();
                out.sort_unstable_by(|a, b| b.cmp(a));
                out.dedup();
                out
            }
        };
        HealthSettings {
            freshness: hours(self.int(raw.freshness_hours, "health.freshness_hours", 24, 1..=24 * 30)),
            failed_runs_alert: self.int(
                raw.failed_runs_alert,
                "health.failed_runs_alert",
                d.failed_runs_alert,
                1..=100,
            ),
            secret_expiry_warn_days,
            delta_token_lifetime: days(self.int(
                raw.delta_token_lifetime_days,
                "health.delta_token_lifetime_days",
                7,
                1..=365,
            )),
        }
    }
}

fn secs(n: u32) -> Duration {
    Duration::from_secs(u64::from(n))
}

fn hours(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 3600)
}

fn days(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 24 * 3600)
}

fn is_org_id(id: &str) -> bool {
    !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn is_guid(text: &str) -> bool {
    text.len() == 36 && uuid_like(text)
}

fn uuid_like(text: &str) -> bool {
    text.char_indices().all(|(i, c)| match i {
        8 | 13 | 18 | 23 => c == '-',
        _ => c.is_ascii_hexdigit(),
    })
}

fn is_email(text: &str) -> bool {
    match text.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !text.contains(char::is_whitespace)
        }
        None => false,
    }
}

fn check_tenant(tenant: &str) -> Result<(), String> {
    if matches!(tenant, "common" | "organizations" | "consumers") {
        return Err(format!(
            "`{tenant}` is a multi-tenant alias; client credentials need HLF's own tenant id (a GUID) or domain"
        ));
    }
    let is_domain = tenant.contains('.')
        && tenant
            .split('.')
            .all(|label| !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if is_guid(tenant) || is_domain {
        Ok(())
    } else {
        Err(format!(
            "not a tenant id; use the Directory (tenant) id (a GUID) or a verified domain such as hlf.onmicrosoft.com; {APP_REGISTRATION_HINT}"
        ))
    }
}

/// Host suffixes of Dynamics 365 / Dataverse instances in the public and sovereign clouds.
const DYNAMICS_HOST_SUFFIXES: [&str; 4] = [
    ".dynamics.com",
    ".dynamics.cn",
    ".microsoftdynamics.us",
    ".appsplatform.us",
];

pub(crate) fn parse_instance_url(text: &str) -> Result<InstanceUrl, String> {
    const EXAMPLE: &str = "e.g. https://hlf.crm4.dynamics.com";
    let url = Url::parse(text.trim()).map_err(|_| format!("not a URL; set the organisation address, {EXAMPLE}"))?;
    let loopback = is_loopback(&url);
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(format!(
                "must use https; only a loopback emulator may use http ({EXAMPLE})"
            ));
        }
        other => return Err(format!("`{other}` is not a web address scheme; {EXAMPLE}")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "must not carry a user name or password; credentials come from the CLIENT_ID and CLIENT_SECRET variables"
                .to_owned(),
        );
    }
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    if !loopback
        && !DYNAMICS_HOST_SUFFIXES
            .iter()
            .any(|s| host.ends_with(s) && host.len() > s.len())
    {
        return Err(format!(
            "`{host}` is not a Dynamics 365 address; use the organisation URL from the Power Platform admin center, {EXAMPLE}"
        ));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "must be the organisation root without a path (drop `{}`), {EXAMPLE}",
            url.path().trim_end_matches('/')
        ));
    }
    Ok(InstanceUrl(url))
}

pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn host_is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A light sanity check of an OData `$filter` expression: balanced quotes and parentheses. Dynamics itself is the
/// judge of the rest; the sync reports its answer naming the organisation and table.
fn check_filter(filter: &str) -> Result<(), String> {
    if filter.trim().is_empty() {
        return Err("empty; remove the filter or write an OData expression such as \"statecode eq 0\"".to_owned());
    }
    let mut depth = 0i32;
    let mut in_string = false;
    let mut chars = filter.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, in_string) {
            ('\'', true) if chars.peek() == Some(&'\'') => {
                chars.next();
            }
            ('\'', _) => in_string = !in_string,
            ('(', false) => depth += 1,
            (')', false) => {
                depth -= 1;
                if depth < 0 {
                    return Err("has a `)` without a matching `(`".to_owned());
                }
            }
            _ => {}
        }
    }
    if in_string {
        Err("has an unterminated string literal; quote strings with '…' and double a ' inside".to_owned())
    } else if depth != 0 {
        Err("has a `(` without a matching `)`".to_owned())
    } else {
        Ok(())
    }
}

/// A `sqlite:` URL whose relative path is made absolute against `base_dir` (the configuration file's directory);
/// any other URL, an absolute path and `:memory:` are kept as they are.
pub(crate) fn sqlite_beside(url: &str, base_dir: &Path) -> String {
    let Some(rest) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) else {
        return url.to_owned();
    };
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    if path.is_empty() || path.starts_with('/') || path.starts_with(':') {
        return url.to_owned();
    }
    let joined = base_dir.join(path);
    let absolute = std::path::absolute(&joined).unwrap_or(joined);
    match query {
        Some(query) => format!("sqlite://{}?{query}", absolute.display()),
        None => format!("sqlite://{}", absolute.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_url(text: &str, expected: Result<&str, &str>) {
        let got = parse_instance_url(text).map(|u| u.to_string());
        assert_eq!(got.as_deref().map_err(String::as_str), expected, "{text}");
    }

    #[test]
    fn instance_urls_must_be_dynamics_or_loopback() {
        check_url("https://hlf.crm4.dynamics.com", Ok("https://hlf.crm4.dynamics.com/"));
        check_url("https://HLF.crm4.dynamics.com/", Ok("https://hlf.crm4.dynamics.com/"));
        check_url(
            "https://contoso.crm.microsoftdynamics.us",
            Ok("https://contoso.crm.microsoftdynamics.us/"),
        );
        check_url("http://127.0.0.1:8080", Ok("http://127.0.0.1:8080/"));
        check_url("http://localhost:9000/", Ok("http://localhost:9000/"));
        check_url("http://[::1]:9000", Ok("http://[::1]:9000/"));
        check_url(
            "http://hlf.crm4.dynamics.com",
            Err("must use https; only a loopback emulator may use http (e.g. https://hlf.crm4.dynamics.com)"),
        );
        check_url(
            "https://example.org",
            Err(
                "`example.org` is not a Dynamics 365 address; use the organisation URL from the Power Platform admin center, e.g. https://hlf.crm4.dynamics.com",
            ),
        );
        check_url(
            "https://dynamics.com.evil.example",
            Err(
                "`dynamics.com.evil.example` is not a Dynamics 365 address; use the organisation URL from the Power Platform admin center, e.g. https://hlf.crm4.dynamics.com",
            ),
        );
        check_url(
            "https://hlf.crm4.dynamics.com/api/data/v9.2/",
            Err(
                "must be the organisation root without a path (drop `/api/data/v9.2`), e.g. https://hlf.crm4.dynamics.com",
            ),
        );
        check_url(
            "hlf.crm4.dynamics.com",
            Err("not a URL; set the organisation address, e.g. https://hlf.crm4.dynamics.com"),
        );
        check_url(
            "https://user:pw@hlf.crm4.dynamics.com",
            Err(
                "must not carry a user name or password; credentials come from the CLIENT_ID and CLIENT_SECRET variables",
            ),
        );
        check_url(
            "ftp://hlf.crm4.dynamics.com",
            Err("`ftp` is not a web address scheme; e.g. https://hlf.crm4.dynamics.com"),
        );
    }

    #[test]
    fn instance_url_derives_api_base_and_scope() {
        let url = parse_instance_url("https://hlf.crm4.dynamics.com").unwrap();
        assert_eq!(url.api_base().as_str(), "https://hlf.crm4.dynamics.com/api/data/v9.2/");
        assert_eq!(url.scope(), "https://hlf.crm4.dynamics.com/.default");
        assert!(!url.is_loopback());
    }

    #[track_caller]
    fn check_filter_case(filter: &str, ok: bool) {
        assert_eq!(check_filter(filter).is_ok(), ok, "{filter}: {:?}", check_filter(filter));
    }

    #[test]
    fn filters_need_balanced_quotes_and_parentheses() {
        check_filter_case("statecode eq 0", true);
        check_filter_case("(statecode eq 0) and contains(lastname,'O''Brien (x')", true);
        check_filter_case("statecode eq 0)", false);
        check_filter_case("(statecode eq 0", false);
        check_filter_case("lastname eq 'open", false);
        check_filter_case("  ", false);
    }

    #[test]
    fn relative_sqlite_paths_are_relative_to_the_configuration_file() {
        let base = Path::new("/etc/hlf-sync");
        assert_eq!(
            sqlite_beside("sqlite://sync-worker.db", base),
            "sqlite:///etc/hlf-sync/sync-worker.db"
        );
        assert_eq!(
            sqlite_beside("sqlite:state/sync.db?mode=rwc", base),
            "sqlite:///etc/hlf-sync/state/sync.db?mode=rwc"
        );
        assert_eq!(
            sqlite_beside("sqlite:///var/lib/sync.db", base),
            "sqlite:///var/lib/sync.db"
        );
        assert_eq!(sqlite_beside("sqlite::memory:", base), "sqlite::memory:");
        assert_eq!(sqlite_beside("postgres://u@h/db", base), "postgres://u@h/db");
        let relative = sqlite_beside("sqlite://x.db", Path::new("conf"));
        assert!(
            relative.starts_with("sqlite:///") && relative.ends_with("/conf/x.db"),
            "{relative}"
        );
    }

    #[test]
    fn tenants_are_guids_or_domains() {
        assert!(check_tenant("72f988bf-86f1-41af-91ab-2d7cd011db47").is_ok());
        assert!(check_tenant("hlf.onmicrosoft.com").is_ok());
        assert!(check_tenant("common").is_err());
        assert!(check_tenant("not a tenant").is_err());
        assert!(check_tenant("72f988bf-86f1-41af-91ab").is_err());
    }
}
