//! Bad, hostile and oversized input: every case gets a 4xx answer (never a dropped connection from a panic, a stack
//! overflow or a hang), and the server keeps serving afterwards.

use std::time::Duration;

use dataverse_sim::{ServiceLimits, Simulator};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Env, Reply, start, start_http};
use crate::query::urlencode;

/// The server still answers after a hostile request.
async fn still_serving(env: &Env) {
    let r = env.get("WhoAmI").await;
    assert_eq!(r.status, 200, "the server stopped answering: {}", r.text);
}

async fn raw(env: &Env, method: Method, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
    let mut req = env.http.request(method, env.url(path)).bearer_auth(&env.token);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.body(body).send().await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    Reply {
        status,
        headers,
        text: r.text().await.unwrap(),
    }
}

#[tokio::test]
async fn filter_nested_thousands_deep_answers_400_instead_of_overflowing_the_stack() {
    let env = start().await;
    // As deep as a URI allows (the http crate refuses 64 KiB); the unit tests go to 100,000 levels.
    for filter in [
        format!("{}statecode eq 0{}", "(".repeat(5_000), ")".repeat(5_000)),
        "(".repeat(10_000),
        format!("{}statecode eq 0", "not ".repeat(10_000)),
    ] {
        let r = env.get(&format!("contacts?$filter={}", urlencode(&filter))).await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(r.error_code(), "0x80060888");
    }
    let chain = (0..1_000)
        .map(|i| format!("hlf_membernumber eq '{}'", 100_000 + i))
        .collect::<Vec<_>>()
        .join(" or ");
    let r = env
        .get(&format!("contacts?$select=contactid&$filter={}", urlencode(&chain)))
        .await;
    assert_eq!(r.status, 200, "{}", &r.text[..r.text.len().min(300)]);
    assert_eq!(r.json()["value"].as_array().unwrap().len(), 5);
    still_serving(&env).await;
}

#[tokio::test]
async fn malformed_query_options_answer_4xx_with_dataverse_codes() {
    let env = start().await;
    let cases: &[(&str, u16)] = &[
        ("contacts?$filter=firstname eq 'unterminated", 400),
        ("contacts?$filter=(((firstname eq 'x'", 400),
        ("contacts?$filter=firstname eq 'x'))", 400),
        ("contacts?$filter=statecode eq 1e999999", 200),
        ("contacts?$filter=statecode eq 123456789012345678901234567890", 200),
        ("contacts?$filter=eq eq eq", 400),
        ("contacts?$filter=", 400),
        ("contacts?$top=99999999999999999999999999", 400),
        ("contacts?$top=-1", 400),
        ("contacts?$orderby=,,,", 400),
        ("contacts?$select=", 400),
        ("contacts?$count=maybe", 400),
        ("contacts?$skiptoken=sim1", 400),
        ("contacts?$skiptoken=sim1zz", 400),
        ("contacts?$deltatoken=garbage", 400),
        ("contacts(hlf_membernumber='%ZZ')", 404),
        ("contacts(hlf_membernumber='%C3%28')", 404),
        ("contacts(hlf_membernumber=)", 400),
        ("contacts(((", 400),
        ("contacts(5f2d7a3e-1c4b-4e8a-9d3f-000000000001)/a/b", 404),
        ("con%tacts", 404),
    ];
    for (path, status) in cases {
        let encoded = path.replace(' ', "%20").replace('\'', "%27");
        let r = env.get(&encoded).await;
        assert_eq!(r.status.as_u16(), *status, "{path}: {}", r.text);
        if *status >= 400 {
            assert!(r.error_code().starts_with("0x"), "{path}: {}", r.text);
        }
    }
    still_serving(&env).await;
}

#[tokio::test]
async fn delta_token_dated_at_the_calendar_end_answers_400_instead_of_panicking() {
    let env = start().await;
    for token in [
        "1!12/31/+262142 23:59:59",
        "1!01/01/-262143 00:00:00",
        "18446744073709551616!01/01/2025 00:00:00",
    ] {
        let r = env.get(&format!("contacts?$deltatoken={}", urlencode(token))).await;
        assert_eq!(r.status, 400, "{token}: {}", r.text);
        assert!(r.error_code().starts_with("0x"), "{token}: {}", r.text);
    }
    still_serving(&env).await;
}

#[tokio::test]
async fn bad_json_bodies_answer_400_payload_errors() {
    let env = start().await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for body in [
        "{\"firstname\":",
        "[1,2]",
        "\"text\"",
        "",
        "{\"firstname\": \"\\ud800\"}",
        deep.as_str(),
    ] {
        let r = raw(
            &env,
            Method::POST,
            "contacts",
            &[("Content-Type", "application/json")],
            body.as_bytes().to_vec(),
        )
        .await;
        assert_eq!(r.status, 400, "{}: {}", &body[..body.len().min(40)], r.text);
        assert_eq!(r.error_code(), "0x80048d19", "{}", r.text);
    }
    let r = raw(&env, Method::POST, "contacts", &[], vec![0xff, 0xfe, b'{']).await;
    assert_eq!(r.status, 400, "{}", r.text);
    still_serving(&env).await;
}

#[tokio::test]
async fn request_body_over_the_limit_answers_413() {
    let env = start_http().await;
    let body = vec![b' '; 32 * 1024 * 1024 + 1024];
    let r = raw(
        &env,
        Method::POST,
        "contacts",
        &[("Content-Type", "application/json")],
        body,
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(r.error_code(), "0x80048d19");
    still_serving(&env).await;
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_404_and_405() {
    let env = start().await;
    let cases: &[(Method, &str, u16)] = &[
        (Method::DELETE, "contacts", 405),
        (Method::PUT, "contacts(5f2d7a3e-1c4b-4e8a-9d3f-000000000001)", 405),
        (Method::POST, "$metadata", 405),
        (Method::PATCH, "WhoAmI", 405),
        (Method::GET, "nosuchset", 404),
        (Method::POST, "nosuchset", 404),
        (Method::GET, "$batch", 405),
    ];
    for (method, path, status) in cases {
        let r = env.send(method.clone(), path, &[], Some(json!({}))).await;
        assert_eq!(r.status.as_u16(), *status, "{method} {path}: {}", r.text);
        assert!(r.error_code().starts_with("0x"), "{method} {path}: {}", r.text);
    }
    let r = env
        .http
        .get(format!("{}/no/such/route", env.sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    still_serving(&env).await;
}

#[tokio::test]
async fn property_writes_honour_if_match() {
    let env = start().await;
    let path = "contacts(5f2d7a3e-1c4b-4e8a-9d3f-000000000001)/firstname";
    let stale = [("If-Match", "W/\"1\"")];
    let r = env.send(Method::PUT, path, &stale, Some(json!({"value": "X"}))).await;
    assert_eq!(r.status, 412, "{}", r.text);
    assert_eq!(r.error_code(), "0x80060882");
    let r = env.send(Method::DELETE, path, &stale, None).await;
    assert_eq!(r.status, 412, "{}", r.text);
    let etag = env
        .get("contacts(5f2d7a3e-1c4b-4e8a-9d3f-000000000001)?$select=firstname")
        .await
        .json()["@odata.etag"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = env
        .send(Method::PUT, path, &[("If-Match", &etag)], Some(json!({"value": "Y"})))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let after = env.get("contacts(5f2d7a3e-1c4b-4e8a-9d3f-000000000001)").await.json();
    assert_eq!(after["firstname"], "Y");
    assert_ne!(after["@odata.etag"], etag.as_str(), "the etag changes on every write");
}

async fn batch_with(env: &Env, content_type: &str, body: String) -> Reply {
    raw(
        env,
        Method::POST,
        "$batch",
        &[("Content-Type", content_type)],
        body.into_bytes(),
    )
    .await
}

#[tokio::test]
async fn batch_with_a_hundred_thousand_parts_is_refused_without_parsing_them_all() {
    let env = start().await;
    let part = "--b\r\nContent-Type: application/http\r\n\r\nGET contacts HTTP/1.1\r\n\r\n";
    let mut body = part.repeat(100_000);
    body.push_str("--b--\r\n");
    let r = batch_with(&env, "multipart/mixed; boundary=b", body).await;
    assert_eq!(r.status, 400, "{}", &r.text[..r.text.len().min(300)]);
    assert!(
        r.json()["error"]["message"].as_str().unwrap().contains("1000"),
        "{}",
        r.text
    );

    let cs_part = "--c\r\nContent-Type: application/http\r\n\r\nDELETE contacts(00000000-0000-0000-0000-000000000001) HTTP/1.1\r\n\r\n";
    let change_set = format!(
        "--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n{}--c--\r\n--b--\r\n",
        cs_part.repeat(1001)
    );
    let r = batch_with(&env, "multipart/mixed; boundary=b", change_set).await;
    assert_eq!(r.status, 400, "{}", &r.text[..r.text.len().min(300)]);
    assert!(
        r.json()["error"]["message"].as_str().unwrap().contains("1000"),
        "{}",
        r.text
    );
    still_serving(&env).await;
}

#[tokio::test]
async fn batch_boundary_must_have_1_to_70_characters() {
    let env = start().await;
    let long = "x".repeat(71);
    for ct in [
        "multipart/mixed; boundary=\"\"".to_owned(),
        "multipart/mixed; boundary=".to_owned(),
        format!("multipart/mixed; boundary={long}"),
    ] {
        let body = "--\r\nContent-Type: application/http\r\n\r\nGET WhoAmI HTTP/1.1\r\n\r\n----\r\n".to_owned();
        let r = batch_with(&env, &ct, body).await;
        assert_eq!(r.status, 400, "{ct}: {}", r.text);
        assert_eq!(r.error_code(), "0x80060888", "{ct}: {}", r.text);
    }
    for garbage in [
        "--b",
        "--b\r\n",
        "--b\r\n\r\n\r\n--b--",
        "--b--",
        "\u{0}\u{0}--b\r\n--b--",
    ] {
        let r = batch_with(&env, "multipart/mixed; boundary=b", garbage.to_owned()).await;
        assert_eq!(r.status, 400, "{garbage:?}: {}", r.text);
    }
    still_serving(&env).await;
}

#[tokio::test]
async fn token_endpoint_refuses_get_and_oversized_forms() {
    let env = start().await;
    let r = env.http.get(env.sim.token_url()).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_request");
    assert_eq!(v["error_codes"], json!([900561]));
    assert!(
        v["error_description"].as_str().unwrap().starts_with("AADSTS900561: "),
        "{v}"
    );

    let r = env
        .http
        .post(env.sim.token_url())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("client_id={}", "x".repeat(100 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    still_serving(&env).await;
}

#[tokio::test]
async fn fault_config_with_an_out_of_range_throttle_period_is_refused() {
    let env = start().await;
    let r = env
        .http
        .post(format!("{}/_sim/faults", env.sim.base_url()))
        .header("Content-Type", "application/json")
        .body(json!({"throttle_for_s": u64::MAX}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(text.contains("throttle_for_s"), "{text}");
    // A throttling period beyond the calendar means "until cleared", not "not at all".
    env.sim
        .faults()
        .throttle_for(Duration::from_secs(u64::MAX / 4), Duration::from_secs(1));
    assert_eq!(env.get("WhoAmI").await.status, 429);
    env.sim.faults().clear();
    still_serving(&env).await;
}

#[tokio::test]
async fn absurd_lifetimes_are_refused_at_start_and_absurd_limits_do_not_panic() {
    for builder in [
        Simulator::builder().token_lifetime(Duration::MAX),
        Simulator::builder().delta_token_lifetime(Duration::from_secs(u64::MAX / 2)),
        Simulator::builder().limits(ServiceLimits {
            window: Duration::MAX,
            ..ServiceLimits::default()
        }),
    ] {
        let e = builder.start().await.unwrap_err();
        assert!(e.to_string().contains("longer than 100 years"), "{e}");
    }

    let env = start().await;
    env.sim.state().set_limits(ServiceLimits {
        // Fits chrono's duration but not the calendar: the window's end is past the year 262,143.
        window: Duration::from_secs(1_000_000_000_000_000),
        cost_per_operation: Duration::from_secs(u64::MAX / 4),
        ..ServiceLimits::default()
    });
    assert_eq!(env.get("WhoAmI").await.status, 200);
    let r = env.get("WhoAmI").await;
    assert_eq!(
        r.status, 429,
        "the first request spent the whole execution-time budget: {}",
        r.text
    );
    assert_eq!(r.error_code(), "0x80072321");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
}
