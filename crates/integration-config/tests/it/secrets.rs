//! No secret value may appear in any printed form of the configuration or its errors.

use integration_config::IntegrationConfig;

use super::{SECRET, example_text, fixtures, good_env, load};

const SECRETS: [&str; 5] = [
    SECRET,
    "another-secret-value",
    "smtp-password-value",
    "webhook-secret-value",
    "dashboard-token-value",
];

#[track_caller]
fn assert_no_secret(printed: &str) {
    for secret in SECRETS {
        assert!(!printed.contains(secret), "a secret leaked into:\n{printed}");
    }
}

#[test]
fn debug_output_of_the_whole_configuration_shows_no_secret() {
    let config = IntegrationConfig::load(&fixtures().join("example.toml"), &good_env()).unwrap();
    let printed = format!("{config:?}\n{config:#?}");
    assert_no_secret(&printed);
    assert!(
        printed.contains("REDACTED"),
        "secrets should print as a placeholder:\n{printed}"
    );
}

#[test]
fn database_passwords_are_not_printed() {
    let mut env = good_env();
    env.insert(
        "SYNC_DATABASE_URL".into(),
        "postgres://sync:db-password-value@db/sync".into(),
    );
    let config = load(&example_text(), &env).unwrap();
    assert!(!format!("{:?}", config.store).contains("db-password-value"));
}

#[test]
fn errors_about_secret_variables_do_not_echo_their_values() {
    let mut env = good_env();
    env.insert("DYNAMICS_CLIENT_SECRET".into(), format!(" {SECRET} "));
    env.insert("SYNC_DATABASE_URL".into(), "mysql://user:db-password-value@db".into());
    env.insert(
        "DYNAMICS_INSTANCE_URL".into(),
        format!("https://user:{SECRET}@hlf.crm4.dynamics.com"),
    );
    let error = load(&example_text(), &env).unwrap_err();
    let printed = format!("{error}\n{error:?}");
    assert_no_secret(&printed);
    assert!(!printed.contains("db-password-value"), "{printed}");
    assert!(printed.contains("DYNAMICS_CLIENT_SECRET"), "{printed}");
}

#[test]
fn the_printed_summary_shows_secrets_only_as_set() {
    let mut env = good_env();
    env.insert(
        "SYNC_DATABASE_URL".into(),
        "postgres://sync:db-password-value@db/sync".into(),
    );
    let config = load(&example_text(), &env).unwrap();
    let printed = config.summary().to_string();
    assert_no_secret(&printed);
    assert!(!printed.contains("db-password-value"), "{printed}");
    assert!(
        printed.contains("client secret          set  (DYNAMICS_CLIENT_SECRET)"),
        "{printed}"
    );
    assert!(printed.contains("postgres://sync:***@db/sync"), "{printed}");
}
