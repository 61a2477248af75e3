//! The application user's security role: `RetrieveUserPrivileges` as Dataverse answers it, and a configured role
//! enforced on table requests (403, 0x80040220).

use dataverse_sim::{FaultConfig, Simulator};
use serde_json::json;

use crate::common::{start, start_with};

#[tokio::test]
async fn retrieve_user_privileges_answers_the_callers_role() {
    let env = start().await;
    let me = env.get("WhoAmI").await.json()["UserId"].as_str().unwrap().to_owned();
    let reply = env
        .get(&format!(
            "systemusers({me})/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()"
        ))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = reply.json();
    assert!(
        body["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#Microsoft.Dynamics.CRM.RetrieveUserPrivilegesResponse"),
        "{body}"
    );
    let privileges = body["RolePrivileges"].as_array().unwrap();
    let names: Vec<&str> = privileges
        .iter()
        .map(|p| p["PrivilegeName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["prvReadContact", "prvWriteContact"]);
    for privilege in privileges {
        assert_eq!(privilege["Depth"], "Global");
        assert!(privilege["PrivilegeId"].as_str().unwrap().parse::<uuid::Uuid>().is_ok());
        assert!(privilege["BusinessUnitId"].is_string());
    }
    // Another user's privileges are not this app's to read; the function is read-only.
    let other = env
        .get("systemusers(00000000-0000-4000-8000-000000000009)/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()")
        .await;
    assert_eq!(other.status, 404);
    let post = env
        .post(
            &format!("systemusers({me})/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()"),
            json!({}),
        )
        .await;
    assert_eq!(post.status, 405);
}

#[tokio::test]
async fn a_configured_role_is_enforced_on_every_table_request() {
    let faults = FaultConfig {
        role: Some(vec!["prvReadContact:Basic".into(), "prvCreateContact".into()]),
        ..FaultConfig::default()
    };
    let env = start_with(Simulator::builder().faults(faults)).await;
    let me = env.get("WhoAmI").await.json()["UserId"].as_str().unwrap().to_owned();
    let privileges = env
        .get(&format!(
            "systemusers({me})/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()"
        ))
        .await
        .json();
    assert_eq!(privileges["RolePrivileges"][0]["Depth"], "Basic");

    assert_eq!(env.get("contacts?$select=lastname").await.status, 200);
    let created = env
        .post("contacts", json!({ "lastname": "Ny", "hlf_membernumber": "77" }))
        .await;
    assert_eq!(created.status, 204, "{}", created.text);
    let update = env
        .patch(
            "contacts(hlf_membernumber='77')",
            &[("If-Match", "*")],
            json!({ "lastname": "Endret" }),
        )
        .await;
    assert_eq!(update.status, 403, "{}", update.text);
    assert_eq!(update.error_code(), "0x80040220");
    assert!(update.text.contains("prvWriteContact"), "{}", update.text);
    // An upsert that would create needs Create as well as Write; here Write is the one missing.
    let upsert = env
        .patch("contacts(hlf_membernumber='78')", &[], json!({ "lastname": "Ny" }))
        .await;
    assert_eq!(upsert.status, 403);
    // Other tables need their own privileges.
    let postings = env.get("hlf_postings?$select=hlf_postingnumber").await;
    assert_eq!(postings.status, 403);
    assert!(postings.text.contains("prvReadhlf_posting"), "{}", postings.text);

    // A bad role in the fault file is refused with the reason.
    let bad = FaultConfig {
        role: Some(vec!["prvReadContact:Everything".into()]),
        ..FaultConfig::default()
    };
    let error = Simulator::builder().faults(bad).start().await.unwrap_err().to_string();
    assert!(error.contains("unknown depth `Everything`"), "{error}");
}
