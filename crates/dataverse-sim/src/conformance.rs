//! The emulator's conformance checks, runnable against any Dataverse instance (`dataverse-sim conformance --target
//! URL`): the emulator itself, where the report must be empty, or a real sandbox, where each difference is a place
//! the emulator (or our reading of the documentation) differs from reality.
//!
//! Each check sends requests through the production client's authentication ([`DynamicsClient::exchange`]: once,
//! no retries, the answer as it came) and compares what comes back with what Dataverse documents. Read-only by
//! default: every request is a GET, or a `$batch` holding only a GET. Write checks run only with a scratch table the
//! operator names, and create, change and delete only a row they made; `contact` is refused as a scratch table.

use std::fmt;

use dynamics_client::{DynamicsClient, RawAnswer};
use http::Method;
use serde::Serialize;
use serde_json::Value;

/// What one check found different from Dataverse's documented behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The check, e.g. `paging`.
    pub check: &'static str,
    /// What was expected.
    pub expected: String,
    /// What came back.
    pub found: String,
}

/// The outcome of [`run`].
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    /// The checks run, in order.
    pub checks: Vec<&'static str>,
    /// Checks that could not run here, with why (not a difference).
    pub skipped: Vec<(&'static str, String)>,
    /// Every difference found.
    pub differences: Vec<Difference>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} checks, {} skipped, {} difference(s)",
            self.checks.len(),
            self.skipped.len(),
            self.differences.len()
        )?;
        for (check, why) in &self.skipped {
            writeln!(f, "  skipped {check}: {why}")?;
        }
        for d in &self.differences {
            writeln!(
                f,
                "  difference in {}: expected {}; found {}",
                d.check, d.expected, d.found
            )?;
        }
        Ok(())
    }
}

/// What the checks are run with.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The table (logical name) the write checks may create, change and delete their own rows in; none runs only
    /// the read checks.
    pub scratch_table: Option<String>,
}

struct Run<'a> {
    client: &'a DynamicsClient,
    report: Report,
    check: &'static str,
}

impl Run<'_> {
    fn begin(&mut self, check: &'static str) {
        self.check = check;
        self.report.checks.push(check);
    }

    fn differ(&mut self, expected: impl Into<String>, found: impl Into<String>) {
        self.report.differences.push(Difference {
            check: self.check,
            expected: expected.into(),
            found: found.into(),
        });
    }

    fn skip(&mut self, why: impl Into<String>) {
        self.report.skipped.push((self.check, why.into()));
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<RawAnswer> {
        let mut all = vec![
            ("Accept", "application/json"),
            ("OData-Version", "4.0"),
            ("OData-MaxVersion", "4.0"),
        ];
        all.extend_from_slice(headers);
        Ok(self.client.exchange(Method::GET, path, &all, None).await?)
    }

    /// The status, or a difference.
    fn status(&mut self, what: &str, answer: &RawAnswer, expected: u16) -> bool {
        if answer.status == expected {
            return true;
        }
        let body = String::from_utf8_lossy(&answer.body);
        let body: String = body.chars().take(200).collect();
        self.differ(
            format!("{what}: status {expected}"),
            format!("status {} ({body})", answer.status),
        );
        false
    }

    /// A Dataverse error answer: the status, `error.code` and a message matching `message`.
    fn error(
        &mut self,
        what: &str,
        answer: &RawAnswer,
        status: u16,
        code: &str,
        message: impl Fn(&str) -> bool,
        shape: &str,
    ) {
        if !self.status(what, answer, status) {
            return;
        }
        let body = answer.json();
        let found_code = body["error"]["code"].as_str().unwrap_or("(none)");
        if found_code != code {
            self.differ(format!("{what}: error.code {code}"), format!("error.code {found_code}"));
        }
        let found_message = body["error"]["message"].as_str().unwrap_or("(none)");
        if !message(found_message) {
            self.differ(
                format!("{what}: a message like \"{shape}\""),
                format!("\"{found_message}\""),
            );
        }
    }

    fn header(&mut self, what: &str, answer: &RawAnswer, name: &str, ok: impl Fn(&str) -> bool, shape: &str) {
        match answer.header(name) {
            Some(value) if ok(value) => {}
            Some(value) => self.differ(format!("{what}: header {name}: {shape}"), format!("{name}: {value}")),
            None => self.differ(format!("{what}: header {name}: {shape}"), format!("no {name} header")),
        }
    }
}

fn is_guid(value: &Value) -> bool {
    value.as_str().is_some_and(|s| s.parse::<uuid::Uuid>().is_ok())
}

fn is_weak_etag(value: &str) -> bool {
    value.starts_with("W/\"") && value.ends_with('"') && value.len() > 4
}

/// Runs every check against the instance behind `client`.
pub async fn run(client: &DynamicsClient, options: &Options) -> anyhow::Result<Report> {
    let mut run = Run {
        client,
        report: Report::default(),
        check: "",
    };
    let api = client.api_base().as_str().to_owned();

    run.begin("whoami");
    let who = run.get("WhoAmI", &[]).await?;
    if run.status("GET WhoAmI", &who, 200) {
        let body = who.json();
        for field in ["UserId", "BusinessUnitId", "OrganizationId"] {
            if !is_guid(&body[field]) {
                run.differ(format!("WhoAmI: {field} a GUID"), format!("{field}: {}", body[field]));
            }
        }
        let context = body["@odata.context"].as_str().unwrap_or_default();
        if !context.ends_with("$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse") {
            run.differ(
                "WhoAmI: @odata.context ending $metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                context,
            );
        }
        run.header("WhoAmI", &who, "OData-Version", |v| v == "4.0", "4.0");
    }

    run.begin("service-protection headers");
    for name in [
        "x-ms-ratelimit-burst-remaining-xrm-requests",
        "x-ms-ratelimit-time-remaining-xrm-requests",
    ] {
        run.header(
            "any answer",
            &who,
            name,
            |v| v.trim().parse::<f64>().is_ok(),
            "a number",
        );
    }

    run.begin("paging");
    let page = run
        .get("contacts?$select=contactid", &[("Prefer", "odata.maxpagesize=1")])
        .await?;
    let mut some_contact = None;
    if run.status("GET contacts with odata.maxpagesize=1", &page, 200) {
        run.header(
            "paged read",
            &page,
            "Preference-Applied",
            |v| v == "odata.maxpagesize=1",
            "odata.maxpagesize=1",
        );
        let body = page.json();
        let rows = body["value"].as_array().cloned().unwrap_or_default();
        if rows.len() > 1 {
            run.differ("at most 1 row on a page of size 1", format!("{} rows", rows.len()));
        }
        some_contact = rows.first().and_then(|r| r["contactid"].as_str()).map(str::to_owned);
        match body["@odata.nextLink"].as_str() {
            Some(next) if next.starts_with(&api) && next.contains("skiptoken") => {
                let next_page = run.get(next, &[("Prefer", "odata.maxpagesize=1")]).await?;
                run.status("GET the next link", &next_page, 200);
            }
            Some(next) => run.differ("@odata.nextLink: an absolute URL under the API with a $skiptoken", next),
            None if rows.is_empty() => run.skip("the instance has no contacts"),
            None => run.skip("the instance has one contact only, so there is no second page"),
        }
    }

    run.begin("single row and etag");
    match &some_contact {
        Some(id) => {
            let row = run.get(&format!("contacts({id})?$select=contactid"), &[]).await?;
            if run.status("GET contacts(id)", &row, 200) {
                let etag = row.json()["@odata.etag"].as_str().unwrap_or_default().to_owned();
                if !is_weak_etag(&etag) {
                    run.differ("@odata.etag: a weak etag W/\"...\"", etag);
                }
            }
        }
        None => run.skip("no contact to read"),
    }

    run.begin("errors");
    let missing = run
        .get("contacts(00000000-0000-0000-0000-0000000000c0)?$select=contactid", &[])
        .await?;
    run.error(
        "a missing row",
        &missing,
        404,
        "0x80040217",
        |m| m.contains("00000000-0000-0000-0000-0000000000c0") && m.ends_with("Does Not Exist"),
        "contact With Id = <id> Does Not Exist",
    );
    let segment = run.get("nosuchtables_conformance", &[]).await?;
    run.error(
        "an unknown entity set",
        &segment,
        404,
        "0x80060888",
        |m| m == "Resource not found for the segment 'nosuchtables_conformance'.",
        "Resource not found for the segment '<name>'.",
    );
    let property = run.get("contacts?$select=nosuchcolumn_conformance", &[]).await?;
    run.error(
        "an unknown column in $select",
        &property,
        400,
        "0x80060888",
        |m| m == "Could not find a property named 'nosuchcolumn_conformance' on type 'Microsoft.Dynamics.CRM.contact'.",
        "Could not find a property named '<column>' on type 'Microsoft.Dynamics.CRM.contact'.",
    );

    run.begin("change tracking");
    let definition = run
        .get(
            "EntityDefinitions(LogicalName='contact')?$select=LogicalName,EntitySetName,PrimaryIdAttribute,ChangeTrackingEnabled",
            &[],
        )
        .await?;
    let tracking = definition.status == 200 && definition.json()["ChangeTrackingEnabled"] == Value::Bool(true);
    if tracking {
        let mut answer = run
            .get(
                "contacts?$select=contactid",
                &[("Prefer", "odata.track-changes,odata.maxpagesize=5000")],
            )
            .await?;
        if run.status("GET contacts with odata.track-changes", &answer, 200) {
            run.header(
                "a change-tracking read",
                &answer,
                "Preference-Applied",
                |v| v.contains("odata.track-changes"),
                "odata.track-changes",
            );
            // The delta link comes on the last page.
            for _ in 0..40 {
                let body = answer.json();
                if let Some(delta) = body["@odata.deltaLink"].as_str() {
                    if !(delta.starts_with(&api) && delta.contains("deltatoken")) {
                        run.differ(
                            "@odata.deltaLink: an absolute URL under the API with a $deltatoken",
                            delta,
                        );
                    }
                    break;
                }
                match body["@odata.nextLink"].as_str() {
                    Some(next) => {
                        answer = run
                            .get(next, &[("Prefer", "odata.track-changes,odata.maxpagesize=5000")])
                            .await?;
                    }
                    None => {
                        run.differ(
                            "@odata.deltaLink on the last page",
                            "neither a next link nor a delta link",
                        );
                        break;
                    }
                }
            }
        }
    } else {
        run.skip("change tracking is not enabled on contact");
    }

    run.begin("metadata");
    if run.status("GET EntityDefinitions(LogicalName='contact')", &definition, 200) {
        let body = definition.json();
        for field in ["LogicalName", "EntitySetName", "PrimaryIdAttribute"] {
            if !body[field].is_string() {
                run.differ(
                    format!("EntityDefinitions: {field}"),
                    format!("{field}: {}", body[field]),
                );
            }
        }
        let attributes = run
            .get(
                "EntityDefinitions(LogicalName='contact')/Attributes?$select=LogicalName,AttributeType",
                &[],
            )
            .await?;
        if run.status("GET .../Attributes", &attributes, 200) {
            let values = attributes.json()["value"].as_array().cloned().unwrap_or_default();
            if values.is_empty()
                || values
                    .iter()
                    .any(|a| !a["LogicalName"].is_string() || !a["AttributeType"].is_string())
            {
                run.differ(
                    "Attributes: each with LogicalName and AttributeType",
                    format!("{} attributes", values.len()),
                );
            }
        }
    }

    run.begin("batch framing");
    let boundary = "batch_conformance";
    let body = format!(
        "--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nGET {api}WhoAmI HTTP/1.1\r\nAccept: application/json\r\n\r\n--{boundary}--\r\n"
    );
    let content_type = format!("multipart/mixed; boundary={boundary}");
    let batch = client
        .exchange(
            Method::POST,
            "$batch",
            &[
                ("Content-Type", &content_type),
                ("OData-Version", "4.0"),
                ("OData-MaxVersion", "4.0"),
            ],
            Some(body.into_bytes()),
        )
        .await?;
    if run.status("POST $batch (one GET)", &batch, 200) {
        let answer_type = batch.header("Content-Type").unwrap_or_default().to_owned();
        let response_boundary = answer_type
            .split("boundary=")
            .nth(1)
            .map(|b| b.trim_matches('"').to_owned())
            .unwrap_or_default();
        if !answer_type.starts_with("multipart/mixed") || !response_boundary.starts_with("batchresponse_") {
            run.differ(
                "Content-Type: multipart/mixed; boundary=batchresponse_<id>",
                answer_type,
            );
        }
        let text = String::from_utf8_lossy(&batch.body);
        for part in ["Content-Type: application/http", "HTTP/1.1 200 OK", "WhoAmIResponse"] {
            if !text.contains(part) {
                run.differ(
                    format!("the batch answer holds {part:?}"),
                    text.chars().take(200).collect::<String>(),
                );
            }
        }
        if !text.trim_end().ends_with(&format!("--{response_boundary}--")) {
            run.differ(
                "the batch answer ends with its closing boundary",
                text.chars().rev().take(60).collect::<String>(),
            );
        }
    }

    run.begin("writes");
    match options.scratch_table.as_deref() {
        None => run.skip("no --scratch-table: read checks only"),
        Some("contact") => run.skip("contact is never used as a scratch table"),
        Some(table) => writes(&mut run, table).await?,
    }
    Ok(run.report)
}

/// Create, read, guarded update (current and stale etag), delete and read again, on one row the check makes.
async fn writes(run: &mut Run<'_>, table: &str) -> anyhow::Result<()> {
    let definition = run
        .get(
            &format!(
                "EntityDefinitions(LogicalName='{table}')?$select=EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute"
            ),
            &[],
        )
        .await?;
    if !run.status(&format!("GET the definition of {table}"), &definition, 200) {
        return Ok(());
    }
    let body = definition.json();
    let (Some(set), Some(name)) = (body["EntitySetName"].as_str(), body["PrimaryNameAttribute"].as_str()) else {
        run.skip(format!("{table} has no primary name column to write"));
        return Ok(());
    };
    let headers = [
        ("Content-Type", "application/json"),
        ("OData-Version", "4.0"),
        ("OData-MaxVersion", "4.0"),
    ];
    // Short enough for a primary name column of 20 characters.
    let marker = format!("cf-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let created = run
        .client
        .exchange(
            Method::POST,
            set,
            &headers,
            Some(serde_json::json!({ name: marker }).to_string().into_bytes()),
        )
        .await?;
    if !run.status("POST a row", &created, 204) {
        return Ok(());
    }
    let api = run.client.api_base().as_str().to_owned();
    let entity = created.header("OData-EntityId").unwrap_or_default().to_owned();
    let id = entity
        .rsplit_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .and_then(|id| id.parse::<uuid::Uuid>().ok());
    let Some(id) = id.filter(|_| entity.starts_with(&format!("{api}{set}("))) else {
        run.differ("OData-EntityId: <api>/<set>(<guid>)", entity);
        return Ok(());
    };
    let row = run.get(&format!("{set}({id})?$select={name}"), &[]).await?;
    let etag = row.json()["@odata.etag"].as_str().unwrap_or_default().to_owned();
    if !is_weak_etag(&etag) {
        run.differ("the created row's @odata.etag: W/\"...\"", etag.clone());
    }
    let mut guarded = headers.to_vec();
    guarded.push(("If-Match", &etag));
    let change = serde_json::json!({ name: format!("{marker}-2") })
        .to_string()
        .into_bytes();
    let updated = run
        .client
        .exchange(Method::PATCH, &format!("{set}({id})"), &guarded, Some(change.clone()))
        .await?;
    run.status("PATCH with the current etag", &updated, 204);
    let stale = run
        .client
        .exchange(Method::PATCH, &format!("{set}({id})"), &guarded, Some(change))
        .await?;
    run.error(
        "PATCH with a stale etag",
        &stale,
        412,
        "0x80060882",
        |m| m.contains("version"),
        "The version of the existing record doesn't match the RowVersion property provided.",
    );
    let deleted = run
        .client
        .exchange(Method::DELETE, &format!("{set}({id})"), &headers, None)
        .await?;
    run.status("DELETE the row", &deleted, 204);
    let gone = run.get(&format!("{set}({id})?$select={name}"), &[]).await?;
    run.status("GET the deleted row", &gone, 404);
    Ok(())
}
