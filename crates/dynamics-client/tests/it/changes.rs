//! Change tracking: the initial tracked read, deltas with deletions, and expired tokens.

use dynamics_client::{Change, ChangeRead, Query};
use futures::TryStreamExt;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, Request, ResponseTemplate};

/// Matches the whole `Prefer` header (wiremock's `header` matcher splits values at commas).
fn prefer(expected: &'static str) -> impl Fn(&Request) -> bool {
    move |request: &Request| request.headers.get("prefer").and_then(|v| v.to_str().ok()) == Some(expected)
}

use super::Fake;

#[tokio::test]
async fn the_initial_tracked_read_ends_with_a_delta_link() {
    let fake = Fake::new().await;
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/contacts"))
        .and(prefer("odata.track-changes,odata.maxpagesize=5000"))
        .respond_with(ResponseTemplate::new(200).set_body_string(fake.fixture("contacts-delta-initial.json")))
        .expect(1)
        .mount(&fake.server)
        .await;
    let query = Query::new("contacts").select(&["contactid", "modifiedon", "hlf_membernumber"]);
    let pages: Vec<_> = fake.client.track_changes(&query).unwrap().try_collect().await.unwrap();
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].changes.len(), 2);
    assert!(matches!(&pages[0].changes[0], Change::Upsert(row) if row["hlf_membernumber"] == "100001"));
    let link = pages[0].delta_link.as_deref().unwrap();
    assert!(
        link.starts_with(&fake.base()) && link.contains("$deltatoken="),
        "{link}"
    );
}

#[tokio::test]
async fn a_delta_read_surfaces_changes_and_deletions() {
    let fake = Fake::new().await;
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/contacts"))
        .and(query_param("$deltatoken", "919042!08/22/2017 08:10:44"))
        .and(prefer("odata.track-changes,odata.maxpagesize=5000"))
        .respond_with(ResponseTemplate::new(200).set_body_string(fake.fixture("contacts-delta-changes.json")))
        .expect(1)
        .mount(&fake.server)
        .await;
    let initial: serde_json::Value = serde_json::from_str(&fake.fixture("contacts-delta-initial.json")).unwrap();
    let link = initial["@odata.deltaLink"].as_str().unwrap();
    let ChangeRead::Changes(stream) = fake.client.changes_since(link).await.unwrap() else {
        panic!("expected changes");
    };
    let pages: Vec<_> = stream.try_collect().await.unwrap();
    let changes = &pages[0].changes;
    assert_eq!(changes.len(), 3);
    assert!(matches!(&changes[0], Change::Upsert(row) if row["hlf_showonpublicsite"] == false));
    assert_eq!(
        changes[1],
        Change::Deleted(uuid::Uuid::parse_str("00000000-0000-0000-0000-000000001001").unwrap())
    );
    assert!(pages[0].delta_link.as_deref().unwrap().contains("919058"));
}

#[tokio::test]
async fn an_expired_delta_token_asks_for_a_full_resync_instead_of_failing() {
    let fake = Fake::new().await;
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/contacts"))
        .respond_with(ResponseTemplate::new(400).set_body_string(fake.fixture("error-expired-delta-token.json")))
        .expect(1)
        .mount(&fake.server)
        .await;
    let link = format!(
        "{}contacts?$select=contactid&$deltatoken=1%2101%2f01%2f2020",
        fake.base()
    );
    let read = fake.client.changes_since(&link).await.unwrap();
    assert!(matches!(read, ChangeRead::FullResyncNeeded), "{read:?}");
}

#[tokio::test]
async fn change_tracking_refuses_filters() {
    let fake = Fake::new().await;
    let query = Query::new("contacts").filter(dynamics_client::Filter::raw("statecode eq 0"));
    assert!(fake.client.track_changes(&query).is_err());
}
