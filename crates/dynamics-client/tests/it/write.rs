//! Writes: upsert modes, created versus updated, etag-guarded updates and the write guard.

use dynamics_client::{AlternateKey, Error, Row, UpsertMode, WriteOutcome};
use serde_json::json;
use wiremock::matchers::{body_json, header, header_exists, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use super::Fake;

fn body(value: serde_json::Value) -> Row {
    serde_json::from_value(value).unwrap()
}

const KEY_PATH: &str = "/api/data/v9.2/contacts(hlf_membernumber='100001')";

#[tokio::test]
async fn upsert_by_alternate_key_tells_created_from_updated() {
    let fake = Fake::new().await;
    let writer = fake.client.writer(&super::mentor_mapping());
    let suppress = body(json!({ "hlf_showonpublicsite": false, "hlf_peermentorstatus": 100000001 }));
    Mock::given(method("PATCH"))
        .and(path(KEY_PATH))
        .and(query_param("$select", "contactid"))
        .and(header("prefer", "return=representation"))
        .and(body_json(
            json!({ "hlf_showonpublicsite": false, "hlf_peermentorstatus": 100000001 }),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "@odata.etag": "W/\"7001\"", "contactid": "00000000-0000-0000-0000-000000001001"
        })))
        .up_to_n_times(1)
        .expect(1)
        .mount(&fake.server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(KEY_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "@odata.etag": "W/\"7002\"", "contactid": "00000000-0000-0000-0000-000000001001"
        })))
        .expect(1)
        .mount(&fake.server)
        .await;
    let key = AlternateKey::new("hlf_membernumber", "100001").unwrap();
    let first = writer
        .upsert(&key, &suppress, UpsertMode::CreateOrUpdate)
        .await
        .unwrap();
    assert_eq!(first.outcome, WriteOutcome::Created);
    assert_eq!(first.etag.as_deref(), Some("W/\"7001\""));
    let second = writer
        .upsert(&key, &suppress, UpsertMode::CreateOrUpdate)
        .await
        .unwrap();
    assert_eq!(second.outcome, WriteOutcome::Updated);
    assert_eq!(second.id, first.id);
}

#[tokio::test]
async fn update_only_and_create_only_send_their_conditions() {
    let fake = Fake::new().await;
    let writer = fake.client.writer(&super::mentor_mapping());
    let key = AlternateKey::new("hlf_membernumber", "100001").unwrap();
    let row = body(json!({ "hlf_showonpublicsite": true }));
    Mock::given(method("PATCH"))
        .and(path(KEY_PATH))
        .and(header("if-match", "*"))
        .respond_with(ResponseTemplate::new(404).set_body_string(fake.fixture("error-not-found-by-key.json")))
        .expect(1)
        .mount(&fake.server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(KEY_PATH))
        .and(header("if-none-match", "*"))
        .respond_with(ResponseTemplate::new(412).set_body_string(fake.fixture("error-concurrency.json")))
        .expect(1)
        .mount(&fake.server)
        .await;
    let missing = writer.upsert(&key, &row, UpsertMode::UpdateOnly).await.unwrap_err();
    assert!(
        matches!(&missing, Error::NotFound { code, .. } if code == "0x80060891"),
        "{missing:?}"
    );
    let exists = writer.upsert(&key, &row, UpsertMode::CreateOnly).await.unwrap_err();
    assert!(matches!(exists, Error::Concurrency), "{exists:?}");
}

#[tokio::test]
async fn an_update_with_a_stale_etag_is_a_concurrency_conflict() {
    let fake = Fake::new().await;
    let writer = fake.client.writer(&super::mentor_mapping());
    let id = uuid::Uuid::parse_str("00000000-0000-0000-0000-000000001001").unwrap();
    Mock::given(method("PATCH"))
        .and(path(format!("/api/data/v9.2/contacts({id})")))
        .and(header("if-match", "W/\"1001\""))
        .respond_with(ResponseTemplate::new(412).set_body_string(fake.fixture("error-concurrency.json")))
        .expect(1)
        .mount(&fake.server)
        .await;
    let error = writer
        .update_if_unchanged(id, &body(json!({ "hlf_showonpublicsite": false })), "W/\"1001\"")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Concurrency), "{error:?}");
    assert!(fake.clock.sleeps().is_empty(), "a 412 must not be retried");
}

#[tokio::test]
async fn the_write_guard_refuses_columns_the_mapping_does_not_own() {
    let fake = Fake::new().await;
    Mock::given(header_exists("authorization"))
        .respond_with(ResponseTemplate::new(204))
        .expect(0)
        .mount(&fake.server)
        .await;
    let writer = fake.client.writer(&super::mentor_mapping());
    let key = AlternateKey::new("hlf_membernumber", "100001").unwrap();
    for column in [
        "emailaddress1",
        "firstname",
        "hlf_membershipstatus",
        "statecode",
        "hlf_membernumber",
    ] {
        let row = body(json!({ "hlf_showonpublicsite": false, column: "x" }));
        let error = writer.upsert(&key, &row, UpsertMode::CreateOrUpdate).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("refused to write column `{column}` of `contacts`: the mapping does not declare it app-owned")
        );
        assert!(writer.create(&row).await.is_err());
    }
}

#[tokio::test]
async fn alternate_keys_are_checked_and_quoted() {
    for bad in ["12/34", "a&b", "", "50%", "x?y"] {
        assert!(
            matches!(
                AlternateKey::new("hlf_membernumber", bad),
                Err(Error::InvalidKey { .. })
            ),
            "{bad}"
        );
    }
    let fake = Fake::new().await;
    Mock::given(method("PATCH"))
        .and(path("/api/data/v9.2/contacts(hlf_membernumber='O''Neil%207')"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&fake.server)
        .await;
    let writer = fake.client.writer(&super::mentor_mapping());
    let key = AlternateKey::new("hlf_membernumber", "O'Neil 7").unwrap();
    let written = writer
        .upsert(
            &key,
            &body(json!({ "hlf_showonpublicsite": true })),
            UpsertMode::UpdateOnly,
        )
        .await
        .unwrap();
    assert_eq!(written.outcome, WriteOutcome::Updated);
}
