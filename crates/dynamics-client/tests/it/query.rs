//! Queries and paging against documented page payloads.

use dynamics_client::{Error, Filter, Literal, Query, Row};
use futures::TryStreamExt;
use serde::Deserialize;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use super::Fake;

#[derive(Debug, Deserialize)]
struct Contact {
    contactid: uuid::Uuid,
    hlf_membernumber: String,
    #[serde(rename = "@odata.etag")]
    etag: String,
}

async fn serve_two_pages(fake: &Fake) {
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/contacts"))
        .and(query_param("$select", "contactid,hlf_membernumber"))
        .and(header("prefer", "odata.maxpagesize=3"))
        .respond_with(ResponseTemplate::new(200).set_body_string(fake.fixture("contacts-page-1.json")))
        .expect(1)
        .mount(&fake.server)
        .await;
    // The next link is followed exactly as returned, skiptoken and all, with the same page size.
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/contacts"))
        .and(query_param("$select", "contactid,modifiedon,hlf_membernumber"))
        .and(query_param("$skiptoken", "<cookie pagenumber=\"2\" pagingcookie=\"%3ccookie%20page%3d%221%22%3e%3ccontactid%20last%3d%22%7b00000000-0000-0000-0000-000000001003%7d%22%20first%3d%22%7b00000000-0000-0000-0000-000000001001%7d%22%20%2f%3e%3c%2fcookie%3e\" istracking=\"False\" />"))
        .and(header("prefer", "odata.maxpagesize=3"))
        .respond_with(ResponseTemplate::new(200).set_body_string(fake.fixture("contacts-page-2.json")))
        .expect(1)
        .mount(&fake.server)
        .await;
}

#[tokio::test]
async fn pages_follow_next_link_unchanged_and_decode_typed_rows() {
    let fake = Fake::with_options(|o| o.page_size = 3).await;
    serve_two_pages(&fake).await;
    let query = Query::new("contacts").select(&["contactid", "hlf_membernumber"]);
    let pages: Vec<_> = fake.client.pages::<Contact>(&query).try_collect().await.unwrap();
    assert_eq!(pages.len(), 2);
    let members: Vec<_> = pages
        .iter()
        .flat_map(|p| &p.rows)
        .map(|c| c.hlf_membernumber.as_str())
        .collect();
    assert_eq!(members, ["100001", "100002", "100003", "100004", "100005"]);
    assert_eq!(pages[0].rows[0].etag, "W/\"1001\"");
    assert_eq!(
        pages[0].rows[0].contactid.to_string(),
        "00000000-0000-0000-0000-000000001001"
    );
    assert_eq!(fake.client.metrics().requests, 2);
}

#[tokio::test]
async fn raw_rows_keep_the_etag_and_every_column() {
    let fake = Fake::with_options(|o| o.page_size = 3).await;
    serve_two_pages(&fake).await;
    let query = Query::new("contacts").select(&["contactid", "hlf_membernumber"]);
    let rows: Vec<Row> = fake.client.all_rows(&query).await.unwrap();
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[2]["@odata.etag"], "W/\"1003\"");
    assert_eq!(rows[2]["lastname"], "O'Brien");
    // The mapping reads what the client returns.
    let mentor = super::mentor_mapping();
    let record = mentor.from_dataverse(&rows[1]).unwrap();
    assert_eq!(record["family_name"], field_mapping::AppValue::Text("Ødegård".into()));
}

#[tokio::test]
async fn pages_are_fetched_only_as_they_are_consumed() {
    let fake = Fake::with_options(|o| o.page_size = 3).await;
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/contacts"))
        .respond_with(ResponseTemplate::new(200).set_body_string(fake.fixture("contacts-page-1.json")))
        .expect(1)
        .mount(&fake.server)
        .await;
    let query = Query::new("contacts").select(&["contactid", "hlf_membernumber"]);
    let mut pages = Box::pin(fake.client.pages::<Row>(&query));
    let first = pages.try_next().await.unwrap().unwrap();
    assert_eq!(first.rows.len(), 3);
    drop(pages);
    // Dropping the stream after one page means the next page is never requested (expect(1) above).
}

#[tokio::test]
async fn filters_are_sent_quoted_and_encoded() {
    let fake = Fake::new().await;
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/contacts"))
        .and(query_param(
            "$filter",
            "(hlf_membernumber eq 'O''Brien') and (modifiedon ge 2026-11-27T00:00:00Z)",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"value":[]}"#))
        .expect(1)
        .mount(&fake.server)
        .await;
    let query = Query::new("contacts")
        .select(&["contactid"])
        .filter(Filter::eq("hlf_membernumber", Literal::Text("O'Brien")))
        .filter(Filter::ge(
            "modifiedon",
            Literal::DateTime("2026-11-27T00:00:00Z".parse().unwrap()),
        ));
    let rows: Vec<Row> = fake.client.all_rows(&query).await.unwrap();
    assert!(rows.is_empty());
}

#[tokio::test]
async fn a_next_link_to_another_host_is_refused() {
    let fake = Fake::new().await;
    let body = fake
        .fixture("contacts-page-1.json")
        .replace(&fake.server.uri(), "https://attacker.example");
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/contacts"))
        .respond_with(ResponseTemplate::new(200).set_body_string(body))
        .mount(&fake.server)
        .await;
    let error = fake.client.all_rows::<Row>(&Query::new("contacts")).await.unwrap_err();
    assert!(error.to_string().contains("next or delta link"), "{error}");
}

#[tokio::test]
async fn malformed_truncated_and_non_json_pages_are_decode_errors() {
    let bodies: [&[u8]; 8] = [
        br#"{"value":[{"contactid":"#,
        b"<html>oops</html>",
        b"",
        br#"{"value":{}}"#,
        br#"[1,2]"#,
        // Not UTF-8: in a value kept as text, and in a column name.
        b"{\"value\":[{\"firstname\":\"\xff\"}]}",
        b"{\"value\":[{\"first\xc3name\":\"a\"}]}",
        // A row that is not an object.
        br#"{"value":[{"contactid":"1"},"x"]}"#,
    ];
    for body in bodies {
        let fake = Fake::new().await;
        Mock::given(method("GET"))
            .and(path("/api/data/v9.2/contacts"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(body, "application/json"))
            .mount(&fake.server)
            .await;
        match fake.client.all_rows::<Row>(&Query::new("contacts")).await {
            Err(Error::Decode { what, .. }) => assert!(what.contains("page of"), "{what}"),
            other => panic!("body {:?} gave {other:?}", String::from_utf8_lossy(body)),
        }
    }
}
