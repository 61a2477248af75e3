//! Throttling and transient failures: what is retried, how long the client waits, and what it counts.

use std::time::Duration;

use dynamics_client::Error;
use integration_config::RetrySettings;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use super::Fake;

fn whoami() -> wiremock::MockBuilder {
    Mock::given(method("GET")).and(path("/api/data/v9.2/WhoAmI"))
}

#[tokio::test]
async fn request_after_429_waits_retry_after_then_succeeds() {
    let fake = Fake::new().await;
    whoami()
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "7")
                .set_body_string(fake.fixture("error-throttled-requests.json")),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&fake.server)
        .await;
    whoami()
        .respond_with(ResponseTemplate::new(200).set_body_string(fake.fixture("whoami.json")))
        .expect(1)
        .mount(&fake.server)
        .await;
    fake.client.who_am_i().await.unwrap();
    assert!(
        fake.clock.sleeps().contains(&Duration::from_secs(7)),
        "sleeps: {:?}",
        fake.clock.sleeps()
    );
    let metrics = fake.client.metrics();
    assert_eq!(
        (metrics.requests, metrics.throttled, metrics.retried),
        (2, 1, 1),
        "{metrics:?}"
    );
    assert!(metrics.waited >= Duration::from_secs(7), "{metrics:?}");
}

#[tokio::test]
async fn a_throttle_pauses_every_other_caller_of_the_client_too() {
    let fake = Fake::new().await;
    whoami()
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "30"))
        .up_to_n_times(1)
        .mount(&fake.server)
        .await;
    whoami()
        .respond_with(ResponseTemplate::new(200).set_body_string(fake.fixture("whoami.json")))
        .mount(&fake.server)
        .await;
    fake.client.who_am_i().await.unwrap();
    let before = fake.clock.elapsed();
    // The pause has passed in virtual time, so the next call goes straight through.
    fake.client.who_am_i().await.unwrap();
    assert_eq!(fake.clock.elapsed(), before);
    assert!(before >= Duration::from_secs(30));
}

#[tokio::test]
async fn throttling_beyond_the_attempts_is_a_typed_error() {
    let fake = Fake::with_options(|o| {
        o.retry = RetrySettings {
            max_attempts: 3,
            ..RetrySettings::default()
        }
    })
    .await;
    whoami()
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "2")
                .set_body_string(fake.fixture("error-throttled-requests.json")),
        )
        .expect(3)
        .mount(&fake.server)
        .await;
    let error = fake.client.who_am_i().await.unwrap_err();
    match &error {
        Error::Throttled { retry_after, code } => {
            assert_eq!(*retry_after, Duration::from_secs(2));
            assert_eq!(code, "0x80072322");
        }
        other => panic!("expected Throttled, got {other:?}"),
    }
    assert!(error.is_run_level());
}

#[tokio::test]
async fn a_retry_after_longer_than_the_budget_is_not_waited_for() {
    let fake = Fake::with_options(|o| o.retry.total_budget = Duration::from_secs(60)).await;
    whoami()
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "3600"))
        .expect(1)
        .mount(&fake.server)
        .await;
    assert!(fake.client.who_am_i().await.unwrap_err().is_throttled());
    assert!(fake.clock.elapsed() < Duration::from_secs(60));
}

#[tokio::test]
async fn server_busy_answers_back_off_exponentially_with_jitter() {
    let fake = Fake::new().await;
    for status in [503, 502, 504] {
        whoami()
            .respond_with(ResponseTemplate::new(status))
            .up_to_n_times(1)
            .expect(1)
            .mount(&fake.server)
            .await;
    }
    whoami()
        .respond_with(ResponseTemplate::new(200).set_body_string(fake.fixture("whoami.json")))
        .expect(1)
        .mount(&fake.server)
        .await;
    fake.client.who_am_i().await.unwrap();
    let sleeps = fake.clock.sleeps();
    assert_eq!(sleeps.len(), 3, "{sleeps:?}");
    // 500 ms doubling, each with jitter between half and all of it.
    for (sleep, full) in sleeps.iter().zip([500u64, 1000, 2000]) {
        let full = Duration::from_millis(full);
        assert!(*sleep >= full / 2 && *sleep <= full, "{sleeps:?}");
    }
}

#[tokio::test]
async fn client_errors_are_never_retried() {
    for status in [400u16, 403, 404, 409, 500] {
        let fake = Fake::new().await;
        whoami()
            .respond_with(ResponseTemplate::new(status).set_body_string(fake.fixture("error-privilege-denied.json")))
            .expect(1)
            .mount(&fake.server)
            .await;
        let error = fake.client.who_am_i().await.unwrap_err();
        assert!(fake.clock.sleeps().is_empty(), "{status} was retried: {error:?}");
    }
}

#[tokio::test]
async fn a_timeout_is_retried_and_then_reported_with_the_attempts() {
    let fake = Fake::with_options(|o| {
        o.retry.request_timeout = Duration::from_millis(200);
        o.retry.max_attempts = 2;
    })
    .await;
    whoami()
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(2)))
        .expect(2)
        .mount(&fake.server)
        .await;
    match fake.client.who_am_i().await.unwrap_err() {
        Error::Transport { attempts, url, .. } => {
            assert_eq!(attempts, 2);
            assert!(url.ends_with("/api/data/v9.2/WhoAmI"), "{url}");
        }
        other => panic!("expected Transport, got {other:?}"),
    }
}

#[tokio::test]
async fn a_refused_connection_is_retried_then_reported() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let clock = std::sync::Arc::new(dynamics_client::VirtualClock::new());
    let options = dynamics_client::ClientOptions {
        clock: clock.clone(),
        ..Default::default()
    };
    let instance = integration_config::InstanceUrl::parse(&format!("http://{closed}")).unwrap();
    let client = dynamics_client::DynamicsClient::new(
        &instance,
        std::sync::Arc::new(dynamics_client::StaticTokenSource::new("t")),
        options,
    )
    .unwrap();
    let error = client.who_am_i().await.unwrap_err();
    assert!(matches!(error, Error::Transport { attempts: 10, .. }), "{error:?}");
    assert!(error.is_run_level());
    assert_eq!(clock.sleeps().len(), 9);
    assert!(
        error
            .to_string()
            .starts_with("cannot reach Dynamics at http://127.0.0.1:"),
        "{error}"
    );
}
