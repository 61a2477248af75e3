//! The token endpoint and bearer checks.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use dataverse_sim::{AppRegistration, ManualClock, Simulator};
use serde_json::Value;

use crate::common::{client_for, start};

async fn token_request(http: &reqwest::Client, url: &str, fields: &[(&str, &str)]) -> (u16, Value) {
    let r = http
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(crate::common::form_body(fields))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn token_with_valid_secret_returns_bearer_token() {
    let env = start().await;
    let (status, v) = token_request(
        &env.http,
        &env.sim.token_url(),
        &[
            ("client_id", dataverse_sim::DEFAULT_CLIENT_ID),
            ("client_secret", dataverse_sim::DEFAULT_CLIENT_SECRET),
            ("grant_type", "client_credentials"),
            ("scope", &env.sim.scope()),
        ],
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3599);
    assert_eq!(v["access_token"].as_str().unwrap().split('.').count(), 3, "JWT-shaped");
}

#[tokio::test]
async fn token_errors_carry_aadsts_codes_and_azure_ad_shape() {
    let env = start().await;
    let scope = env.sim.scope();
    let id = dataverse_sim::DEFAULT_CLIENT_ID;
    let secret = dataverse_sim::DEFAULT_CLIENT_SECRET;
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, u16, &'a str, u64);
    let cases: Vec<Case<'_>> = vec![
        (
            env.sim.token_url(),
            vec![
                ("client_id", id),
                ("client_secret", "wrong"),
                ("grant_type", "client_credentials"),
                ("scope", &scope),
            ],
            401,
            "invalid_client",
            7000215,
        ),
        (
            env.sim.token_url(),
            vec![
                ("client_id", "00000000-0000-0000-0000-00000000dead"),
                ("client_secret", secret),
                ("grant_type", "client_credentials"),
                ("scope", &scope),
            ],
            400,
            "unauthorized_client",
            700016,
        ),
        (
            format!("{}/nosuchtenant/oauth2/v2.0/token", env.sim.base_url()),
            vec![
                ("client_id", id),
                ("client_secret", secret),
                ("grant_type", "client_credentials"),
                ("scope", &scope),
            ],
            400,
            "invalid_request",
            90002,
        ),
        (
            env.sim.token_url(),
            vec![
                ("client_id", id),
                ("client_secret", secret),
                ("grant_type", "password"),
                ("scope", &scope),
            ],
            400,
            "unsupported_grant_type",
            70003,
        ),
        (
            env.sim.token_url(),
            vec![
                ("client_id", id),
                ("client_secret", secret),
                ("grant_type", "client_credentials"),
                ("scope", "https://other.crm4.dynamics.com/.default"),
            ],
            400,
            "invalid_resource",
            500011,
        ),
        (
            env.sim.token_url(),
            vec![
                ("client_id", id),
                ("client_secret", secret),
                ("grant_type", "client_credentials"),
                ("scope", "user.read"),
            ],
            400,
            "invalid_scope",
            1002012,
        ),
    ];
    for (url, form, status, error, code) in cases {
        let (got, v) = token_request(&env.http, &url, &form).await;
        assert_eq!(got, status, "{v}");
        assert_eq!(v["error"], error, "{v}");
        assert_eq!(v["error_codes"][0], code, "{v}");
        let d = v["error_description"].as_str().unwrap();
        assert!(d.starts_with(&format!("AADSTS{code}: ")), "{d}");
        assert!(
            d.contains("Trace ID: ") && d.contains("Correlation ID: ") && d.contains("Timestamp: "),
            "{d}"
        );
        for k in ["timestamp", "trace_id", "correlation_id", "error_uri"] {
            assert!(v[k].is_string(), "{k} missing in {v}");
        }
    }
}

#[tokio::test]
async fn token_for_expired_secret_fails_with_aadsts7000222() {
    let clock = std::sync::Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap()));
    let app =
        AppRegistration::new("t1", "c1", "s1").with_secret_expiry(Utc.with_ymd_and_hms(2025, 6, 2, 0, 0, 0).unwrap());
    let sim = Simulator::builder()
        .app(app)
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let http = client_for(&sim);
    let form = [
        ("client_id", "c1"),
        ("client_secret", "s1"),
        ("grant_type", "client_credentials"),
        ("scope", &sim.scope()),
    ];
    let (status, _) = token_request(&http, &sim.token_url(), &form).await;
    assert_eq!(status, 200);
    clock.advance(chrono::Duration::days(1));
    let (status, v) = token_request(&http, &sim.token_url(), &form).await;
    assert_eq!(status, 401);
    assert_eq!(v["error_codes"][0], 7000222);
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("The provided client secret keys for app 'c1' are expired")
    );
}

#[tokio::test]
async fn dataverse_without_or_with_bad_token_answers_401_with_challenge() {
    let env = start().await;
    let r = env.http.get(env.url("WhoAmI")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer authorization_uri="), "{challenge}");
    let r = env
        .http
        .get(env.url("WhoAmI"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn expired_access_token_answers_401() {
    let clock = std::sync::Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap()));
    let env = crate::common::start_with(
        Simulator::builder()
            .clock(clock.clone())
            .token_lifetime(Duration::from_secs(60)),
    )
    .await;
    assert_eq!(env.get("WhoAmI").await.status, 200);
    clock.advance(chrono::Duration::seconds(61));
    assert_eq!(env.get("WhoAmI").await.status, 401);
}

#[tokio::test]
async fn app_registration_debug_redacts_the_secret() {
    let app = AppRegistration::new("t", "c", "super-secret-value");
    assert!(!format!("{app:?}").contains("super-secret-value"));
}
