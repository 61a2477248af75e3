use std::time::Duration;

use chrono::{NaiveDate, NaiveTime};
use expect_test::expect;
use integration_config::{
    ConflictStrategy, DashboardAuth, ExposeSecret, IntegrationConfig, Language, Schedule, SmtpTls,
};

use super::{example_text, fixtures, good_env, load, problems};

const MINIMAL: &str = r#"
mapping = "../mapping/hlf-default.toml"
[[organisations]]
id = "hlf"
name = "HLF"
"#;

#[test]
fn example_configuration_loads_every_value() {
    let config = IntegrationConfig::load(&fixtures().join("example.toml"), &good_env()).unwrap();
    assert_eq!(config.organisations.len(), 2);
    let hlf = config.organisation("hlf").unwrap();
    assert_eq!(
        hlf.credentials.instance_url.api_base().as_str(),
        "https://hlf.crm4.dynamics.com/api/data/v9.2/"
    );
    assert_eq!(hlf.credentials.client_secret.loaded().expose_secret(), super::SECRET);
    assert_eq!(hlf.time_zone, chrono_tz::Europe::Oslo);
    assert_eq!(hlf.language, Language::Norwegian);
    assert_eq!(hlf.client_secret_expires_on, NaiveDate::from_ymd_opt(2027, 3, 1));
    assert_eq!(hlf.filters["contact"], "statecode eq 0");
    assert!(hlf.mapping.record("mentor").is_some());
    let bergen = config.organisation("lhl-bergen").unwrap();
    assert_eq!(bergen.credentials.tenant_id, "bergen.onmicrosoft.com");
    assert_eq!(bergen.language, Language::English);
    assert_eq!(
        config.schedule,
        Schedule::Nightly {
            at: NaiveTime::from_hms_opt(2, 0, 0).unwrap(),
            time_zone: chrono_tz::Europe::Oslo
        }
    );
    let email = config.notifications.email.as_ref().unwrap();
    assert_eq!(
        (email.smtp_host.as_str(), email.smtp_port, email.tls),
        ("smtp.hlf.example", 587, SmtpTls::StartTls)
    );
    assert_eq!(
        email.login.as_ref().unwrap().1.loaded().expose_secret(),
        "smtp-password-value"
    );
    assert!(config.notifications.webhook.as_ref().unwrap().secret.is_some());
    assert!(
        matches!(&config.dashboard.auth, Some(DashboardAuth::Bearer(t)) if t.loaded().expose_secret() == "dashboard-token-value")
    );
}

#[test]
fn minimal_configuration_gets_the_documented_defaults() {
    let config = load(MINIMAL, &good_env()).unwrap();
    let hlf = &config.organisations[0];
    assert_eq!(hlf.credential_prefix, "DYNAMICS");
    assert_eq!(
        hlf.credentials.authority_host.as_str(),
        "https://login.microsoftonline.com/"
    );
    assert_eq!(config.conflicts.strategy_for("phone"), ConflictStrategy::NewestWins);
    assert_eq!(config.rate_limit.requests_per_window, 6000);
    assert_eq!(config.rate_limit.execution_time_per_window, Duration::from_secs(1200));
    assert_eq!(config.rate_limit.window, Duration::from_secs(300));
    assert_eq!(config.rate_limit.max_concurrent_requests, 52);
    assert_eq!(config.retry.max_attempts, 10);
    assert_eq!(config.sync.page_size, 5000);
    assert_eq!(config.health.secret_expiry_warn_days, [30, 14, 7, 1]);
    assert_eq!(config.retention.period, Duration::from_secs(90 * 86_400));
    assert!(
        config.dashboard.auth.is_some(),
        "SYNC_DASHBOARD_CREDENTIAL is set in the test environment"
    );
    let mut env = good_env();
    env.remove("SYNC_DASHBOARD_CREDENTIAL");
    assert!(load(MINIMAL, &env).unwrap().dashboard.auth.is_none());
}

#[test]
fn builtin_mapping_needs_no_file() {
    let text = MINIMAL.replace("../mapping/hlf-default.toml", "builtin:hlf-default");
    let config = load(&text, &good_env()).unwrap();
    assert_eq!(config.organisations[0].mapping_source, "builtin:hlf-default");
}

#[test]
fn each_missing_credential_variable_is_named() {
    for var in [
        "DYNAMICS_TENANT_ID",
        "DYNAMICS_CLIENT_ID",
        "DYNAMICS_CLIENT_SECRET",
        "DYNAMICS_INSTANCE_URL",
    ] {
        let mut env = good_env();
        env.remove(var);
        let got = problems(MINIMAL, &env);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with(&format!("{var}: missing; set it (or {var}_FILE) to ")),
            "{got:?}"
        );
        env.insert(var.to_owned(), String::new());
        let got = problems(MINIMAL, &env);
        assert!(got[0].starts_with(&format!("{var}: is empty; set it to ")), "{got:?}");
    }
}

#[track_caller]
fn check_env(var: &str, value: &str, expected: &str) {
    let mut env = good_env();
    env.insert(var.to_owned(), value.to_owned());
    assert_eq!(problems(MINIMAL, &env), [format!("{var}: {expected}")], "{var}={value}");
}

#[test]
fn each_bad_credential_value_is_explained() {
    check_env(
        "DYNAMICS_TENANT_ID",
        "common",
        "`common` is a multi-tenant alias; client credentials need HLF's own tenant id (a GUID) or domain",
    );
    check_env(
        "DYNAMICS_TENANT_ID",
        "HLF tenant",
        "not a tenant id; use the Directory (tenant) id (a GUID) or a verified domain such as hlf.onmicrosoft.com; HLF IT finds it in the Azure portal under App registrations",
    );
    check_env(
        "DYNAMICS_CLIENT_ID",
        "likeperson-sync",
        "not a GUID; copy the Application (client) id, not the app's name; HLF IT finds it in the Azure portal under App registrations",
    );
    check_env(
        "DYNAMICS_CLIENT_SECRET",
        " padded ",
        "has leading or trailing white space; copy the secret's value again without it",
    );
    check_env(
        "DYNAMICS_INSTANCE_URL",
        "http://hlf.crm4.dynamics.com",
        "must use https; only a loopback emulator may use http (e.g. https://hlf.crm4.dynamics.com)",
    );
    check_env(
        "DYNAMICS_INSTANCE_URL",
        "https://hlf.example.org",
        "`hlf.example.org` is not a Dynamics 365 address; use the organisation URL from the Power Platform admin center, e.g. https://hlf.crm4.dynamics.com",
    );
}

#[test]
fn loopback_instance_urls_may_use_http_for_the_emulator() {
    let mut env = good_env();
    env.insert("DYNAMICS_INSTANCE_URL".into(), "http://127.0.0.1:41234".into());
    let config = load(MINIMAL, &env).unwrap();
    assert!(config.organisations[0].credentials.instance_url.is_loopback());
}

#[track_caller]
fn check_key(extra: &str, expected: &str) {
    let text = format!("{MINIMAL}\n{extra}");
    assert_eq!(problems(&text, &good_env()), [expected], "{extra}");
}

#[test]
fn each_bad_file_value_is_explained() {
    check_key(
        "[schedule]\nnightly_at = \"2am\"",
        "schedule.nightly_at: `2am` is not a time; write it as 24-hour HH:MM, e.g. \"02:00\"",
    );
    check_key(
        "[schedule]\ntime_zone = \"Oslo\"",
        "schedule.time_zone: `Oslo` is not a time zone; use an IANA name such as \"Europe/Oslo\"",
    );
    check_key(
        "[schedule]\nnightly_at = \"02:00\"\nevery_minutes = 30",
        "schedule: set either `nightly_at` or `every_minutes`, not both",
    );
    check_key(
        "[schedule]\nevery_minutes = 1",
        "schedule.every_minutes: 1 is out of range; use a whole number from 5 to 1440",
    );
    check_key(
        "[sync]\npage_size = 10000",
        "sync.page_size: 10000 is out of range; use a whole number from 1 to 5000",
    );
    check_key(
        "[sync]\nbatch_size_max = 0",
        "sync.batch_size_max: 0 is out of range; use a whole number from 1 to 1000",
    );
    check_key(
        "[sync]\nbatch_size_initial = 500\nbatch_size_max = 100",
        "sync.batch_size_initial: 500 is larger than sync.batch_size_max (100); lower it",
    );
    check_key(
        "[conflicts]\ndefault = \"latest-wins\"",
        "conflicts.default: `latest-wins` is not a strategy; use one of \"newest-wins\", \"app-wins\", \"dynamics-wins\", \"manual\"",
    );
    check_key(
        "[conflicts.fields]\nemail = \"manual\"",
        "conflicts.fields.email: `email` is not a shared field, so it never conflicts; remove the override or make it shared",
    );
    check_key(
        "[conflicts.fields]\nshoe_size = \"manual\"",
        "conflicts.fields.shoe_size: `shoe_size` is not a field in the mapping; use an app field name",
    );
    check_key(
        "[rate_limit]\nheadroom_percent = 95",
        "rate_limit.headroom_percent: 95 is out of range; use a whole number from 0 to 90",
    );
    check_key(
        "[rate_limit]\nrequests_per_window = -1",
        "rate_limit.requests_per_window: -1 is out of range; use a whole number from 1 to 1000000",
    );
    check_key(
        "[retry]\ninitial_backoff_ms = 60000\nmax_backoff_seconds = 1",
        "retry.initial_backoff_ms: is longer than retry.max_backoff_seconds; lower it",
    );
    check_key(
        "[notifications]\nadmin_emails = [\"it at hlf\"]",
        "notifications.admin_emails[0]: `it at hlf` is not an email address",
    );
    check_key(
        "[notifications.email]\nsmtp_host = \"smtp.hlf.example\"\ntls = \"none\"\nfrom = \"a@hlf.example\"",
        "notifications.email.tls: \"none\" sends mail in plain text and is accepted only for a relay on this machine; use \"starttls\" or \"tls\"",
    );
    check_key(
        "[notifications.email]\nsmtp_host = \"smtp.hlf.example\"\nfrom = \"a@hlf.example\"\nusername = \"u\"",
        "notifications.email: set both `username` and `password_env`, or neither for a server without login",
    );
    check_key(
        "[notifications.email]\nsmtp_host = \"smtp.hlf.example\"\nfrom = \"a@hlf.example\"\nusername = \"u\"\npassword_env = \"UNSET_SMTP_PASSWORD\"",
        "UNSET_SMTP_PASSWORD: missing; set it (or UNSET_SMTP_PASSWORD_FILE) to the SMTP password (named by notifications.email.password_env)",
    );
    check_key(
        "[notifications.webhook]\nurl = \"http://hooks.hlf.example\"",
        "notifications.webhook.url: must use https (http is accepted only on loopback)",
    );
    check_key(
        "[dashboard]\nbind = \"localhost\"",
        "dashboard.bind: `localhost` is not an address; write it as IP:PORT, e.g. \"127.0.0.1:8088\"",
    );
    check_key(
        "[dashboard]\nauth = \"basic\"",
        "dashboard.username: missing; basic authentication needs a user name",
    );
    check_key(
        "[dashboard]\nauth = \"oauth\"",
        "dashboard.auth: `oauth` is not a choice; use \"bearer\" or \"basic\"",
    );
    check_key(
        "[store]\nurl = \"mysql://db\"",
        "store.url: is not a database URL; use sqlite://PATH or postgres://USER@HOST/DB",
    );
    check_key(
        "[health]\nsecret_expiry_warn_days = [30, 0]",
        "health.secret_expiry_warn_days[1]: 0 is out of range; use a whole number from 1 to 365",
    );
    check_key(
        "[retention]\ndays = 0",
        "retention.days: 0 is out of range; use a whole number from 1 to 3650",
    );
    check_key(
        "[cache]\nstale_after_hours = 0",
        "cache.stale_after_hours: 0 is out of range; use a whole number from 1 to 720",
    );
    check_key(
        "[sync]\npage_sise = 100",
        "sync.page_sise: unknown key; remove it or check its spelling against the configuration reference in README.md",
    );
}

#[test]
fn organisation_values_are_checked() {
    let base = "mapping = \"../mapping/hlf-default.toml\"\n";
    let org = |body: &str| format!("{base}[[organisations]]\nid = \"hlf\"\nname = \"HLF\"\n{body}");
    let check = |body: &str, expected: &str| {
        assert_eq!(problems(&org(body), &good_env()), [expected], "{body}");
    };
    check(
        "language = \"de\"",
        "organisations[0].language: `de` is not supported; use \"nb\" or \"en\"",
    );
    check(
        "time_zone = \"CET+1\"",
        "organisations[0].time_zone: `CET+1` is not a time zone; use an IANA name such as \"Europe/Oslo\"",
    );
    check(
        "credential_prefix = \"dynamics\"",
        "organisations[0].credential_prefix: `dynamics` cannot prefix environment variables; use upper-case letters, digits and `_`",
    );
    check(
        "authority_host = \"http://login.example\"",
        "organisations[0].authority_host: must use https (http is accepted only for a loopback emulator)",
    );
    check(
        "client_secret_expires_on = 2027-03-01T10:00:00",
        "organisations[0].client_secret_expires_on: not a date; write it as 2027-03-01",
    );
    check(
        "[organisations.filters]\naccount = \"statecode eq 0\"",
        "organisations[0].filters.account: not a table the mapping reads; key filters by table logical name, e.g. `contact`",
    );
    check(
        "[organisations.filters]\ncontact = \"(statecode eq 0\"",
        "organisations[0].filters.contact: has a `(` without a matching `)`",
    );
    assert_eq!(
        problems(base, &good_env()),
        ["organisations: no organisation configured; add an [[organisations]] table with at least `id` and `name`"]
    );
}

#[test]
fn organisations_need_their_own_ids_and_credentials() {
    let text = format!("{MINIMAL}\n[[organisations]]\nid = \"hlf\"\nname = \"Again\"\n");
    expect![[r#"
        [
            "organisations[1].id: organisation `hlf` is configured twice; keep one entry",
            "organisations[1].credential_prefix: `DYNAMICS` is already used by another organisation; each organisation syncs with its own credentials",
        ]
    "#]]
    .assert_debug_eq(&problems(&text, &good_env()));

    let mut env = good_env();
    env.retain(|k, _| !k.starts_with("BERGEN_"));
    let got = problems(&example_text(), &env);
    let vars: Vec<_> = got.iter().map(|p| p.split(':').next().unwrap()).collect();
    assert_eq!(
        vars,
        [
            "BERGEN_TENANT_ID",
            "BERGEN_CLIENT_ID",
            "BERGEN_CLIENT_SECRET",
            "BERGEN_INSTANCE_URL"
        ]
    );
}

#[test]
fn several_problems_are_reported_at_once() {
    let text = r#"
mapping = "../mapping/missing.toml"
colour = "blue"
[[organisations]]
name = ""
language = "sv"
[schedule]
nightly_at = "25:00"
[sync]
page_size = 0
[rate_limit]
window_seconds = 0
"#;
    let mut env = good_env();
    env.remove("DYNAMICS_CLIENT_SECRET");
    env.insert("DYNAMICS_INSTANCE_URL".into(), "http://hlf.crm4.dynamics.com".into());
    let error = load(text, &env).unwrap_err().to_string();
    let error = error.replace(&fixtures().display().to_string(), "<fixtures>");
    expect![[r#"
        the configuration has 10 problem(s):
          - colour: unknown key; remove it or check its spelling against the configuration reference in README.md
          - organisations[0].id: missing; set it to the app's organisation id, e.g. "hlf"
          - organisations[0].name: missing; set the organisation's name as coordinators know it
          - organisations[0].language: `sv` is not supported; use "nb" or "en"
          - DYNAMICS_CLIENT_SECRET: missing; set it (or DYNAMICS_CLIENT_SECRET_FILE) to the client secret's value (Certificates & secrets in the app registration)
          - DYNAMICS_INSTANCE_URL: must use https; only a loopback emulator may use http (e.g. https://hlf.crm4.dynamics.com)
          - mapping: cannot read the mapping file <fixtures>/../mapping/missing.toml: No such file or directory (os error 2)
          - schedule.nightly_at: `25:00` is not a time; write it as 24-hour HH:MM, e.g. "02:00"
          - sync.page_size: 0 is out of range; use a whole number from 1 to 5000
          - rate_limit.window_seconds: 0 is out of range; use a whole number from 1 to 86400"#]]
    .assert_eq(&error);
}

#[test]
fn mapping_problems_are_reported_with_the_file() {
    let dir = tempdir();
    std::fs::write(
        dir.join("mapping.toml"),
        "version = 1\n[records.mentor]\ntable = \"contact\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("sync.toml"),
        MINIMAL.replace("../mapping/hlf-default.toml", "mapping.toml"),
    )
    .unwrap();
    let error = IntegrationConfig::load(&dir.join("sync.toml"), &good_env()).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("mapping ("), "{text}");
    assert!(
        text.contains("mapping.toml) records.mentor.entity_set: missing"),
        "{text}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn unreadable_and_malformed_files_say_what_to_do() {
    let error = IntegrationConfig::load(&fixtures().join("does-not-exist.toml"), &good_env()).unwrap_err();
    assert!(
        error.to_string().starts_with("cannot read the configuration file"),
        "{error}"
    );
    assert!(
        error.to_string().ends_with("check the --config flag or SYNC_CONFIG"),
        "{error}"
    );
    let error = load("[[organisations]\n", &good_env()).unwrap_err().to_string();
    assert!(
        error.starts_with("the configuration file test.toml is not valid TOML"),
        "{error}"
    );
    assert!(error.contains("line 1"), "{error}");
}

#[test]
fn database_url_comes_from_the_environment_when_set() {
    let mut env = good_env();
    env.insert("SYNC_DATABASE_URL".into(), "postgres://sync:pw@db.internal/sync".into());
    let config = load(MINIMAL, &env).unwrap();
    assert_eq!(config.store.url.expose_secret(), "postgres://sync:pw@db.internal/sync");
    env.insert("SYNC_DATABASE_URL".into(), "mysql://sync:pw@db".into());
    assert_eq!(
        problems(MINIMAL, &env),
        ["SYNC_DATABASE_URL: is not a database URL; use sqlite://PATH or postgres://USER@HOST/DB"]
    );
}

#[test]
fn basic_dashboard_auth_takes_user_and_password() {
    let text = format!("{MINIMAL}\n[dashboard]\nauth = \"basic\"\nusername = \"admin\"\n");
    let config = load(&text, &good_env()).unwrap();
    match config.dashboard.auth {
        Some(DashboardAuth::Basic { username, password }) => {
            assert_eq!(username, "admin");
            assert_eq!(password.loaded().expose_secret(), "dashboard-token-value");
        }
        other => panic!("expected basic auth, got {other:?}"),
    }
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("integration-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A folder of its own under the system's temporary folder, for secret files.
fn secret_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("config-secret-files-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn every_secret_variable_can_name_a_file_instead() {
    let dir = secret_dir("all");
    let mut env = good_env();
    for (var, value) in [
        ("DYNAMICS_CLIENT_SECRET", "from-a-file\n"),
        ("DYNAMICS_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47\n"),
        ("SYNC_SMTP_PASSWORD", "smtp-from-file"),
        ("SYNC_WEBHOOK_SECRET", "webhook-from-file"),
        ("SYNC_DASHBOARD_CREDENTIAL", "dashboard-from-file"),
        ("SYNC_DATABASE_URL", "postgres://sync:pw@db/sync\n"),
    ] {
        let path = dir.join(var.to_lowercase());
        std::fs::write(&path, value).unwrap();
        env.remove(var);
        env.insert(format!("{var}_FILE"), path.display().to_string());
    }
    let config = load(&example_text(), &env).unwrap();
    let hlf = config.organisation("hlf").unwrap();
    let secret = &hlf.credentials.client_secret;
    assert_eq!(secret.loaded().expose_secret(), "from-a-file");
    assert_eq!(secret.path(), Some(dir.join("dynamics_client_secret").as_path()));
    assert_eq!(hlf.credentials.tenant_id, "72f988bf-86f1-41af-91ab-2d7cd011db47");
    assert_eq!(config.store.url.expose_secret(), "postgres://sync:pw@db/sync");
    let email = config.notifications.email.as_ref().unwrap();
    assert_eq!(
        email.login.as_ref().unwrap().1.loaded().expose_secret(),
        "smtp-from-file"
    );
    let webhook = config.notifications.webhook.as_ref().unwrap();
    assert_eq!(
        webhook.secret.as_ref().unwrap().loaded().expose_secret(),
        "webhook-from-file"
    );
    assert!(
        matches!(&config.dashboard.auth, Some(DashboardAuth::Bearer(t)) if t.loaded().expose_secret() == "dashboard-from-file")
    );

    // Rotated on disk: the next use reads the new value, without reloading the configuration.
    std::fs::write(dir.join("dynamics_client_secret"), "rotated\n").unwrap();
    assert_eq!(secret.current().unwrap().expose_secret(), "rotated");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_secret_file_that_cannot_be_read_or_is_doubled_is_named() {
    let dir = secret_dir("bad");
    let mut env = good_env();
    env.remove("DYNAMICS_CLIENT_SECRET");
    let missing = dir.join("nope");
    env.insert("DYNAMICS_CLIENT_SECRET_FILE".into(), missing.display().to_string());
    let empty = dir.join("empty");
    std::fs::write(&empty, "\n").unwrap();
    env.insert("SYNC_SMTP_PASSWORD_FILE".into(), empty.display().to_string());
    let found = problems(&example_text(), &env);
    let client = found
        .iter()
        .find(|p| p.starts_with("DYNAMICS_CLIENT_SECRET_FILE:"))
        .unwrap_or_else(|| panic!("{found:#?}"));
    assert!(client.contains(&missing.display().to_string()), "{client}");
    assert!(client.contains("mounted and readable"), "{client}");
    assert!(
        found.contains(
            &"SYNC_SMTP_PASSWORD: is set, and so is SYNC_SMTP_PASSWORD_FILE; keep only one of them".to_owned()
        ),
        "{found:#?}"
    );
    // The message for a missing variable names the file form too.
    let mut env = good_env();
    env.remove("DYNAMICS_CLIENT_SECRET");
    let found = problems(&example_text(), &env);
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("DYNAMICS_CLIENT_SECRET: missing; set it (or DYNAMICS_CLIENT_SECRET_FILE) to")),
        "{found:#?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_relative_secret_file_is_relative_to_the_configuration_file() {
    let dir = secret_dir("relative");
    std::fs::write(
        dir.join("config.toml"),
        MINIMAL.replace("../mapping/hlf-default.toml", "builtin:hlf-default"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    std::fs::write(dir.join("secrets/client"), "relative-secret").unwrap();
    let mut env = good_env();
    env.remove("DYNAMICS_CLIENT_SECRET");
    env.insert("DYNAMICS_CLIENT_SECRET_FILE".into(), "secrets/client".into());
    let config = IntegrationConfig::load(&dir.join("config.toml"), &env).unwrap();
    let secret = &config.organisations[0].credentials.client_secret;
    assert_eq!(secret.loaded().expose_secret(), "relative-secret");
    assert!(secret.path().unwrap().is_absolute());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_accounting_export_is_off_by_default_and_needs_a_postings_mapping_when_on() {
    assert!(!load(MINIMAL, &good_env()).unwrap().accounting.enabled);
    let on = format!("{MINIMAL}\n[accounting]\nenabled = true\n");
    assert!(load(&on, &good_env()).unwrap().accounting.enabled);

    // A mapping without [records.posting]: the builtin one minus that table.
    let dir = secret_dir("accounting");
    let builtin = std::fs::read_to_string(fixtures().join("../mapping/hlf-default.toml")).unwrap();
    let without = builtin.split("[records.posting]").next().unwrap();
    std::fs::write(dir.join("mapping.toml"), without).unwrap();
    let text =
        "mapping = \"mapping.toml\"\n[[organisations]]\nid = \"hlf\"\nname = \"HLF\"\n[accounting]\nenabled = true\n";
    std::fs::write(dir.join("config.toml"), text).unwrap();
    let error = IntegrationConfig::load(&dir.join("config.toml"), &good_env()).unwrap_err();
    let found: Vec<String> = error.problems().iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with("accounting.enabled: organisation hlf's mapping (")
            && found[0].contains("has no [records.posting]"),
        "{found:#?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_webhook_off_this_machine_must_be_signed_and_is_shown_without_its_path() {
    let unsigned =
        "[notifications.webhook]\nurl = \"https://hlf.webhook.office.com/webhookb2/secret-token?code=abc\"\n";
    let found = problems(&format!("{MINIMAL}{unsigned}"), &good_env());
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with("notifications.webhook.secret_env: required for a webhook off this machine"),
        "{found:#?}"
    );
    let signed = format!("{unsigned}secret_env = \"SYNC_WEBHOOK_SECRET\"\n");
    let config = load(&format!("{MINIMAL}{signed}"), &good_env()).unwrap();
    let webhook = config.notifications.webhook.as_ref().unwrap();
    assert_eq!(webhook.shown_url(), "https://hlf.webhook.office.com/…");
    let summary = config.summary().to_string();
    assert!(
        summary.contains("webhook                  https://hlf.webhook.office.com/… (signing secret set)"),
        "{summary}"
    );
    assert!(
        !summary.contains("secret-token") && !summary.contains("code=abc"),
        "{summary}"
    );
    // A loopback receiver (a local relay) may do without a signature.
    let local = "[notifications.webhook]\nurl = \"http://127.0.0.1:9000/hook\"\n";
    assert!(load(&format!("{MINIMAL}{local}"), &good_env()).is_ok());
}

#[test]
fn the_dashboard_off_loopback_needs_its_own_tls_or_a_declared_proxy() {
    // Plain HTTP on every interface loads (the jobs do not serve), but `serve` is told why it must refuse.
    let open = load(&format!("{MINIMAL}[dashboard]\nbind = \"0.0.0.0:8088\"\n"), &good_env()).unwrap();
    let problem = open.dashboard.clear_text_problem().unwrap();
    assert!(
        problem.contains("dashboard.tls_cert_file") && problem.contains("dashboard.behind_tls_proxy = true"),
        "{problem}"
    );
    assert!(
        open.summary()
            .to_string()
            .contains("0.0.0.0:8088 (http off loopback: serve refuses it")
    );
    let proxied = load(
        &format!("{MINIMAL}[dashboard]\nbind = \"0.0.0.0:8088\"\nbehind_tls_proxy = true\n"),
        &good_env(),
    )
    .unwrap();
    assert_eq!(proxied.dashboard.clear_text_problem(), None);
    let loopback = load(MINIMAL, &good_env()).unwrap();
    assert_eq!(loopback.dashboard.clear_text_problem(), None);

    // The files are relative to the configuration file, must exist, and come in pairs.
    let existing = fixtures().join("example.toml");
    let tls = format!(
        "{MINIMAL}[dashboard]\nbind = \"0.0.0.0:8443\"\ntls_cert_file = \"example.toml\"\ntls_key_file = \"{}\"\n",
        existing.display()
    );
    let config = load(&tls, &good_env()).unwrap();
    let files = config.dashboard.tls.clone().unwrap();
    assert!(
        files.cert_file.is_absolute() && files.cert_file.ends_with("example.toml"),
        "{files:?}"
    );
    assert_eq!(config.dashboard.clear_text_problem(), None);
    assert!(config.summary().to_string().contains("0.0.0.0:8443 (https with /"));
    let found = problems(
        &format!("{MINIMAL}[dashboard]\ntls_cert_file = \"no-such.crt\"\ntls_key_file = \"example.toml\"\n"),
        &good_env(),
    );
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with("dashboard.tls_cert_file: cannot read /") && found[0].contains("no-such.crt"),
        "{found:#?}"
    );
    let found = problems(
        &format!("{MINIMAL}[dashboard]\ntls_cert_file = \"example.toml\"\n"),
        &good_env(),
    );
    assert_eq!(
        found,
        ["dashboard: set both tls_cert_file and tls_key_file (PEM), or neither"]
    );
}
