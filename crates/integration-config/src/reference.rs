//! The configuration reference: every environment variable and file key with its default and meaning. README.md
//! embeds [`reference_markdown`]; tests check that the README is current and that this list matches the keys the
//! loader accepts, so the documentation cannot drift from the code.

/// One documented setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The variable name or the dotted file key (`[]` marks an array of tables, `*` a key of your choosing).
    pub key: &'static str,
    /// The default, or `required`.
    pub default: &'static str,
    /// What it does.
    pub description: &'static str,
}

const fn s(key: &'static str, default: &'static str, description: &'static str) -> Setting {
    Setting {
        key,
        default,
        description,
    }
}

/// The environment variables the binaries read.
pub const ENVIRONMENT: &[Setting] = &[
    s(
        "DYNAMICS_TENANT_ID",
        "required",
        "HLF's Azure AD tenant: the Directory (tenant) id GUID or a verified domain. With another `credential_prefix`, `<PREFIX>_TENANT_ID`.",
    ),
    s(
        "DYNAMICS_CLIENT_ID",
        "required",
        "The app registration's Application (client) id (GUID).",
    ),
    s(
        "DYNAMICS_CLIENT_SECRET",
        "required",
        "The client secret's value. Never logged or shown. To rotate it without a restart, use `DYNAMICS_CLIENT_SECRET_FILE` instead (runbook: rotating the client secret).",
    ),
    s(
        "DYNAMICS_INSTANCE_URL",
        "required",
        "The Dynamics organisation root, e.g. `https://hlf.crm4.dynamics.com`. https only; http is accepted for a loopback emulator.",
    ),
    s(
        "<NAME>_FILE",
        "none",
        "Any variable above holding a credential (and the ones `password_env`, `secret_env` and `credential_env` name) may instead be given as a file: `DYNAMICS_CLIENT_SECRET_FILE=/run/secrets/client-secret`, as Kubernetes Secrets and systemd credentials are mounted. Relative to the configuration file's folder; a trailing line break is dropped; setting both forms is an error. The client secret, SMTP password, webhook secret and dashboard credential are read again at each use, so replacing the file rotates them under a running `daemon` or `serve`.",
    ),
    s(
        "SYNC_CONFIG",
        "none",
        "Path of the configuration file when `--config` is not given.",
    ),
    s(
        "SYNC_DATABASE_URL",
        "none",
        "Replaces `store.url`; use it for a PostgreSQL URL that carries a password.",
    ),
    s(
        "SYNC_DASHBOARD_CREDENTIAL",
        "none",
        "The dashboard's admin bearer token or basic-auth password (the variable name is set by `dashboard.credential_env`).",
    ),
    s(
        "RUST_LOG",
        "`info` for `run`, `daemon`, `reconcile`, `export-postings` and `serve`; `warn` for `plan`, `export-csv` and `config` (their report is the output); `error` for `demo`",
        "Log filter, e.g. `info,dynamics_client=debug`.",
    ),
];

/// The keys of the configuration file.
pub const SETTINGS: &[Setting] = &[
    s(
        "mapping",
        "required",
        "The field-mapping file, relative to the configuration file, or `builtin:hlf-default`.",
    ),
    s(
        "organisations[].id",
        "required",
        "The app's organisation id. Only this organisation's mentors sync with these credentials.",
    ),
    s(
        "organisations[].name",
        "required",
        "The organisation's name, for logs, the dashboard and notifications.",
    ),
    s(
        "organisations[].credential_prefix",
        "DYNAMICS",
        "Prefix of the four credential variables, e.g. `OTHER` for `OTHER_CLIENT_SECRET`. Each organisation needs its own.",
    ),
    s(
        "organisations[].time_zone",
        "Europe/Oslo",
        "IANA time zone; a certification expires when the local date is past its expiry date.",
    ),
    s(
        "organisations[].language",
        "nb",
        "Notification language: `nb` (bokmål) or `en`.",
    ),
    s(
        "organisations[].mapping",
        "top-level `mapping`",
        "A field-mapping file for this organisation only.",
    ),
    s(
        "organisations[].authority_host",
        "https://login.microsoftonline.com",
        "Azure AD authority; change it for a sovereign cloud.",
    ),
    s(
        "organisations[].ca_certificate_file",
        "none",
        "A PEM file of extra root certificates to trust for Azure AD and Dynamics (a TLS-inspecting proxy, or the local emulator's `--ca-cert-out`).",
    ),
    s(
        "organisations[].client_secret_expires_on",
        "none",
        "The client secret's expiry date (e.g. `2027-03-01`); alerts warn ahead of it.",
    ),
    s(
        "organisations[].filters.*",
        "none",
        "OData `$filter` per table logical name, e.g. `contact = \"statecode eq 0\"`. A filtered table is read by `modifiedon`, not change tracking.",
    ),
    s(
        "schedule.nightly_at",
        "02:00",
        "Local time of the nightly run (24-hour HH:MM).",
    ),
    s(
        "schedule.time_zone",
        "Europe/Oslo",
        "Time zone of `nightly_at`; daylight-saving changes are handled.",
    ),
    s(
        "schedule.every_minutes",
        "none",
        "Run every N minutes (5 to 1440) instead of nightly.",
    ),
    s(
        "sync.change_tracking",
        "true",
        "Use Dynamics change tracking where the table has it and no filter applies.",
    ),
    s(
        "sync.overlap_seconds",
        "300",
        "How far back a `modifiedon` query reaches before the last watermark.",
    ),
    s(
        "sync.page_size",
        "5000",
        "Rows per page (`Prefer: odata.maxpagesize`), at most 5000.",
    ),
    s(
        "sync.batch_size_initial",
        "500",
        "Operations in the first run's first `$batch`; doubles while Dynamics neither throttles nor takes 30 s over a batch, halves when it does, and each later run starts at the size the last one ended with.",
    ),
    s("sync.batch_size_max", "1000", "Largest `$batch`, at most 1000."),
    s("sync.parallel_requests", "4", "Requests kept in flight at once."),
    s(
        "conflicts.default",
        "newest-wins",
        "Strategy for a shared field changed on both sides: `newest-wins`, `app-wins`, `dynamics-wins` or `manual`.",
    ),
    s(
        "conflicts.fields.*",
        "none",
        "Per-field strategy by app field name, e.g. `phone = \"manual\"`.",
    ),
    s(
        "rate_limit.requests_per_window",
        "6000",
        "Dynamics' request limit per user per window (a `$batch` counts once).",
    ),
    s(
        "rate_limit.execution_seconds_per_window",
        "1200",
        "Dynamics' combined execution-time limit per window.",
    ),
    s("rate_limit.window_seconds", "300", "The sliding window of the limits."),
    s(
        "rate_limit.max_concurrent_requests",
        "52",
        "Dynamics' concurrent request limit.",
    ),
    s(
        "rate_limit.headroom_percent",
        "10",
        "Share of each limit left unused, for other clients of the same application user.",
    ),
    s(
        "retry.max_attempts",
        "10",
        "Attempts per request (429, 502, 503, 504, timeouts, resets), the first included.",
    ),
    s(
        "retry.initial_backoff_ms",
        "500",
        "First backoff without `Retry-After`; doubles each attempt, with jitter.",
    ),
    s("retry.max_backoff_seconds", "60", "Longest single backoff."),
    s(
        "retry.total_budget_seconds",
        "900",
        "Most time one request may spend waiting and retrying.",
    ),
    s("retry.request_timeout_seconds", "120", "Timeout of one HTTP request."),
    s(
        "retry.record_max_attempts",
        "5",
        "Runs a failed record is retried in before it is dead and shown for an admin to act on.",
    ),
    s("notifications.admin_emails", "[]", "Who receives alert emails."),
    s(
        "notifications.max_delivery_attempts",
        "10",
        "Delivery attempts before a notification is shown as undeliverable.",
    ),
    s(
        "notifications.email.smtp_host",
        "required with [notifications.email]",
        "SMTP server.",
    ),
    s(
        "notifications.email.smtp_port",
        "587 (465 with tls, 25 with none)",
        "SMTP port.",
    ),
    s(
        "notifications.email.tls",
        "starttls",
        "`starttls`, `tls`, or `none` (only for a relay on this machine).",
    ),
    s(
        "notifications.email.from",
        "required with [notifications.email]",
        "Sender address.",
    ),
    s(
        "notifications.email.username",
        "none",
        "SMTP user; set with `password_env`.",
    ),
    s(
        "notifications.email.password_env",
        "none",
        "Name of the variable holding the SMTP password.",
    ),
    s(
        "notifications.webhook.url",
        "required with [notifications.webhook]",
        "Where notifications are POSTed as JSON (https, or http on loopback).",
    ),
    s(
        "notifications.webhook.secret_env",
        "required unless the URL is on loopback",
        "Name of the variable holding the webhook signing secret (README: Webhook). Only the URL's scheme and host are ever shown.",
    ),
    s(
        "dashboard.bind",
        "127.0.0.1:8088",
        "Address `sync-worker serve` listens on.",
    ),
    s(
        "dashboard.auth",
        "bearer",
        "Admin credential kind: `bearer` (token) or `basic`.",
    ),
    s("dashboard.username", "none", "User name for `basic`."),
    s(
        "dashboard.credential_env",
        "SYNC_DASHBOARD_CREDENTIAL",
        "Name of the variable holding the token or password; without it the dashboard refuses to start.",
    ),
    s(
        "store.url",
        "sqlite://sync-worker.db",
        "The sync-state database: `sqlite://PATH` (a relative PATH is relative to this file, like every path in it) or `postgres://USER@HOST/DB` (`SYNC_DATABASE_URL` overrides).",
    ),
    s(
        "health.freshness_hours",
        "24",
        "The last successful sync must be more recent than this.",
    ),
    s(
        "health.failed_runs_alert",
        "2",
        "Consecutive failed runs that raise an alert.",
    ),
    s(
        "dashboard.tls_cert_file",
        "none",
        "With `tls_key_file`: PEM certificate chain (relative to the configuration file) that `serve` speaks HTTPS with.",
    ),
    s(
        "dashboard.tls_key_file",
        "none",
        "The private key (PEM) of `tls_cert_file`.",
    ),
    s(
        "dashboard.behind_tls_proxy",
        "false",
        "`true` states that a TLS-terminating proxy (an ingress, nginx) is the only way to the dashboard, so `serve` may listen off loopback in plain HTTP; otherwise a non-loopback `bind` needs the TLS files.",
    ),
    s(
        "dashboard.metrics_credential_env",
        "none",
        "Name of the variable holding a bearer token that may read `/metrics` and nothing else (at least 32 characters), for a Prometheus scraper.",
    ),
    s(
        "health.secret_expiry_warn_days",
        "[30, 14, 7, 1]",
        "Days before `client_secret_expires_on` at which to warn.",
    ),
    s(
        "health.delta_token_lifetime_days",
        "7",
        "How long Dynamics keeps delta tokens (`ExpireChangeTrackingInDays`).",
    ),
    s(
        "cache.stale_after_hours",
        "26",
        "Cached certification status older than this is flagged stale.",
    ),
    s(
        "retention.days",
        "90",
        "Days to keep run logs, failed records, conflicts, notifications, resolved alerts and unconfirmed cache entries (GDPR; docs/privacy.md). `run` and `daemon` delete older rows after every round; `sync-worker purge [--dry-run]` does it on demand.",
    ),
    s(
        "accounting.enabled",
        "false",
        "Export approved postings (honoraria, expense reimbursements) to Dynamics after each organisation's sync in `run` and `daemon`, then reconcile them; `sync-worker export-postings` runs it alone. Needs `[records.posting]` in the mapping.",
    ),
];

/// The reference as Markdown tables, as embedded in README.md.
pub fn reference_markdown() -> String {
    let mut out = String::new();
    out.push_str("Environment variables (credentials come only from here):\n\n");
    table(&mut out, "variable", ENVIRONMENT);
    out.push_str("\nConfiguration file keys (TOML; `[]` is an array of tables, `*` a name of your choosing):\n\n");
    table(&mut out, "key", SETTINGS);
    out
}

fn table(out: &mut String, first: &str, rows: &[Setting]) {
    out.push_str(&format!("| {first} | default | meaning |\n| --- | --- | --- |\n"));
    for row in rows {
        out.push_str(&format!("| `{}` | {} | {} |\n", row.key, row.default, row.description));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;
    use crate::raw::RawConfig;

    /// Every key path the loader accepts, read from the JSON schema of the raw file structures, so a field added to
    /// them without a reference entry fails this test.
    fn accepted_keys() -> BTreeSet<String> {
        let schema = schemars::schema_for!(RawConfig);
        let root = schema.as_value();
        let mut keys = BTreeSet::new();
        collect(root, root, "", &mut keys);
        keys
    }

    fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let name = reference.trim_start_matches("#/$defs/");
                resolve(root, &root["$defs"][name])
            }
            None => schema,
        }
    }

    fn collect(root: &Value, schema: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        let schema = resolve(root, schema);
        if let Some(variants) = schema
            .get("anyOf")
            .or_else(|| schema.get("oneOf"))
            .and_then(Value::as_array)
        {
            for variant in variants.iter().filter(|v| v.get("type") != Some(&Value::from("null"))) {
                collect(root, variant, prefix, out);
            }
            return;
        }
        let join = |key: &str| {
            if prefix.is_empty() {
                key.to_owned()
            } else {
                format!("{prefix}.{key}")
            }
        };
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (key, value) in properties {
                collect(root, value, &join(key), out);
            }
            return;
        }
        if let Some(items) = schema.get("items") {
            let items = resolve(root, items);
            if items.get("properties").is_some() {
                collect(root, items, &format!("{prefix}[]"), out);
                return;
            }
        }
        if schema.get("additionalProperties").is_some_and(Value::is_object) {
            out.insert(join("*"));
            return;
        }
        out.insert(prefix.to_owned());
    }

    #[test]
    fn reference_lists_exactly_the_keys_the_loader_accepts() {
        let documented: BTreeSet<String> = SETTINGS.iter().map(|s| s.key.to_owned()).collect();
        let accepted = accepted_keys();
        let undocumented: Vec<_> = accepted.difference(&documented).collect();
        let unknown: Vec<_> = documented.difference(&accepted).collect();
        assert!(
            undocumented.is_empty() && unknown.is_empty(),
            "add these keys to SETTINGS: {undocumented:?}\nremove these from SETTINGS: {unknown:?}"
        );
    }
}
