//! Conformance: the production Dynamics client (with the production Azure AD credential, over TLS) runs against the
//! emulator the same cases its wiremock tests encode from Microsoft's documented payloads. A difference found here
//! is fixed in the emulator, not in the test.

use std::path::Path;
use std::time::Duration;

use dataverse_sim::{AppRegistration, GenerateSpec, RunningSimulator, Simulator};
use dynamics_client::{
    AlternateKey, AuthError, BatchSizer, Change, ChangeRead, ClientOptions, DynamicsClient, Error, Query, Row,
    UpsertMode, WriteOutcome,
};
use field_mapping::{Drift, FieldMapping, HLF_DEFAULT_MAPPING, RecordMapping};
use futures::TryStreamExt;
use integration_config::{IntegrationConfig, OrganisationConfig};
use serde_json::json;

fn organisation(sim: &RunningSimulator, secret: &str) -> OrganisationConfig {
    let mut env = sim.worker_environment("DYNAMICS");
    env.insert("DYNAMICS_CLIENT_SECRET".to_owned(), secret.to_owned());
    let text = format!(
        "mapping = \"builtin:hlf-default\"\n[[organisations]]\nid = \"hlf\"\nname = \"HLF\"\nauthority_host = \"{}\"\n",
        sim.authority_url()
    );
    let config = IntegrationConfig::from_toml(&text, "conformance.toml", Path::new("."), &env).unwrap();
    config.organisations.into_iter().next().unwrap()
}

/// The production client and credential for the simulator, trusting its certificate.
fn client(sim: &RunningSimulator, adjust: impl FnOnce(&mut ClientOptions)) -> DynamicsClient {
    let mut options = ClientOptions {
        extra_root_certificates: vec![sim.ca_certificate_pem().unwrap().as_bytes().to_vec()],
        ..ClientOptions::default()
    };
    adjust(&mut options);
    DynamicsClient::for_organisation(&organisation(sim, dataverse_sim::DEFAULT_CLIENT_SECRET), options).unwrap()
}

fn mentor() -> RecordMapping {
    FieldMapping::from_toml(HLF_DEFAULT_MAPPING)
        .unwrap()
        .record("mentor")
        .unwrap()
        .clone()
}

fn row(value: serde_json::Value) -> Row {
    serde_json::from_value(value).unwrap()
}

#[tokio::test]
async fn the_production_credential_authenticates_over_tls_and_who_am_i_answers() {
    let sim = Simulator::builder().start().await.unwrap();
    let client = client(&sim, |_| {});
    let me = client.who_am_i().await.unwrap();
    assert_eq!(Some(me.user_id), sim.state().user_id(dataverse_sim::DEFAULT_CLIENT_ID));
}

#[tokio::test]
async fn azure_ad_refusals_are_typed_the_same_way() {
    let sim = Simulator::builder().start().await.unwrap();
    let wrong = DynamicsClient::for_organisation(
        &organisation(&sim, "not-the-secret"),
        ClientOptions {
            extra_root_certificates: vec![sim.ca_certificate_pem().unwrap().as_bytes().to_vec()],
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let error = wrong.who_am_i().await.unwrap_err();
    assert!(
        matches!(error, Error::Auth(AuthError::InvalidSecret { .. })),
        "{error:?}"
    );

    sim.faults().expire_secret(dataverse_sim::DEFAULT_CLIENT_ID).unwrap();
    let expired = client(&sim, |_| {}).who_am_i().await.unwrap_err();
    assert!(
        matches!(expired, Error::Auth(AuthError::SecretExpired { .. })),
        "{expired:?}"
    );

    let sim = Simulator::builder()
        .app(AppRegistration::new(
            dataverse_sim::DEFAULT_TENANT_ID,
            "11111111-2222-3333-4444-555555555555",
            "x",
        ))
        .start()
        .await
        .unwrap();
    let unknown = client(&sim, |_| {}).who_am_i().await.unwrap_err();
    assert!(
        matches!(unknown, Error::Auth(AuthError::UnknownApplication { .. })),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn contact_metadata_matches_the_default_mapping_and_drift_is_seen() {
    let sim = Simulator::builder().start().await.unwrap();
    let client = client(&sim, |_| {});
    let table = client.table_metadata("contact").await.unwrap();
    assert!(table.change_tracking);
    assert_eq!(mentor().check_schema(&table), []);

    sim.faults().drop_column("contact", "hlf_showonpublicsite").unwrap();
    let table = client.table_metadata("contact").await.unwrap();
    let drift = mentor().check_schema(&table);
    assert!(
        matches!(drift.as_slice(), [Drift::MissingColumn { column, .. }] if column == "hlf_showonpublicsite"),
        "{drift:?}"
    );
    let writer = client.writer(&mentor());
    let key = AlternateKey::new("hlf_membernumber", "100001").unwrap();
    let error = writer
        .upsert(
            &key,
            &row(json!({ "hlf_showonpublicsite": false })),
            UpsertMode::CreateOrUpdate,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::UnknownColumn { column } if column == "hlf_showonpublicsite"),
        "{error:?}"
    );
}

#[tokio::test]
async fn pages_follow_next_link_and_rows_convert_through_the_mapping() {
    let sim = Simulator::builder()
        .generate(GenerateSpec {
            contacts: 12,
            mentors: 4,
            seed: 7,
        })
        .start()
        .await
        .unwrap();
    let client = client(&sim, |o| o.page_size = 5);
    let mapping = mentor();
    let query = Query::new("contacts").select(&mapping.select_columns());
    let pages: Vec<_> = client.pages::<Row>(&query).try_collect().await.unwrap();
    assert_eq!(pages.iter().map(|p| p.rows.len()).collect::<Vec<_>>(), [5, 5, 2]);
    for row in pages.iter().flat_map(|p| &p.rows) {
        assert!(row.contains_key("@odata.etag"));
        mapping
            .from_dataverse(row)
            .unwrap_or_else(|e| panic!("{e:?} in {row:?}"));
    }
    assert_eq!(client.metrics().requests, 3);
}

#[tokio::test]
async fn upsert_modes_and_etag_guards_behave_as_documented() {
    let sim = Simulator::builder().demo_data().start().await.unwrap();
    let client = client(&sim, |_| {});
    let writer = client.writer(&mentor());
    let body = row(json!({ "hlf_showonpublicsite": false, "hlf_peermentorstatus": 100000001 }));
    let existing = AlternateKey::new("hlf_membernumber", "100001").unwrap();
    let missing = AlternateKey::new("hlf_membernumber", "999999").unwrap();

    let updated = writer.upsert(&existing, &body, UpsertMode::UpdateOnly).await.unwrap();
    assert_eq!(updated.outcome, WriteOutcome::Updated);
    assert!(matches!(
        writer.upsert(&missing, &body, UpsertMode::UpdateOnly).await,
        Err(Error::NotFound { .. })
    ));
    // 412 with the duplicate-key code: a duplicate, not a version conflict.
    assert!(matches!(
        writer.upsert(&existing, &body, UpsertMode::CreateOnly).await,
        Err(Error::Duplicate { .. })
    ));
    let created = writer
        .upsert(&missing, &body, UpsertMode::CreateOrUpdate)
        .await
        .unwrap();
    assert_eq!(created.outcome, WriteOutcome::Created);
    let again = writer
        .upsert(&missing, &body, UpsertMode::CreateOrUpdate)
        .await
        .unwrap();
    assert_eq!((again.outcome, again.id), (WriteOutcome::Updated, created.id));
    assert_ne!(again.etag, created.etag, "etags change on every write");

    let id = updated.id.unwrap();
    let stale = updated.etag.unwrap();
    writer
        .update_if_unchanged(id, &body, &again.etag.clone().unwrap_or_default())
        .await
        .unwrap_err();
    let fresh = client
        .read_by_key("contacts", &existing, &["contactid"])
        .await
        .unwrap()
        .unwrap();
    let etag = fresh.get("@odata.etag").and_then(|v| v.as_str()).unwrap().to_owned();
    writer.update_if_unchanged(id, &body, &etag).await.unwrap();
    assert!(matches!(
        writer.update_if_unchanged(id, &body, &stale).await,
        Err(Error::Concurrency)
    ));
}

#[tokio::test]
async fn a_batch_where_part_7_of_20_fails_maps_every_answer_to_its_row() {
    let sim = Simulator::builder()
        .generate(GenerateSpec {
            contacts: 20,
            mentors: 20,
            seed: 3,
        })
        .start()
        .await
        .unwrap();
    let client = client(&sim, |_| {});
    let mut keys: Vec<String> = sim
        .state()
        .rows("contacts")
        .iter()
        .map(|r| r["hlf_membernumber"].as_str().unwrap().to_owned())
        .collect();
    keys.sort();
    keys[6] = "404404".to_owned();
    let rows: Vec<(AlternateKey, Row)> = keys
        .iter()
        .map(|k| {
            (
                AlternateKey::new("hlf_membernumber", k).unwrap(),
                row(json!({ "hlf_showonpublicsite": false })),
            )
        })
        .collect();
    let writer = client.writer(&mentor());
    let results = writer
        .upsert_many(&rows, UpsertMode::UpdateOnly, &mut BatchSizer::new(50, 1000))
        .await;
    for (i, result) in results.iter().enumerate() {
        if i == 6 {
            assert!(matches!(result, Err(Error::NotFound { .. })), "{result:?}");
        } else {
            assert_eq!(
                result.as_ref().unwrap().outcome,
                WriteOutcome::Updated,
                "part {}",
                i + 1
            );
        }
    }
    assert_eq!(client.metrics().requests, 1);
}

#[tokio::test]
async fn change_tracking_reports_changes_deletions_and_expiry() {
    let sim = Simulator::builder().demo_data().start().await.unwrap();
    let client = client(&sim, |_| {});
    let query = Query::new("contacts").select(&["contactid", "modifiedon", "hlf_membernumber", "firstname"]);
    let initial: Vec<_> = client.track_changes(&query).unwrap().try_collect().await.unwrap();
    let link = initial.last().unwrap().delta_link.clone().unwrap();
    assert_eq!(initial.iter().map(|p| p.changes.len()).sum::<usize>(), 5);

    let state = sim.state();
    let changed = state.find_by_key("contacts", "hlf_membernumber", "100002").unwrap();
    let deleted = state.find_by_key("contacts", "hlf_membernumber", "100003").unwrap();
    state
        .update("contacts", changed, json!({ "firstname": "Olav" }))
        .unwrap();
    state.delete("contacts", deleted).unwrap();

    let ChangeRead::Changes(stream) = client.changes_since(&link).await.unwrap() else {
        panic!("expected changes");
    };
    let pages: Vec<_> = stream.try_collect().await.unwrap();
    let changes: Vec<_> = pages.iter().flat_map(|p| p.changes.clone()).collect();
    assert!(
        changes
            .iter()
            .any(|c| matches!(c, Change::Upsert(r) if r.get("firstname") == Some(&json!("Olav")))),
        "{changes:?}"
    );
    assert!(changes.contains(&Change::Deleted(deleted)), "{changes:?}");
    let next = pages.last().unwrap().delta_link.clone().unwrap();

    sim.faults().expire_delta_tokens();
    assert!(matches!(
        client.changes_since(&next).await.unwrap(),
        ChangeRead::FullResyncNeeded
    ));
}

#[tokio::test]
async fn a_throttled_request_waits_retry_after_and_succeeds() {
    let sim = Simulator::builder().start().await.unwrap();
    let client = client(&sim, |_| {});
    client.who_am_i().await.unwrap();
    sim.faults().throttle_next(1, Duration::from_secs(1));
    let started = std::time::Instant::now();
    client.who_am_i().await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    let metrics = client.metrics();
    assert_eq!((metrics.throttled, metrics.retried), (1, 1), "{metrics:?}");
}
