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

fn b64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).unwrap()
}

async fn get_json(http: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = http.get(url).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// What MSAL reads before its first token request, and what a resource server checks a token with: the discovery
/// document names the token endpoint and the keys, and the issued token verifies against them.
#[tokio::test]
async fn the_discovery_document_and_its_keys_verify_the_issued_tokens() {
    use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
    let env = start().await;
    let (base, tenant) = (env.sim.base_url(), dataverse_sim::DEFAULT_TENANT_ID);
    let (status, doc) = get_json(
        &env.http,
        &format!("{base}/{tenant}/v2.0/.well-known/openid-configuration"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(doc["issuer"], format!("{base}/{tenant}/v2.0"));
    assert_eq!(doc["token_endpoint"], env.sim.token_url());
    assert_eq!(
        doc["authorization_endpoint"],
        format!("{base}/{tenant}/oauth2/v2.0/authorize")
    );
    assert_eq!(doc["id_token_signing_alg_values_supported"][0], "RS256");
    let (status, jwks) = get_json(&env.http, doc["jwks_uri"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    let key = &jwks["keys"][0];
    assert_eq!((key["kty"].as_str(), key["use"].as_str()), (Some("RSA"), Some("sig")));

    let (signed, signature) = env.token.rsplit_once('.').unwrap();
    let (header, claims) = signed.split_once('.').unwrap();
    let header: Value = serde_json::from_slice(&b64(header)).unwrap();
    let claims: Value = serde_json::from_slice(&b64(claims)).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], key["kid"]);
    let public = RsaPublicKeyComponents {
        n: b64(key["n"].as_str().unwrap()),
        e: b64(key["e"].as_str().unwrap()),
    };
    public
        .verify(&RSA_PKCS1_2048_8192_SHA256, signed.as_bytes(), &b64(signature))
        .expect("the token's signature verifies with the published key");
    let mut tampered = signed.to_owned();
    tampered.push('x');
    assert!(
        public
            .verify(&RSA_PKCS1_2048_8192_SHA256, tampered.as_bytes(), &b64(signature))
            .is_err()
    );
    assert_eq!(claims["iss"], doc["issuer"]);
    assert_eq!(claims["aud"], base);
    assert_eq!(claims["tid"], tenant);
    assert_eq!(claims["azp"], dataverse_sim::DEFAULT_CLIENT_ID);
    assert_eq!(claims["appid"], dataverse_sim::DEFAULT_CLIENT_ID);
    assert_eq!(
        (claims["idtyp"].as_str(), claims["ver"].as_str()),
        (Some("app"), Some("2.0"))
    );
    assert!(claims["exp"].as_i64().unwrap() > claims["iat"].as_i64().unwrap());
    assert!(claims.get("roles").is_none());

    // An unknown tenant gets Azure AD's AADSTS90002, as on the token endpoint.
    let (status, error) = get_json(
        &env.http,
        &format!("{base}/00000000-0000-4000-8000-000000000000/v2.0/.well-known/openid-configuration"),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error["error_codes"][0], 90002);
    let (status, common) = get_json(&env.http, &format!("{base}/common/discovery/v2.0/keys")).await;
    assert_eq!((status, &common["keys"][0]["kid"]), (200, &key["kid"]));
}
