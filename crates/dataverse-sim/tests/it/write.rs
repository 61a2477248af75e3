//! Creates, updates, upserts, deletes and their validation.

use serde_json::json;

use crate::common::start;

#[tokio::test]
async fn post_creates_row_and_returns_entity_id_or_representation() {
    let env = start().await;
    let r = env
        .post(
            "contacts",
            json!({"firstname": "Ny", "lastname": "Person", "hlf_membernumber": "200001"}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let id = r.header("odata-entityid").unwrap().to_owned();
    assert!(id.starts_with(&format!("{}/contacts(", env.sim.api_url())), "{id}");
    let r = env
        .send(
            reqwest::Method::POST,
            "contacts?$select=firstname,modifiedon",
            &[("Prefer", "return=representation")],
            Some(json!({"firstname": "Rep", "hlf_membernumber": "200002"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let v = r.json();
    assert_eq!(v["firstname"], "Rep");
    assert!(v["modifiedon"].as_str().unwrap().ends_with('Z'));
    assert!(v.get("lastname").is_none(), "honours $select: {v}");
}

#[tokio::test]
async fn upsert_by_alternate_key_creates_then_updates() {
    let env = start().await;
    let rep = [("Prefer", "return=representation")];
    let r = env
        .patch("contacts(hlf_membernumber='300001')", &rep, json!({"firstname": "A"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let first = r.json();
    let r = env
        .patch(
            "contacts(hlf_membernumber='300001')",
            &rep,
            json!({"hlf_showonpublicsite": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let second = r.json();
    assert_eq!(first["contactid"], second["contactid"]);
    assert_ne!(
        first["@odata.etag"], second["@odata.etag"],
        "etag changes on every write"
    );
    let r = env
        .patch("contacts(hlf_membernumber='300001')", &[], json!({"firstname": "B"}))
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(env.sim.state().rows("contacts").len(), 6);
}

#[tokio::test]
async fn conditional_upserts_follow_if_match_and_if_none_match() {
    let env = start().await;
    let r = env
        .patch(
            "contacts(hlf_membernumber='404404')",
            &[("If-Match", "*")],
            json!({"firstname": "X"}),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.error_code(), "0x80060891");
    let r = env
        .patch(
            "contacts(hlf_membernumber='100001')",
            &[("If-None-Match", "*")],
            json!({"firstname": "X"}),
        )
        .await;
    assert_eq!(r.status, 412, "{}", r.text);
    let etag = env
        .get("contacts(hlf_membernumber='100001')")
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let r = env
        .patch(
            "contacts(hlf_membernumber='100001')",
            &[("If-Match", "W/\"1\"")],
            json!({"firstname": "X"}),
        )
        .await;
    assert_eq!(r.status, 412, "{}", r.text);
    assert_eq!(r.error_code(), "0x80060882");
    let r = env
        .patch(
            "contacts(hlf_membernumber='100001')",
            &[("If-Match", &etag)],
            json!({"firstname": "Y"}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
}

#[tokio::test]
async fn writes_are_validated_like_dataverse() {
    let env = start().await;
    let key = "contacts(hlf_membernumber='100001')";
    let cases = [
        (
            json!({"nosuch": 1}),
            "0x80060888",
            "Could not find a property named 'nosuch' on type 'Microsoft.Dynamics.CRM.contact'",
        ),
        (
            json!({"firstname": "x".repeat(51)}),
            "0x80044331",
            "exceeded the maximum allowed length of '50'",
        ),
        (
            json!({"hlf_peermentorstatus": 5}),
            "0x80044331",
            "outside the valid range",
        ),
        (
            json!({"modifiedon": "2020-01-01T00:00:00Z"}),
            "0x80040203",
            "not valid for update",
        ),
        (
            json!({"hlf_showonpublicsite": "yes"}),
            "0x80048d19",
            "hlf_showonpublicsite",
        ),
        (
            json!({"hlf_certificationexpiry": "31.12.2025"}),
            "0x80048d19",
            "hlf_certificationexpiry",
        ),
    ];
    for (body, code, message) in cases {
        let r = env.patch(key, &[], body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert_eq!(r.error_code(), code, "{body}: {}", r.text);
        assert!(
            r.json()["error"]["message"].as_str().unwrap().contains(message),
            "{body}: {}",
            r.text
        );
    }
    let r = env
        .send(
            reqwest::Method::PATCH,
            key,
            &[("Content-Type", "application/json")],
            None,
        )
        .await;
    assert_eq!(r.status, 400);
    let r = env
        .http
        .patch(env.url(key))
        .bearer_auth(&env.token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn duplicate_alternate_key_on_create_is_rejected() {
    let env = start().await;
    let r = env.post("contacts", json!({"hlf_membernumber": "100001"})).await;
    assert_eq!(r.status, 412, "{}", r.text);
    assert_eq!(r.error_code(), "0x80060892");
}

#[tokio::test]
async fn date_only_and_datetime_values_are_normalised() {
    let env = start().await;
    let r = env
        .patch(
            "contacts(hlf_membernumber='100003')",
            &[("Prefer", "return=representation")],
            json!({"hlf_certificationexpiry": "2027-05-01", "hlf_appsyncedon": "2025-03-30T03:15:00+02:00"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["hlf_certificationexpiry"], "2027-05-01");
    assert_eq!(v["hlf_appsyncedon"], "2025-03-30T01:15:00Z");
}

#[tokio::test]
async fn delete_removes_row_and_honours_if_match() {
    let env = start().await;
    let path = "contacts(5f2d7a3e-1c4b-4e8a-9d3f-000000000005)";
    let r = env
        .send(reqwest::Method::DELETE, path, &[("If-Match", "W/\"1\"")], None)
        .await;
    assert_eq!(r.status, 412);
    let r = env.send(reqwest::Method::DELETE, path, &[], None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(env.get(path).await.status, 404);
    assert_eq!(env.send(reqwest::Method::DELETE, path, &[], None).await.status, 404);
}

#[tokio::test]
async fn postings_table_accepts_money_and_upsert_by_posting_number() {
    let env = start().await;
    let r = env
        .patch(
            "hlf_postings(hlf_postingnumber='P-1')",
            &[("Prefer", "return=representation")],
            json!({"hlf_amount": 1250.5, "hlf_account": "3900", "hlf_approvedon": "2025-02-01", "hlf_membernumber": "100001"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["hlf_amount"], 1250.5);
    let r = env
        .patch(
            "hlf_postings(hlf_postingnumber='P-1')",
            &[("If-None-Match", "*")],
            json!({"hlf_amount": 1}),
        )
        .await;
    assert_eq!(r.status, 412, "exactly once: {}", r.text);
}

#[tokio::test]
async fn write_without_privilege_answers_403() {
    let env = start().await;
    env.sim.faults().deny_writes("hlf_postings");
    let r = env.post("hlf_postings", json!({"hlf_postingnumber": "P-2"})).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.error_code(), "0x80040220");
}
