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

/// Changes a contact's phone through the raw HTTP client, so a lost answer is seen as the error it is.
async fn patch_phone(env: &crate::common::Env, phone: &str) -> Result<reqwest::Response, reqwest::Error> {
    env.http
        .patch(env.url("contacts(hlf_membernumber='100001')"))
        .bearer_auth(&env.token)
        .header("If-Match", "*")
        .json(&json!({ "mobilephone": phone }))
        .send()
        .await
}

fn phone(env: &crate::common::Env) -> String {
    let id = env
        .sim
        .state()
        .find_by_key("contacts", "hlf_membernumber", "100001")
        .unwrap();
    env.sim.state().row("contacts", id).unwrap()["mobilephone"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn after_commit_faults_apply_the_write_and_then_lose_its_answer() {
    let builder = dataverse_sim::Simulator::builder()
        .transport(dataverse_sim::Transport::Http)
        .demo_data();
    let env = crate::common::start_with(builder).await;
    let faults = env.sim.faults();

    faults.reset_after_commit_next(1);
    assert!(patch_phone(&env, "+47 400 00 001").await.is_err(), "no answer");
    assert_eq!(phone(&env), "+47 400 00 001", "but the write was applied");

    faults.fail_after_commit_next(1, 504);
    let answer = patch_phone(&env, "+47 400 00 002").await.unwrap();
    assert_eq!(answer.status(), 504);
    assert_eq!(phone(&env), "+47 400 00 002");

    faults.set_hang_duration(Duration::from_millis(200));
    faults.answer_late_next(1);
    let started = std::time::Instant::now();
    assert!(patch_phone(&env, "+47 400 00 003").await.is_err());
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(phone(&env), "+47 400 00 003");

    // At a rate, from a fault configuration (the file and `/_sim/faults` format).
    let config: FaultConfig = toml::from_str("seed = 3\n[after_commit]\nreset_rate = 1.0\n").unwrap();
    faults.apply(&config).unwrap();
    assert!(patch_phone(&env, "+47 400 00 004").await.is_err());
    assert_eq!(phone(&env), "+47 400 00 004");
    faults.clear();
    assert_eq!(patch_phone(&env, "+47 400 00 005").await.unwrap().status(), 204);
}

#[tokio::test]
async fn the_fault_api_merges_on_post_replaces_on_put_and_clears_on_delete() {
    let env = start().await;
    let faults_url = format!("{}/_sim/faults", env.sim.base_url());
    let send = |method: reqwest::Method, body: serde_json::Value| {
        let request = env.http.request(method, &faults_url).json(&body);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let drop_phone = json!({ "dropped_columns": ["contact.mobilephone"] });
    assert_eq!(
        send(reqwest::Method::POST, json!({ "error_rates": { "503": 1.0 } })).await,
        204
    );
    assert_eq!(send(reqwest::Method::POST, drop_phone.clone()).await, 204);
    // POST merges: the error rate is still in force after posting something else, and after posting `{}`.
    assert_eq!(send(reqwest::Method::POST, json!({})).await, 204);
    assert_eq!(env.get("WhoAmI").await.status, 503);

    // PUT replaces: only what it names stays; the dropped column it does not list comes back.
    assert_eq!(send(reqwest::Method::PUT, json!({ "latency_ms": 1 })).await, 204);
    assert_eq!(env.get("WhoAmI").await.status, 200);
    assert_eq!(env.get("contacts?$select=mobilephone&$top=1").await.status, 200);

    // A dropped column can also be restored on its own, by POST.
    assert_eq!(send(reqwest::Method::POST, drop_phone).await, 204);
    assert_eq!(env.get("contacts?$select=mobilephone&$top=1").await.status, 400);
    let restore = json!({ "restored_columns": ["contact.mobilephone"] });
    assert_eq!(send(reqwest::Method::POST, restore).await, 204);
    assert_eq!(env.get("contacts?$select=mobilephone&$top=1").await.status, 200);

    // DELETE clears everything.
    assert_eq!(
        send(reqwest::Method::POST, json!({ "error_rates": { "500": 1.0 } })).await,
        204
    );
    assert_eq!(send(reqwest::Method::DELETE, json!({})).await, 204);
    assert_eq!(env.get("WhoAmI").await.status, 200);
    // An unknown field is refused, not ignored.
    assert_eq!(send(reqwest::Method::POST, json!({ "eror_rates": {} })).await, 400);
}
