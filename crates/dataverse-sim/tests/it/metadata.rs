//! Metadata endpoints as the client calls them.

use crate::common::start;

#[tokio::test]
async fn entity_definition_select_returns_table_facts() {
    let env = start().await;
    let r = env.get("EntityDefinitions(LogicalName='contact')?$select=LogicalName,EntitySetName,PrimaryIdAttribute,ChangeTrackingEnabled").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["LogicalName"], "contact");
    assert_eq!(v["EntitySetName"], "contacts");
    assert_eq!(v["PrimaryIdAttribute"], "contactid");
    assert_eq!(v["ChangeTrackingEnabled"], true);
    assert!(v.get("SchemaName").is_none(), "{v}");
}

#[tokio::test]
async fn attributes_list_carries_types_and_type_specific_properties() {
    let env = start().await;
    let r = env.get("EntityDefinitions(LogicalName='contact')/Attributes").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    let attrs = v["value"].as_array().unwrap();
    let find = |n: &str| {
        attrs
            .iter()
            .find(|a| a["LogicalName"] == n)
            .unwrap_or_else(|| panic!("{n} missing"))
    };
    let member = find("hlf_membernumber");
    assert_eq!(member["@odata.type"], "#Microsoft.Dynamics.CRM.StringAttributeMetadata");
    assert_eq!(member["MaxLength"], 20);
    let expiry = find("hlf_certificationexpiry");
    assert_eq!(expiry["AttributeType"], "DateTime");
    assert_eq!(expiry["Format"], "DateOnly");
    assert_eq!(expiry["DateTimeBehavior"]["Value"], "DateOnly");
    let synced = find("hlf_appsyncedon");
    assert_eq!(synced["DateTimeBehavior"]["Value"], "UserLocal");
    assert_eq!(synced["Format"], "DateAndTime");
    let modified = find("modifiedon");
    assert_eq!(modified["IsValidForUpdate"], false);
    for (name, max) in [
        ("firstname", 50),
        ("lastname", 50),
        ("emailaddress1", 100),
        ("mobilephone", 50),
    ] {
        assert_eq!(find(name)["MaxLength"], max, "{name}");
    }
    assert_eq!(find("hlf_showonpublicsite")["AttributeType"], "Boolean");
    assert_eq!(find("statecode")["AttributeType"], "State");
    assert_eq!(find("statuscode")["AttributeType"], "Status");
    assert_eq!(find("contactid")["AttributeType"], "Uniqueidentifier");
    assert!(
        find("hlf_peermentorstatus").get("OptionSet").is_none(),
        "navigation properties need $expand"
    );
}

#[tokio::test]
async fn picklist_state_and_status_casts_expand_option_sets() {
    let env = start().await;
    let expand = "?$select=LogicalName&$expand=OptionSet($select=Options),GlobalOptionSet($select=Options)";
    let r = env.get(&format!("EntityDefinitions(LogicalName='contact')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata{expand}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    let attrs = v["value"].as_array().unwrap();
    assert_eq!(attrs.len(), 3, "{v}");
    let status = attrs
        .iter()
        .find(|a| a["LogicalName"] == "hlf_peermentorstatus")
        .unwrap();
    let values: Vec<i64> = status["OptionSet"]["Options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["Value"].as_i64().unwrap())
        .collect();
    assert_eq!(values, [100000000, 100000001, 100000002, 100000003]);
    assert!(status["OptionSet"]["Options"][0]["Label"]["LocalizedLabels"].is_array());
    assert!(status["GlobalOptionSet"].is_null());
    for (cast, name, values) in [
        ("StateAttributeMetadata", "statecode", vec![0, 1]),
        ("StatusAttributeMetadata", "statuscode", vec![1, 2]),
    ] {
        let r = env
            .get(&format!(
                "EntityDefinitions(LogicalName='contact')/Attributes/Microsoft.Dynamics.CRM.{cast}{expand}"
            ))
            .await;
        let v = r.json();
        assert_eq!(v["value"][0]["LogicalName"], name, "{v}");
        let got: Vec<i64> = v["value"][0]["OptionSet"]["Options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["Value"].as_i64().unwrap())
            .collect();
        assert_eq!(got, values);
    }
}

#[tokio::test]
async fn single_attribute_and_missing_table_or_column_answer_as_dataverse() {
    let env = start().await;
    let r = env
        .get("EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='hlf_membernumber')")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["MaxLength"], 20);
    let r = env
        .get("EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='hlf_nosuch')")
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert!(r.error_code().starts_with("0x"));
    let r = env.get("EntityDefinitions(LogicalName='nosuchtable')").await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = env
        .get("EntityDefinitions(LogicalName='hlf_posting')?$select=EntitySetName")
        .await;
    assert_eq!(r.json()["EntitySetName"], "hlf_postings");
    let r = env.get("$metadata").await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains("<EntitySet Name=\"contacts\""));
}

#[tokio::test]
async fn dropped_column_disappears_from_metadata_and_is_rejected_on_write() {
    let env = start().await;
    env.sim.faults().drop_column("contact", "hlf_showonpublicsite").unwrap();
    let r = env
        .get("EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='hlf_showonpublicsite')")
        .await;
    assert_eq!(r.status, 404);
    let r = env
        .patch(
            "contacts(hlf_membernumber='100001')",
            &[],
            serde_json::json!({"hlf_showonpublicsite": false}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.text
            .contains("Could not find a property named 'hlf_showonpublicsite'"),
        "{}",
        r.text
    );
    let r = env.get("contacts(hlf_membernumber='100001')").await;
    assert!(r.json().get("hlf_showonpublicsite").is_none());
    env.sim.faults().clear();
    assert_eq!(
        env.get("EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='hlf_showonpublicsite')")
            .await
            .status,
        200
    );
}
