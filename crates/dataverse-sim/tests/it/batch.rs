//! `$batch` with change sets, references, errors and limits.

use crate::common::{Env, Reply, start};

async fn batch(env: &Env, body: &str, prefer: Option<&str>) -> Reply {
    let mut headers = vec![("Content-Type", "multipart/mixed; boundary=\"batch_AAA123\"")];
    if let Some(p) = prefer {
        headers.push(("Prefer", p));
    }
    let mut req = env.http.post(env.url("$batch")).bearer_auth(&env.token);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let r = req.body(body.replace('\n', "\r\n")).send().await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    Reply {
        status,
        headers,
        text: r.text().await.unwrap(),
    }
}

fn op(boundary: &str, method: &str, url: &str, content_id: Option<u32>, body: Option<&str>) -> String {
    let cid = content_id.map(|c| format!("Content-ID: {c}\n")).unwrap_or_default();
    let body = body
        .map(|b| format!("Content-Type: application/json; type=entry\n\n{b}\n"))
        .unwrap_or_else(|| "\n".into());
    format!(
        "--{boundary}\nContent-Type: application/http\nContent-Transfer-Encoding: binary\n{cid}\n{method} {url} HTTP/1.1\n{body}"
    )
}

#[tokio::test]
async fn batch_change_set_commits_and_answers_in_dataverse_shape() {
    let env = start().await;
    let cs = "changeset_BBB456";
    let body = format!(
        "--batch_AAA123\nContent-Type: multipart/mixed; boundary={cs}\n\n{}{}--{cs}--\n{}--batch_AAA123--\n",
        op(
            cs,
            "POST",
            "/api/data/v9.2/contacts",
            Some(1),
            Some(r#"{"firstname":"One","hlf_membernumber":"B1"}"#)
        ),
        op(cs, "PATCH", "$1", Some(2), Some(r#"{"lastname":"Ref"}"#)),
        op(
            "batch_AAA123",
            "GET",
            "contacts?$select=lastname&$filter=hlf_membernumber%20eq%20'B1'",
            None,
            None
        ),
    );
    let r = batch(&env, &body, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ct = r.header("content-type").unwrap();
    assert!(ct.starts_with("multipart/mixed; boundary=batchresponse_"), "{ct}");
    assert!(r.text.starts_with("--batchresponse_"), "{}", r.text);
    assert!(
        r.text
            .contains("Content-Type: multipart/mixed; boundary=changesetresponse_"),
        "{}",
        r.text
    );
    assert!(
        r.text
            .contains("Content-ID: 1\r\n\r\nHTTP/1.1 204 No Content\r\nOData-Version: 4.0\r\nLocation: "),
        "{}",
        r.text
    );
    assert!(
        r.text.contains(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json; odata.metadata=minimal; odata.streaming=true"
        ),
        "{}",
        r.text
    );
    assert!(r.text.contains("\"lastname\":\"Ref\""), "{}", r.text);
    assert!(r.text.trim_end().ends_with("--"), "{}", r.text);
    assert!(
        env.sim
            .state()
            .find_by_key("contacts", "hlf_membernumber", "B1")
            .is_some()
    );
}

#[tokio::test]
async fn batch_change_set_failure_rolls_back_every_operation() {
    let env = start().await;
    let cs = "changeset_C1";
    let body = format!(
        "--batch_AAA123\nContent-Type: multipart/mixed; boundary={cs}\n\n{}{}{}--{cs}--\n--batch_AAA123--\n",
        op(cs, "POST", "contacts", Some(1), Some(r#"{"hlf_membernumber":"R1"}"#)),
        op(
            cs,
            "PATCH",
            "contacts(hlf_membernumber='100001')",
            Some(2),
            Some(r#"{"firstname":"Changed"}"#)
        ),
        op(
            cs,
            "PATCH",
            "contacts(hlf_membernumber='100002')",
            Some(3),
            Some(r#"{"nosuch":1}"#)
        ),
    );
    let before = env.get("contacts(hlf_membernumber='100001')").await.json();
    let r = batch(&env, &body, None).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("HTTP/1.1 400 Bad Request"), "{}", r.text);
    assert!(
        r.text.contains("Could not find a property named 'nosuch'"),
        "{}",
        r.text
    );
    assert!(
        env.sim
            .state()
            .find_by_key("contacts", "hlf_membernumber", "R1")
            .is_none(),
        "create rolled back"
    );
    let after = env.get("contacts(hlf_membernumber='100001')").await.json();
    assert_eq!(after["firstname"], before["firstname"], "update rolled back");
    assert_eq!(after["@odata.etag"], before["@odata.etag"]);
}

#[tokio::test]
async fn batch_stops_at_first_error_unless_continue_on_error() {
    let env = start().await;
    let b = "batch_AAA123";
    let body = format!(
        "{}{}{}--{b}--\n",
        op(
            b,
            "POST",
            "contacts",
            None,
            Some(&format!(r#"{{"firstname":"{}"}}"#, "x".repeat(60)))
        ),
        op(b, "POST", "contacts", None, Some(r#"{"hlf_membernumber":"K1"}"#)),
        op(b, "POST", "contacts", None, Some(r#"{"hlf_membernumber":"K2"}"#)),
    );
    let r = batch(&env, &body, None).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.text.matches("HTTP/1.1 ").count(), 1, "{}", r.text);
    assert!(r.text.contains("0x80044331"));
    assert!(
        env.sim
            .state()
            .find_by_key("contacts", "hlf_membernumber", "K1")
            .is_none()
    );
    let r = batch(&env, &body, Some("odata.continue-on-error")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.text.matches("HTTP/1.1 204 No Content").count(), 2, "{}", r.text);
    assert!(
        env.sim
            .state()
            .find_by_key("contacts", "hlf_membernumber", "K2")
            .is_some()
    );
}

#[tokio::test]
async fn batch_rejects_oversized_get_in_change_set_and_malformed_bodies() {
    let env = start().await;
    let b = "batch_AAA123";
    let mut big = String::new();
    for i in 0..1001 {
        big.push_str(&op(
            b,
            "PATCH",
            &format!("contacts(hlf_membernumber='M{i}')"),
            None,
            Some("{}"),
        ));
    }
    big.push_str(&format!("--{b}--\n"));
    let r = batch(&env, &big, None).await;
    assert_eq!(r.status, 400, "{}", &r.text[..200.min(r.text.len())]);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("1000"));
    assert_eq!(env.sim.state().row_count("contacts"), Some(5), "nothing executed");

    let cs = "changeset_X";
    let get_in_cs = format!(
        "--{b}\nContent-Type: multipart/mixed; boundary={cs}\n\n{}--{cs}--\n--{b}--\n",
        op(cs, "GET", "contacts", Some(1), None)
    );
    let r = batch(&env, &get_in_cs, None).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("GET"));

    for bad in [
        "",
        "garbage without boundary",
        "--batch_AAA123\nContent-Type: application/http\n\nPOST contacts HTTP/1.1\n",
        "--batch_AAA123\nContent-Type: text/plain\n\nhello\n--batch_AAA123--\n",
    ] {
        let r = batch(&env, bad, None).await;
        assert_eq!(r.status, 400, "{bad:?}: {}", r.text);
        assert!(r.json()["error"]["code"].as_str().unwrap().starts_with("0x"));
    }
    let r = env
        .http
        .post(env.url("$batch"))
        .bearer_auth(&env.token)
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn batch_counts_once_for_requests_but_charges_execution_time_per_operation() {
    let env = start().await;
    env.sim.state().set_limits(dataverse_sim::ServiceLimits {
        max_requests: 100,
        max_execution_time: std::time::Duration::from_millis(50),
        cost_per_operation: std::time::Duration::from_millis(10),
        ..Default::default()
    });
    let b = "batch_AAA123";
    let mut body = String::new();
    for i in 0..6 {
        body.push_str(&op(
            b,
            "POST",
            "contacts",
            None,
            Some(&format!(r#"{{"hlf_membernumber":"E{i}"}}"#)),
        ));
    }
    body.push_str(&format!("--{b}--\n"));
    assert_eq!(batch(&env, &body, None).await.status, 200);
    let r = env.get("WhoAmI").await;
    assert_eq!(r.status, 429, "60 ms charged against a 50 ms budget: {}", r.text);
    assert_eq!(r.error_code(), "0x80072321");
}
