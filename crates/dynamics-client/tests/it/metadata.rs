//! Metadata into the mapping's TableMetadata, and WhoAmI.

use field_mapping::ColumnKind;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use super::Fake;

pub(crate) async fn serve_contact_metadata(fake: &Fake) {
    let table = "/api/data/v9.2/EntityDefinitions(LogicalName='contact')";
    let serve = |suffix: &str, file: &str| {
        Mock::given(method("GET"))
            .and(path(format!("{table}{suffix}")))
            .respond_with(ResponseTemplate::new(200).set_body_string(fake.fixture(file)))
            .expect(1)
    };
    serve("", "contact-definition.json").mount(&fake.server).await;
    serve("/Attributes", "contact-attributes.json")
        .mount(&fake.server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!(
            "{table}/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata"
        )))
        .and(query_param(
            "$expand",
            "OptionSet($select=Options),GlobalOptionSet($select=Options)",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_string(fake.fixture("contact-picklists.json")))
        .expect(1)
        .mount(&fake.server)
        .await;
    serve(
        "/Attributes/Microsoft.Dynamics.CRM.StateAttributeMetadata",
        "contact-states.json",
    )
    .mount(&fake.server)
    .await;
    serve(
        "/Attributes/Microsoft.Dynamics.CRM.StatusAttributeMetadata",
        "contact-statuses.json",
    )
    .mount(&fake.server)
    .await;
}

#[tokio::test]
async fn contact_metadata_reads_types_lengths_options_and_change_tracking() {
    let fake = Fake::new().await;
    serve_contact_metadata(&fake).await;
    let table = fake.client.table_metadata("contact").await.unwrap();
    assert!(table.change_tracking);
    let column = |name: &str| table.columns.get(name).unwrap_or_else(|| panic!("no column {name}"));
    assert_eq!(column("hlf_membernumber").kind, ColumnKind::String);
    assert_eq!(column("hlf_membernumber").max_length, Some(20));
    assert_eq!(column("hlf_certificationexpiry").kind, ColumnKind::DateOnly);
    assert_eq!(column("hlf_appsyncedon").kind, ColumnKind::DateTime);
    assert_eq!(column("statecode").kind, ColumnKind::State);
    assert_eq!(column("statecode").options, Some([0, 1].into()));
    assert_eq!(
        column("hlf_membershipstatus").options,
        Some([100000000, 100000001, 100000002].into())
    );
    assert_eq!(column("parentcustomerid").kind, ColumnKind::Lookup);
    assert!(!column("modifiedon").valid_for_update);
    assert_eq!(fake.client.metrics().requests, 5);
}

#[tokio::test]
async fn the_default_mapping_matches_the_documented_contact_metadata() {
    let fake = Fake::new().await;
    serve_contact_metadata(&fake).await;
    let table = fake.client.table_metadata("contact").await.unwrap();
    assert_eq!(super::mentor_mapping().check_schema(&table), []);
}

#[tokio::test]
async fn a_removed_column_is_reported_as_drift() {
    let fake = Fake::new().await;
    serve_contact_metadata(&fake).await;
    let mut table = fake.client.table_metadata("contact").await.unwrap();
    table.columns.remove("hlf_showonpublicsite");
    let drift = super::mentor_mapping().check_schema(&table);
    assert_eq!(drift.len(), 1);
    assert!(drift[0].to_string().contains("hlf_showonpublicsite"));
}

#[tokio::test]
async fn who_am_i_returns_the_application_user() {
    let fake = Fake::new().await;
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/WhoAmI"))
        .respond_with(ResponseTemplate::new(200).set_body_string(fake.fixture("whoami.json")))
        .mount(&fake.server)
        .await;
    let me = fake.client.who_am_i().await.unwrap();
    assert_eq!(me.organization_id.to_string(), "883278f5-07af-45eb-a0bc-3fea67caa544");
}
