//! The effective configuration in readable form, secrets shown only as "set" or "missing", for
//! `sync-worker config check` and the dashboard.

use std::fmt::{self, Display, Formatter};

use secrecy::ExposeSecret;

use crate::secret::SecretSource;
use crate::settings::*;

/// Formats an [`IntegrationConfig`] for people. Obtained from [`IntegrationConfig::summary`].
pub struct Summary<'a>(&'a IntegrationConfig);

impl IntegrationConfig {
    /// The effective settings for display. No secret value is included.
    pub fn summary(&self) -> Summary<'_> {
        Summary(self)
    }
}

impl WebhookSettings {
    /// The webhook's address as it may be shown: scheme, host and port only. Its path and query often carry a token
    /// (Teams, Slack, Azure Functions' `?code=`), so they are never printed.
    pub fn shown_url(&self) -> String {
        let url = &self.url;
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let rest = if url.path() == "/" && url.query().is_none() {
            "/"
        } else {
            "/…"
        };
        format!("{}://{}{port}{rest}", url.scheme(), url.host_str().unwrap_or(""))
    }
}

impl StoreSettings {
    /// The database URL with any password replaced by `***`.
    pub fn redacted_url(&self) -> String {
        redact_url(self.url.expose_secret())
    }
}

pub(crate) fn redact_url(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) if url.password().is_some() => {
            // Setting a password only fails for URLs that cannot have one, which this one evidently can.
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        Ok(url) => url.to_string(),
        Err(_) => "(unparsable URL, not shown)".to_owned(),
    }
}

/// Where a secret comes from, for display: its variable, or the file its `_FILE` form names.
fn source(secret: &SecretSource, variable: &str) -> String {
    match secret.path() {
        Some(path) => format!("{variable}_FILE {}, read again at each use", path.display()),
        None => variable.to_owned(),
    }
}

impl Display for Summary<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let c = self.0;
        for org in &c.organisations {
            let creds = &org.credentials;
            let p = &org.credential_prefix;
            writeln!(f, "organisation {} ({})", org.id, org.name)?;
            writeln!(f, "  instance               {}", creds.instance_url)?;
            writeln!(f, "  authority              {}", creds.authority_host)?;
            match &org.ca_certificate_file {
                Some(file) => writeln!(
                    f,
                    "  extra CA certificate   {file} (trusted for Azure AD and Dynamics, beside the system's)"
                )?,
                None => writeln!(f, "  extra CA certificate   none (the system's roots)")?,
            }
            writeln!(f, "  tenant                 {}  ({p}_TENANT_ID)", creds.tenant_id)?;
            writeln!(f, "  client id              {}  ({p}_CLIENT_ID)", creds.client_id)?;
            writeln!(
                f,
                "  client secret          set  ({})",
                source(&creds.client_secret, &format!("{p}_CLIENT_SECRET"))
            )?;
            match org.client_secret_expires_on {
                Some(date) => writeln!(f, "  client secret expires  {date}")?,
                None => writeln!(
                    f,
                    "  client secret expires  unknown (set client_secret_expires_on to be warned)"
                )?,
            }
            writeln!(f, "  time zone              {}", org.time_zone)?;
            writeln!(f, "  language               {}", org.language.code())?;
            writeln!(f, "  mapping                {}", org.mapping_source)?;
            for record in org.mapping.records() {
                let written = record.fields().iter().filter(|s| s.writable_to_dynamics()).count();
                writeln!(
                    f,
                    "    {} -> {} ({}): {} fields, {} written to Dynamics, key {}",
                    record.kind(),
                    record.table(),
                    record.entity_set(),
                    record.fields().len(),
                    written,
                    record.alternate_key().column
                )?;
            }
            for (table, filter) in &org.filters {
                writeln!(f, "  filter {table:<15} {filter}")?;
            }
        }
        match c.schedule {
            Schedule::Nightly { at, time_zone } => writeln!(
                f,
                "schedule                 nightly at {} {time_zone}",
                at.format("%H:%M")
            )?,
            Schedule::Every(every) => writeln!(f, "schedule                 every {} minutes", every.as_secs() / 60)?,
        }
        let s = &c.sync;
        writeln!(
            f,
            "sync                     change tracking {}, overlap {} s, pages of {}, batches {}..{}, {} requests in flight",
            on_off(s.change_tracking),
            s.overlap.as_secs(),
            s.page_size,
            s.batch_size_initial,
            s.batch_size_max,
            s.parallel_requests
        )?;
        write!(f, "conflicts                {} by default", c.conflicts.default)?;
        for (field, strategy) in &c.conflicts.fields {
            write!(f, ", {field}: {strategy}")?;
        }
        writeln!(f)?;
        let r = &c.rate_limit;
        writeln!(
            f,
            "rate limit               {} requests and {} s execution per {} s, {} concurrent, {}% headroom",
            r.requests_per_window,
            r.execution_time_per_window.as_secs(),
            r.window.as_secs(),
            r.max_concurrent_requests,
            r.headroom_percent
        )?;
        let t = &c.retry;
        writeln!(
            f,
            "retry                    {} attempts, backoff {} ms..{} s, budget {} s, timeout {} s; records dead after {} runs",
            t.max_attempts,
            t.initial_backoff.as_millis(),
            t.max_backoff.as_secs(),
            t.total_budget.as_secs(),
            t.request_timeout.as_secs(),
            t.record_max_attempts
        )?;
        let n = &c.notifications;
        writeln!(f, "admin emails             {}", list_or_none(&n.admin_emails))?;
        match &n.email {
            Some(e) => writeln!(
                f,
                "email                    {}:{} ({:?}) from {}, login {}",
                e.smtp_host,
                e.smtp_port,
                e.tls,
                e.from,
                match &e.login {
                    Some((_, password)) if password.path().is_some() => "set (password from a file, read at each send)",
                    Some(_) => "set",
                    None => "none",
                }
            )?,
            None => writeln!(f, "email                    not configured")?,
        }
        match &n.webhook {
            Some(w) => writeln!(
                f,
                "webhook                  {} (signing secret {})",
                w.shown_url(),
                match &w.secret {
                    Some(secret) if secret.path().is_some() => "set, from a file read at each send",
                    Some(_) => "set",
                    None => "none",
                }
            )?,
            None => writeln!(f, "webhook                  not configured")?,
        }
        let auth = match &c.dashboard.auth {
            Some(DashboardAuth::Bearer(_)) => "bearer token set".to_owned(),
            Some(DashboardAuth::Basic { username, .. }) => format!("basic auth for {username}, password set"),
            None => format!(
                "credential missing ({}): the dashboard will not start",
                c.dashboard.credential_env
            ),
        };
        let transport = match (&c.dashboard.tls, c.dashboard.behind_tls_proxy) {
            (Some(tls), _) => format!("https with {}", tls.cert_file.display()),
            (None, true) => "http behind a TLS proxy".to_owned(),
            (None, false) if c.dashboard.clear_text_problem().is_some() => {
                "http off loopback: serve refuses it without dashboard.tls_cert_file or dashboard.behind_tls_proxy"
                    .to_owned()
            }
            (None, false) => "http".to_owned(),
        };
        writeln!(f, "dashboard                {} ({transport}), {auth}", c.dashboard.bind)?;
        if let Some((var, _)) = &c.dashboard.metrics_token {
            writeln!(f, "metrics token            set ({var}): reads /metrics only")?;
        }
        writeln!(f, "store                    {}", c.store.redacted_url())?;
        let h = &c.health;
        writeln!(
            f,
            "health                   fresh within {} h, alert after {} failed runs, secret warnings at {:?} days",
            h.freshness.as_secs() / 3600,
            h.failed_runs_alert,
            h.secret_expiry_warn_days
        )?;
        writeln!(
            f,
            "certification cache      stale after {} h",
            c.cache.stale_after.as_secs() / 3600
        )?;
        writeln!(
            f,
            "retention                {} days",
            c.retention.period.as_secs() / 86_400
        )?;
        write!(
            f,
            "accounting export        {}",
            if c.accounting.enabled {
                "on: approved postings are exported and reconciled after each sync"
            } else {
                "off"
            }
        )
    }
}

fn on_off(flag: bool) -> &'static str {
    if flag { "on" } else { "off" }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn database_passwords_are_replaced() {
        assert_eq!(
            redact_url("postgres://sync:hunter2@db/sync"),
            "postgres://sync:***@db/sync"
        );
        assert_eq!(redact_url("postgres://sync@db/sync"), "postgres://sync@db/sync");
        assert_eq!(redact_url("sqlite://sync-worker.db"), "sqlite://sync-worker.db");
        assert_eq!(redact_url("not a url hunter2"), "(unparsable URL, not shown)");
    }
}
