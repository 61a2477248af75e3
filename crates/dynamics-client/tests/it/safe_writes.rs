//! Writes under faults: what may be sent again when an answer is lost, batches answered with an error status, a
//! throttled part, the order of budget and token, and what a log line may say about a request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dynamics_client::{
    AlternateKey, AuthError, BatchMode, BearerToken, ClientOptions, DynamicsClient, Error, PartResult, Row,
    TokenSource, UpsertMode, VirtualClock,
};
use integration_config::{InstanceUrl, RateLimitSettings, RetrySettings};
use serde_json::json;
use uuid::Uuid;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::Fake;

/// A client whose requests time out after 200 ms, so a fake that answers after a second is "no answer".
async fn impatient() -> Fake {
    Fake::with_options(|o| {
        o.retry = RetrySettings {
            request_timeout: Duration::from_millis(200),
            max_attempts: 4,
            ..RetrySettings::default()
        }
    })
    .await
}

fn too_late() -> ResponseTemplate {
    ResponseTemplate::new(204).set_delay(Duration::from_secs(1))
}

fn body() -> Row {
    serde_json::from_value(json!({ "hlf_showonpublicsite": false })).unwrap()
}

fn id() -> Uuid {
    Uuid::parse_str("00000000-0000-4000-8000-000000003001").unwrap()
}

async fn requests(fake: &Fake) -> usize {
    fake.server.received_requests().await.unwrap().len()
}

#[tokio::test]
async fn an_etag_guarded_update_whose_answer_is_lost_is_not_sent_again() {
    let fake = impatient().await;
    Mock::given(method("PATCH"))
        .respond_with(too_late())
        .mount(&fake.server)
        .await;
    let writer = fake.client.writer(&super::mentor_mapping());
    let result = writer.update_if_unchanged(id(), &body(), "W/\"5001\"").await;
    assert!(matches!(result, Err(Error::OutcomeUnknown { .. })), "{result:?}");
    assert_eq!(requests(&fake).await, 1, "sent once, never resent blindly");
    assert!(result.unwrap_err().is_run_level());
}

#[tokio::test]
async fn a_create_and_a_create_only_upsert_whose_answers_are_lost_are_not_sent_again() {
    let fake = impatient().await;
    Mock::given(method("POST"))
        .respond_with(too_late())
        .mount(&fake.server)
        .await;
    Mock::given(method("PATCH"))
        .respond_with(too_late())
        .mount(&fake.server)
        .await;
    let writer = fake.client.writer(&super::mentor_mapping());
    let created = writer.create(&body()).await;
    assert!(matches!(created, Err(Error::OutcomeUnknown { .. })), "{created:?}");
    assert_eq!(requests(&fake).await, 1);
    let key = AlternateKey::new("hlf_membernumber", "100001").unwrap();
    let upserted = writer.upsert(&key, &body(), UpsertMode::CreateOnly).await;
    assert!(matches!(upserted, Err(Error::OutcomeUnknown { .. })), "{upserted:?}");
    assert_eq!(requests(&fake).await, 2);
}

#[tokio::test]
async fn writes_that_are_safe_to_repeat_are_sent_again_after_a_lost_answer() {
    let fake = impatient().await;
    Mock::given(method("PATCH"))
        .respond_with(too_late())
        .up_to_n_times(1)
        .mount(&fake.server)
        .await;
    Mock::given(method("PATCH"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&fake.server)
        .await;
    let writer = fake.client.writer(&super::mentor_mapping());
    let key = AlternateKey::new("hlf_membernumber", "100001").unwrap();
    // An unconditional upsert by key and an `If-Match: *` update leave the row the same however often they run.
    writer.upsert(&key, &body(), UpsertMode::CreateOrUpdate).await.unwrap();
    assert_eq!(requests(&fake).await, 2, "resent once after the lost answer");
    writer.upsert(&key, &body(), UpsertMode::UpdateOnly).await.unwrap();
    assert_eq!(requests(&fake).await, 3);
}

#[tokio::test]
async fn a_gateway_error_on_a_write_is_an_unknown_outcome_and_on_a_read_a_retry() {
    let fake = impatient().await;
    Mock::given(method("PATCH"))
        .respond_with(ResponseTemplate::new(504))
        .mount(&fake.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/WhoAmI"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .mount(&fake.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/WhoAmI"))
        .respond_with(ResponseTemplate::new(200).set_body_string(fake.fixture("whoami.json")))
        .mount(&fake.server)
        .await;
    let writer = fake.client.writer(&super::mentor_mapping());
    let result = writer.update_if_unchanged(id(), &body(), "W/\"5001\"").await;
    assert!(
        matches!(&result, Err(Error::OutcomeUnknown { reason, .. }) if reason == "HTTP 504"),
        "{result:?}"
    );
    assert_eq!(requests(&fake).await, 1);
    fake.client.who_am_i().await.unwrap();
    assert_eq!(requests(&fake).await, 3, "the read was retried after its 502");
}

#[tokio::test]
async fn a_batch_of_guarded_updates_whose_answer_is_lost_is_not_sent_again_but_a_batch_of_reads_is() {
    let fake = impatient().await;
    Mock::given(method("POST"))
        .and(path("/api/data/v9.2/$batch"))
        .respond_with(too_late())
        .mount(&fake.server)
        .await;
    let writer = fake.client.writer(&super::mentor_mapping());
    let operations = vec![
        writer.update_operation(id(), &body(), "W/\"5001\"").unwrap(),
        writer.update_operation(Uuid::new_v4(), &body(), "W/\"5002\"").unwrap(),
    ];
    let result = fake.client.execute_batch(&operations, BatchMode::ContinueOnError).await;
    assert!(matches!(result, Err(Error::OutcomeUnknown { .. })), "{result:?}");
    assert_eq!(requests(&fake).await, 1);

    // Bulk reads go out as a batch of GETs: harmless to repeat, so a lost answer is retried.
    let ids: Vec<String> = (0..300).map(|_| Uuid::new_v4().to_string()).collect();
    let query = dynamics_client::Query::new("contacts").select(&["contactid"]);
    let result = fake.client.rows_in(&query, "contactid", &ids).await;
    assert!(
        matches!(result, Err(Error::Transport { attempts: 4, .. })),
        "{result:?}"
    );
    assert_eq!(requests(&fake).await, 5);
}

const BOUNDARY: &str = "batchresponse_9d0e0000-0000-4000-8000-00000000000b";

/// A multipart batch answer with one part per `(status, extra headers, body)`.
fn multipart(parts: &[(u16, &str, &str)]) -> String {
    let mut out = String::new();
    for (status, headers, body) in parts {
        out.push_str(&format!(
            "--{BOUNDARY}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nHTTP/1.1 {status} X\r\n{headers}Content-Type: application/json\r\n\r\n{body}\r\n"
        ));
    }
    out.push_str(&format!("--{BOUNDARY}--\r\n"));
    out
}

fn batch_answer(status: u16, body: String) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body, &format!("multipart/mixed; boundary={BOUNDARY}"))
}

async fn three_updates(fake: &Fake, mode: BatchMode) -> dynamics_client::Result<Vec<PartResult>> {
    let writer = fake.client.writer(&super::mentor_mapping());
    let operations: Vec<_> = (0..3)
        .map(|i| {
            writer
                .update_operation(Uuid::new_v4(), &body(), &format!("W/\"{i}\""))
                .unwrap()
        })
        .collect();
    fake.client.execute_batch(&operations, mode).await
}

#[tokio::test]
async fn a_batch_that_stopped_at_a_5xx_part_keeps_the_committed_parts_and_is_not_resent() {
    let fake = Fake::new().await;
    let answer = multipart(&[
        (204, "", ""),
        (
            500,
            "",
            r#"{"error":{"code":"0x80040216","message":"Generic SQL error."}}"#,
        ),
    ]);
    Mock::given(method("POST"))
        .and(path("/api/data/v9.2/$batch"))
        .respond_with(batch_answer(500, answer))
        .mount(&fake.server)
        .await;
    let results = three_updates(&fake, BatchMode::StopOnError).await.unwrap();
    assert!(
        matches!(results[0], PartResult::Answered { status: 204, .. }),
        "{results:?}"
    );
    assert!(
        matches!(results[1].error(), Some(Error::Service { status: 500, .. })),
        "{results:?}"
    );
    assert_eq!(results[2], PartResult::NotExecuted);
    assert!(results[2].not_applied() && !results[0].not_applied());
    assert_eq!(requests(&fake).await, 1, "the committed part must not be sent again");
}

#[tokio::test]
async fn a_failed_change_set_names_its_failing_part_and_reports_the_others_rolled_back() {
    let fake = Fake::new().await;
    let answer = format!(
        "--{BOUNDARY}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 2\r\n\r\nHTTP/1.1 412 Precondition Failed\r\nContent-Type: application/json\r\n\r\n{}\r\n--{BOUNDARY}--\r\n",
        r#"{"error":{"code":"0x80060882","message":"The version of the existing record doesn't match the RowVersion property provided."}}"#
    );
    Mock::given(method("POST"))
        .and(path("/api/data/v9.2/$batch"))
        .respond_with(batch_answer(412, answer))
        .mount(&fake.server)
        .await;
    let results = three_updates(&fake, BatchMode::Atomic).await.unwrap();
    assert_eq!(results[0], PartResult::RolledBack);
    assert!(matches!(results[1].error(), Some(Error::Concurrency)), "{results:?}");
    assert_eq!(results[2], PartResult::RolledBack);
}

#[tokio::test]
async fn a_throttled_part_pauses_the_budget_and_only_that_part_is_sent_again() {
    let fake = Fake::new().await;
    let throttled = r#"{"error":{"code":"0x80072322","message":"Number of requests exceeded the limit of 6000 over time window of 300 seconds."}}"#;
    Mock::given(method("POST"))
        .and(path("/api/data/v9.2/$batch"))
        .respond_with(batch_answer(
            200,
            multipart(&[(204, "", ""), (429, "Retry-After: 9\r\n", throttled), (204, "", "")]),
        ))
        .up_to_n_times(1)
        .mount(&fake.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/data/v9.2/$batch"))
        .respond_with(batch_answer(200, multipart(&[(204, "", "")])))
        .mount(&fake.server)
        .await;
    let results = three_updates(&fake, BatchMode::ContinueOnError).await.unwrap();
    assert!(results.iter().all(|r| r.error().is_none()), "{results:?}");
    assert!(
        fake.clock.sleeps().contains(&Duration::from_secs(9)),
        "{:?}",
        fake.clock.sleeps()
    );
    let metrics = fake.client.metrics();
    assert_eq!(
        (metrics.requests, metrics.throttled, metrics.retried),
        (2, 1, 1),
        "{metrics:?}"
    );
    let sent = fake.server.received_requests().await.unwrap();
    let second = String::from_utf8_lossy(&sent[1].body);
    assert_eq!(second.matches("Content-Type: application/http").count(), 1, "{second}");
    assert!(
        second.contains("If-Match: W/\"1\"") || second.contains("if-match: W/\"1\""),
        "{second}"
    );
}

#[tokio::test]
async fn a_part_throttled_beyond_the_retries_is_a_run_level_throttle_not_a_record_failure() {
    let fake = Fake::with_options(|o| {
        o.retry = RetrySettings {
            max_attempts: 2,
            ..RetrySettings::default()
        }
    })
    .await;
    // Dataverse's concurrency limit comes with its own code; the status alone does not say so.
    let busy = r#"{"error":{"code":"0x80072326","message":"Number of concurrent requests exceeded the limit of 52."}}"#;
    Mock::given(method("POST"))
        .and(path("/api/data/v9.2/$batch"))
        .respond_with(batch_answer(
            200,
            multipart(&[(204, "", ""), (503, "Retry-After: 2\r\n", busy), (204, "", "")]),
        ))
        .up_to_n_times(1)
        .mount(&fake.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/data/v9.2/$batch"))
        .respond_with(batch_answer(200, multipart(&[(503, "Retry-After: 2\r\n", busy)])))
        .mount(&fake.server)
        .await;
    let results = three_updates(&fake, BatchMode::ContinueOnError).await.unwrap();
    assert!(
        results[0].error().is_none() && results[2].error().is_none(),
        "{results:?}"
    );
    let error = results[1].error().unwrap();
    assert!(
        matches!(&error, Error::Throttled { code, .. } if code == "0x80072326"),
        "{error:?}"
    );
    assert!(error.is_run_level());
    assert_eq!(requests(&fake).await, 2);
}

#[tokio::test]
async fn retry_after_is_honoured_on_503_and_read_as_an_http_date_against_the_clock() {
    let now = chrono::DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
        .unwrap()
        .to_utc();
    let clock = Arc::new(VirtualClock::starting_at(now));
    let fake = Fake::with_options(|o| o.clock = clock.clone()).await;
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/WhoAmI"))
        .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "Tue, 01 Dec 2026 10:00:42 GMT"))
        .up_to_n_times(1)
        .mount(&fake.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/WhoAmI"))
        .respond_with(ResponseTemplate::new(200).set_body_string(fake.fixture("whoami.json")))
        .mount(&fake.server)
        .await;
    fake.client.who_am_i().await.unwrap();
    assert!(
        clock.sleeps().contains(&Duration::from_secs(42)),
        "{:?}",
        clock.sleeps()
    );
}

/// A token source that notes the (virtual) time of every token it hands out.
#[derive(Debug)]
struct NotingTokens {
    clock: Arc<VirtualClock>,
    taken: Mutex<Vec<Duration>>,
}

#[async_trait]
impl TokenSource for NotingTokens {
    async fn token(&self) -> Result<BearerToken, AuthError> {
        self.taken.lock().unwrap().push(self.clock.elapsed());
        Ok(BearerToken::new(super::TOKEN.to_owned().into(), None))
    }

    fn invalidate(&self) {}
}

#[tokio::test]
async fn the_budget_is_waited_for_before_the_token_is_taken() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex("WhoAmI"))
        .respond_with(ResponseTemplate::new(200).set_body_string(super::fixture("whoami.json")))
        .mount(&server)
        .await;
    let clock = Arc::new(VirtualClock::new());
    let tokens = Arc::new(NotingTokens {
        clock: clock.clone(),
        taken: Mutex::new(Vec::new()),
    });
    // One request per five minutes: the second call waits in the budget for the window to pass.
    let options = ClientOptions {
        clock: clock.clone(),
        rate_limit: RateLimitSettings {
            requests_per_window: 1,
            headroom_percent: 0,
            ..RateLimitSettings::default()
        },
        ..ClientOptions::default()
    };
    let instance = InstanceUrl::parse(&server.uri()).unwrap();
    let client = DynamicsClient::new(&instance, tokens.clone(), options).unwrap();
    client.who_am_i().await.unwrap();
    client.who_am_i().await.unwrap();
    let taken = tokens.taken.lock().unwrap().clone();
    assert_eq!(taken.len(), 2);
    assert!(
        clock.elapsed() >= Duration::from_secs(60),
        "the budget made the second call wait"
    );
    assert!(
        taken[1] >= clock.elapsed().saturating_sub(Duration::from_secs(1)),
        "the token was taken after the wait, not before it: {taken:?} at {:?}",
        clock.elapsed()
    );
}
