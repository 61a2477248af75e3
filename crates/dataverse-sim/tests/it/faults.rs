//! Fault injection.

use std::time::Duration;

use dataverse_sim::FaultConfig;
use serde_json::json;

use crate::common::{start, start_http};

#[tokio::test]
async fn fail_next_answers_the_status_then_recovers() {
    let env = start().await;
    env.sim.faults().fail_next(2, 503);
    assert_eq!(env.get("WhoAmI").await.status, 503);
    let r = env.get("WhoAmI").await;
    assert_eq!(r.status, 503);
    assert!(r.error_code().starts_with("0x"));
    assert_eq!(env.get("WhoAmI").await.status, 200);
}

#[tokio::test]
async fn throttle_storm_answers_429_with_retry_after() {
    let env = start().await;
    env.sim.faults().throttle_next(2, Duration::from_secs(7));
    let r = env.get("WhoAmI").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(r.error_code(), "0x80072322");
    assert_eq!(env.get("WhoAmI").await.status, 429);
    assert_eq!(env.get("WhoAmI").await.status, 200);
    env.sim
        .faults()
        .throttle_for(Duration::from_secs(3600), Duration::from_secs(2));
    assert_eq!(env.get("WhoAmI").await.status, 429);
    env.sim.faults().clear();
    assert_eq!(env.get("WhoAmI").await.status, 200);
    assert!(env.sim.stats().throttled >= 3);
}

#[tokio::test]
async fn connection_reset_and_timeout_fail_the_request_without_an_answer() {
    let env = start_http().await;
    env.sim.faults().reset_next(1);
    let err = env.http.get(env.url("WhoAmI")).bearer_auth(&env.token).send().await;
    assert!(err.is_err(), "{err:?}");
    assert_eq!(env.get("WhoAmI").await.status, 200, "the next connection works");

    env.sim.faults().set_hang_duration(Duration::from_millis(300));
    env.sim.faults().timeout_next(1);
    let started = std::time::Instant::now();
    let err = env.http.get(env.url("WhoAmI")).bearer_auth(&env.token).send().await;
    assert!(err.is_err(), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn etag_race_makes_the_next_conditional_update_fail_with_412() {
    let env = start().await;
    let r = env.get("contacts(hlf_membernumber='100001')").await;
    let etag = r.header("etag").unwrap().to_owned();
    let id = r.json()["contactid"].as_str().unwrap().parse().unwrap();
    env.sim.faults().race_next_update("contacts", Some(id));
    let r = env
        .patch(
            "contacts(hlf_membernumber='100001')",
            &[("If-Match", &etag)],
            json!({"hlf_showonpublicsite": false}),
        )
        .await;
    assert_eq!(r.status, 412, "{}", r.text);
    assert_eq!(r.error_code(), "0x80060882");
    let fresh = env
        .get("contacts(hlf_membernumber='100001')")
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    assert_ne!(fresh, etag);
    let r = env
        .patch(
            "contacts(hlf_membernumber='100001')",
            &[("If-Match", &fresh)],
            json!({"hlf_showonpublicsite": false}),
        )
        .await;
    assert_eq!(r.status, 204, "the race fires once");
}

#[tokio::test]
async fn seeded_error_rates_are_deterministic() {
    async fn run(seed: u64) -> Vec<u16> {
        let env = start().await;
        env.sim
            .faults()
            .apply(&FaultConfig {
                seed: Some(seed),
                error_rates: [("500".to_owned(), 0.5)].into(),
                ..Default::default()
            })
            .unwrap();
        let mut out = Vec::new();
        for _ in 0..12 {
            out.push(env.get("WhoAmI").await.status.as_u16());
        }
        out
    }
    let a = run(42).await;
    assert_eq!(a, run(42).await);
    assert!(a.contains(&500) && a.contains(&200), "{a:?}");
}

#[tokio::test]
async fn secret_expiry_fault_makes_token_requests_fail() {
    let env = start().await;
    env.sim
        .faults()
        .expire_secret(dataverse_sim::DEFAULT_CLIENT_ID)
        .unwrap();
    let r = env
        .http
        .post(env.sim.token_url())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(crate::common::form_body(&[
            ("client_id", dataverse_sim::DEFAULT_CLIENT_ID),
            ("client_secret", dataverse_sim::DEFAULT_CLIENT_SECRET),
            ("grant_type", "client_credentials"),
            ("scope", &env.sim.scope()),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error_codes"][0], 7000222);
}

#[tokio::test]
async fn fault_config_rejects_unknown_statuses() {
    let env = start().await;
    let bad = FaultConfig {
        error_rates: [("418".to_owned(), 0.5)].into(),
        ..Default::default()
    };
    assert!(env.sim.faults().apply(&bad).is_err());
    let toml_text = "seed = 3\nlatency_ms = 1\n[error_rates]\n503 = 0.0\n";
    let parsed: FaultConfig = toml::from_str(toml_text).unwrap();
    env.sim.faults().apply(&parsed).unwrap();
}
