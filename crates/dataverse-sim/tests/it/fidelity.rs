//! `dataverse-sim conformance`: the emulator's conformance checks find no difference in the emulator itself (the
//! same code an operator runs against HLF's sandbox), write checks included, and the command line reports and exits
//! as documented.

use std::process::Command;

use dataverse_sim::conformance::{Options, run};
use dataverse_sim::{RunningSimulator, Simulator};
use dynamics_client::{ClientOptions, DynamicsClient};

fn client(sim: &RunningSimulator) -> DynamicsClient {
    let env = sim.worker_environment("DYNAMICS");
    let text = format!(
        "mapping = \"builtin:hlf-default\"\n[[organisations]]\nid = \"t\"\nname = \"t\"\nauthority_host = \"{}\"\n",
        sim.authority_url()
    );
    let config =
        integration_config::IntegrationConfig::from_toml(&text, "t.toml", std::path::Path::new("."), &env).unwrap();
    DynamicsClient::for_organisation(
        &config.organisations[0],
        ClientOptions {
            extra_root_certificates: vec![sim.ca_certificate_pem().unwrap().as_bytes().to_vec()],
            ..ClientOptions::default()
        },
    )
    .unwrap()
}

#[tokio::test]
async fn the_emulator_conforms_to_its_own_checks_reads_and_writes() {
    let sim = Simulator::builder().demo_data().start().await.unwrap();
    let contacts_before = sim.state().rows("contacts");
    let report = run(
        &client(&sim),
        &Options {
            scratch_table: Some("hlf_posting".into()),
        },
    )
    .await
    .unwrap();
    assert!(report.differences.is_empty(), "{report}");
    assert!(report.skipped.is_empty(), "{report}");
    assert_eq!(report.checks.len(), 9, "{report}");
    // The write checks made, changed and deleted their own row only.
    assert_eq!(sim.state().rows("hlf_postings").len(), 0);
    assert_eq!(sim.state().rows("contacts"), contacts_before);
    sim.shutdown().await;
}

#[tokio::test]
async fn read_only_by_default_and_a_difference_is_reported_with_exit_1() {
    let sim = Simulator::builder().demo_data().start().await.unwrap();
    let dir = std::env::temp_dir().join(format!("sim-conformance-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, sim.ca_certificate_pem().unwrap()).unwrap();
    let command = |extra: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dataverse-sim"));
        command
            .args([
                "conformance",
                "--target",
                sim.base_url(),
                "--authority-host",
                sim.authority_url(),
                "--ca-file",
            ])
            .arg(&ca)
            .args(extra)
            .envs(sim.worker_environment("DYNAMICS"))
            .env_remove("DYNAMICS_INSTANCE_URL")
            .env("RUST_LOG", "error");
        command
    };
    let output = tokio::task::spawn_blocking({
        let mut c = command(&[]);
        move || c.output().unwrap()
    })
    .await
    .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{printed}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(printed.contains("9 checks, 1 skipped, 0 difference(s)"), "{printed}");
    assert!(
        printed.contains("skipped writes: no --scratch-table: read checks only"),
        "{printed}"
    );

    // Contacts are never a scratch table.
    let output = tokio::task::spawn_blocking({
        let mut c = command(&["--scratch-table", "contact"]);
        move || c.output().unwrap()
    })
    .await
    .unwrap();
    assert_ne!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stderr).contains("never touch contacts"));

    // An instance that answers differently: an application user without read on contacts gets 403 where the checks
    // expect rows and 404s.
    sim.faults()
        .set_role(vec![dataverse_sim::RolePrivilege::global("prvWriteContact")]);
    let output = tokio::task::spawn_blocking({
        let mut c = command(&["--json"]);
        move || c.output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let differences = report["differences"].as_array().unwrap();
    assert!(
        differences
            .iter()
            .any(|d| d["check"] == "paging" && d["found"].as_str().unwrap().contains("status 403")),
        "{report}"
    );
    assert!(
        differences
            .iter()
            .all(|d| d["check"] != "whoami" && d["check"] != "batch framing"),
        "{report}"
    );
    sim.shutdown().await;
}

/// A wiremock server answering as Microsoft's documentation shows (the payloads in fixtures/dataverse/), and the
/// conformance checks run against it: the differences found are the ones expected of the documented examples.
#[tokio::test]
async fn against_microsoft_s_documented_payloads_the_differences_are_the_expected_ones() {
    use wiremock::matchers::{header, header_regex, method, path, path_regex, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let server = MockServer::start().await;
    let base = format!("{}/api/data/v9.2/", server.uri());
    let fixture = |name: &str| {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../fixtures/dataverse")
                .join(name),
        )
        .unwrap();
        text.replace("{base}", &base)
    };
    let json = |status: u16, body: String| {
        ResponseTemplate::new(status)
            .insert_header("Content-Type", "application/json; odata.metadata=minimal")
            .insert_header("OData-Version", "4.0")
            .set_body_string(body)
    };
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/WhoAmI"))
        .respond_with(json(200, fixture("whoami.json")))
        .mount(&server)
        .await;
    // A page of one row, cut from the documented first page, with its next link.
    let mut page: serde_json::Value = serde_json::from_str(&fixture("contacts-page-1.json")).unwrap();
    let first = page["value"][0].clone();
    page["value"] = serde_json::json!([first.clone()]);
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/contacts"))
        .and(query_param("$skiptoken", "x"))
        .respond_with(json(200, fixture("contacts-page-2.json")))
        .with_priority(1)
        .mount(&server)
        .await;
    page["@odata.nextLink"] = serde_json::json!(format!("{base}contacts?$select=contactid&$skiptoken=x"));
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/contacts"))
        .and(header("Prefer", "odata.maxpagesize=1"))
        .respond_with(json(200, page.to_string()).insert_header("Preference-Applied", "odata.maxpagesize=1"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/contacts"))
        .and(header_regex("Prefer", "odata.track-changes"))
        .respond_with(
            json(200, fixture("contacts-delta-initial.json"))
                .insert_header("Preference-Applied", "odata.track-changes"),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/contacts"))
        .and(query_param("$select", "nosuchcolumn_conformance"))
        .respond_with(json(
            400,
            fixture("error-unknown-column.json").replace("hlf_showonpublicsite", "nosuchcolumn_conformance"),
        ))
        .mount(&server)
        .await;
    let id = first["contactid"].as_str().unwrap().to_owned();
    Mock::given(method("GET"))
        .and(path(format!("/api/data/v9.2/contacts({id})")))
        .respond_with(json(200, first.to_string()))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(r"/contacts\(00000000-0000-0000-0000-0000000000c0\)$"))
        .respond_with(json(
            404,
            serde_json::json!({"error": {"code": "0x80040217", "message": "contact With Id = 00000000-0000-0000-0000-0000000000c0 Does Not Exist"}}).to_string(),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/nosuchtables_conformance"))
        .respond_with(json(
            404,
            serde_json::json!({"error": {"code": "0x80060888", "message": "Resource not found for the segment 'nosuchtables_conformance'."}}).to_string(),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(r"EntityDefinitions\(LogicalName='contact'\)/Attributes$"))
        .respond_with(json(200, fixture("contact-attributes.json")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(r"EntityDefinitions\(LogicalName='contact'\)$"))
        .respond_with(json(200, fixture("contact-definition.json")))
        .mount(&server)
        .await;

    // The token is not what is checked here (azure_identity refuses an http authority): a fixed one.
    let instance = integration_config::InstanceUrl::parse(&server.uri()).unwrap();
    let client = DynamicsClient::new(
        &instance,
        std::sync::Arc::new(dynamics_client::StaticTokenSource::new("documented-payloads-token")),
        ClientOptions::default(),
    )
    .unwrap();
    let report = run(&client, &Options::default()).await.unwrap();
    let differing: std::collections::BTreeSet<&str> = report.differences.iter().map(|d| d.check).collect();
    // The documentation's examples show no service-protection headers, and no answer to a $batch of one GET
    // WhoAmI is replayed here; everything else matches what the emulator does.
    assert_eq!(
        differing,
        ["batch framing", "service-protection headers"].into_iter().collect(),
        "{report}"
    );
    assert_eq!(
        report.skipped,
        [("writes", "no --scratch-table: read checks only".to_owned())],
        "{report}"
    );
}
