//! Change tracking: delta links, deletions, expiry.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use dataverse_sim::{ManualClock, Simulator};
use serde_json::{Value, json};

use crate::common::{Env, start, start_with};

const TRACK: (&str, &str) = ("Prefer", "odata.track-changes");

async fn initial(env: &Env, page: Option<&str>) -> (Vec<Value>, String) {
    let mut headers = vec![TRACK];
    if let Some(p) = page {
        headers.push(("Prefer", p));
    }
    let mut url = env.url("contacts?$select=firstname,hlf_membernumber");
    let mut rows = Vec::new();
    loop {
        let r = env.get_with(&url, &headers).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let v = r.json();
        rows.extend(v["value"].as_array().unwrap().iter().cloned());
        if let Some(next) = v["@odata.nextLink"].as_str() {
            assert!(v.get("@odata.deltaLink").is_none(), "delta link only on the last page");
            url = next.to_owned();
            continue;
        }
        return (
            rows,
            v["@odata.deltaLink"]
                .as_str()
                .expect("delta link on last page")
                .to_owned(),
        );
    }
}

#[tokio::test]
async fn track_changes_returns_rows_then_delta_link_with_changes_and_deletions() {
    let env = start().await;
    let (rows, link) = initial(&env, None).await;
    assert_eq!(rows.len(), 5);
    assert!(
        link.contains("contacts?$select=firstname,hlf_membernumber&$deltatoken="),
        "{link}"
    );
    let r = env.get(&link).await;
    assert!(
        r.json()["value"].as_array().unwrap().is_empty(),
        "no changes yet: {}",
        r.text
    );

    env.patch(
        "contacts(hlf_membernumber='100001')",
        &[],
        json!({"firstname": "Endret"}),
    )
    .await;
    env.post("contacts", json!({"hlf_membernumber": "NEW1"})).await;
    let state = env.sim.state();
    let gone = state.find_by_key("contacts", "hlf_membernumber", "100005").unwrap();
    state.delete("contacts", gone).unwrap();

    let r = env.get(&link).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert!(v["@odata.context"].as_str().unwrap().ends_with("/$delta"), "{v}");
    let items = v["value"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{v}");
    assert_eq!(items[0]["firstname"], "Endret");
    assert_eq!(items[1]["hlf_membernumber"], "NEW1");
    assert_eq!(items[2]["id"], gone.to_string());
    assert_eq!(items[2]["reason"], "deleted");
    assert!(
        items[2]["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#contacts/$deletedEntity")
    );
    let next = v["@odata.deltaLink"].as_str().unwrap();
    let r = env.get(next).await;
    assert!(r.json()["value"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn track_changes_pages_with_next_link_before_delta_link() {
    let env = start().await;
    let (rows, link) = initial(&env, Some("odata.maxpagesize=2")).await;
    assert_eq!(rows.len(), 5);
    for i in 0..5 {
        env.post("contacts", json!({"hlf_membernumber": format!("D{i}")})).await;
    }
    let r = env.get_with(&link, &[("Prefer", "odata.maxpagesize=3")]).await;
    let v = r.json();
    assert_eq!(v["value"].as_array().unwrap().len(), 3, "{v}");
    let next = v["@odata.nextLink"].as_str().unwrap();
    let r = env.get_with(next, &[("Prefer", "odata.maxpagesize=3")]).await;
    let v = r.json();
    assert_eq!(v["value"].as_array().unwrap().len(), 2, "{v}");
    assert!(v["@odata.deltaLink"].is_string());
}

#[tokio::test]
async fn track_changes_rejects_filter_orderby_top_and_expand() {
    let env = start().await;
    for opt in [
        "$filter=statecode%20eq%200",
        "$orderby=firstname",
        "$top=1",
        "$expand=parentcustomerid",
    ] {
        let r = env.get_with(&format!("contacts?{opt}"), &[TRACK]).await;
        assert_eq!(r.status, 400, "{opt}: {}", r.text);
        let name = opt.split('=').next().unwrap();
        assert!(
            r.text.contains(&format!(
                "The \\\"{name}\\\" query parameter isn't supported when Change Tracking is enabled."
            )),
            "{}",
            r.text
        );
    }
}

#[tokio::test]
async fn delta_token_expires_after_lifetime_and_on_demand() {
    let clock = Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()));
    let env = start_with(
        Simulator::builder()
            .demo_data()
            .clock(clock.clone())
            .token_lifetime(std::time::Duration::from_secs(30 * 24 * 3600)),
    )
    .await;
    let (_, link) = initial(&env, None).await;
    clock.advance(chrono::Duration::days(6));
    assert_eq!(env.get(&link).await.status, 200);
    clock.advance(chrono::Duration::days(2));
    let r = env.get(&link).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.error_code(), "0x80044352");
    assert_eq!(
        r.json()["error"]["message"],
        "Version stamp associated with the client has expired. Please perform a full sync."
    );

    let (_, fresh) = initial(&env, None).await;
    assert_eq!(env.get(&fresh).await.status, 200);
    env.sim.faults().expire_delta_tokens();
    assert_eq!(env.get(&fresh).await.error_code(), "0x80044352");
    let (_, after) = initial(&env, None).await;
    assert_eq!(
        env.get(&after).await.status,
        200,
        "tokens issued after the fault still work"
    );
}
