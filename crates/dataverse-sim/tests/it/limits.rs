//! Service protection limits.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use dataverse_sim::{ManualClock, ServiceLimits, Simulator};

use crate::common::start_with;

#[tokio::test]
async fn request_limit_answers_429_with_retry_after_until_window_slides() {
    let clock = Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()));
    let limits = ServiceLimits {
        window: Duration::from_secs(60),
        max_requests: 3,
        ..Default::default()
    };
    let env = start_with(Simulator::builder().clock(clock.clone()).limits(limits)).await;
    for _ in 0..3 {
        assert_eq!(env.get("WhoAmI").await.status, 200);
    }
    let r = env.get("WhoAmI").await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.error_code(), "0x80072322");
    assert_eq!(
        r.json()["error"]["message"],
        "Number of requests exceeded the limit of 3 over time window of 60 seconds."
    );
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=61).contains(&retry), "{retry}");
    clock.advance(chrono::Duration::seconds(61));
    assert_eq!(env.get("WhoAmI").await.status, 200);
}

#[tokio::test]
async fn concurrency_limit_answers_429_with_concurrency_code() {
    let limits = ServiceLimits {
        max_concurrent: 1,
        ..Default::default()
    };
    let env = start_with(Simulator::builder().limits(limits)).await;
    env.sim.faults().set_latency(Duration::from_millis(300));
    let slow = env.get("WhoAmI");
    let fast = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        env.get("WhoAmI").await
    };
    let (a, b) = tokio::join!(slow, fast);
    assert_eq!(a.status, 200);
    assert_eq!(b.status, 429, "{}", b.text);
    assert_eq!(b.error_code(), "0x80072326");
    assert!(b.header("retry-after").is_some());
}

#[tokio::test]
async fn limits_are_per_app_user() {
    let limits = ServiceLimits {
        max_requests: 1,
        ..Default::default()
    };
    let other = dataverse_sim::AppRegistration::new(dataverse_sim::DEFAULT_TENANT_ID, "other-app", "other-secret");
    let env = start_with(
        Simulator::builder()
            .limits(limits)
            .app(dataverse_sim::AppRegistration::new(
                dataverse_sim::DEFAULT_TENANT_ID,
                dataverse_sim::DEFAULT_CLIENT_ID,
                dataverse_sim::DEFAULT_CLIENT_SECRET,
            ))
            .app(other),
    )
    .await;
    assert_eq!(env.get("WhoAmI").await.status, 200);
    assert_eq!(env.get("WhoAmI").await.status, 429);
    let r = env
        .http
        .post(env.sim.token_url())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(crate::common::form_body(&[
            ("client_id", "other-app"),
            ("client_secret", "other-secret"),
            ("grant_type", "client_credentials"),
            ("scope", &env.sim.scope()),
        ]))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    let r = env
        .http
        .get(env.url("WhoAmI"))
        .bearer_auth(v["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
