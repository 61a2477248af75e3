//! `$batch`: the request on the wire, per-operation results, change sets and the adaptive size.

use dynamics_client::{AlternateKey, BatchSizer, Error, Row, UpsertMode, WriteOutcome};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, Request, ResponseTemplate};

use super::Fake;

fn rows(n: usize) -> Vec<(AlternateKey, Row)> {
    (1..=n)
        .map(|i| {
            let key = AlternateKey::new("hlf_membernumber", &format!("{}", 100_000 + i)).unwrap();
            let row: Row = serde_json::from_value(json!({ "hlf_showonpublicsite": i % 2 == 0 })).unwrap();
            (key, row)
        })
        .collect()
}

async fn send_batch(
    fake: &Fake,
    n: usize,
    mode: dynamics_client::BatchMode,
) -> dynamics_client::Result<Vec<dynamics_client::PartResult>> {
    let writer = fake.client.writer(&super::mentor_mapping());
    let operations: Vec<_> = rows(n)
        .iter()
        .map(|(key, row)| writer.upsert_operation(key, row, UpsertMode::UpdateOnly).unwrap())
        .collect();
    fake.client.execute_batch(&operations, mode).await
}

fn batch_answer(fake: &Fake, file: &str, boundary: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(fake.fixture(file), &format!("multipart/mixed; boundary={boundary}"))
}

#[tokio::test]
async fn a_batch_where_part_7_of_20_fails_maps_every_answer_to_its_row() {
    let fake = Fake::new().await;
    Mock::given(method("POST"))
        .and(path("/api/data/v9.2/$batch"))
        .and(header("prefer", "odata.continue-on-error"))
        .respond_with(batch_answer(
            &fake,
            "batch-response-part-7-of-20-fails.txt",
            "batchresponse_0f5b6c7d-1e2f-4a3b-9c8d-7e6f5a4b3c2d",
        ))
        .expect(1)
        .mount(&fake.server)
        .await;
    let writer = fake.client.writer(&super::mentor_mapping());
    let mut sizer = BatchSizer::new(50, 1000);
    let results = writer.upsert_many(&rows(20), UpsertMode::UpdateOnly, &mut sizer).await;
    assert_eq!(results.len(), 20);
    for (i, result) in results.iter().enumerate() {
        let n = i + 1;
        match (n, result) {
            (7, Err(Error::NotFound { code, .. })) => assert_eq!(code, "0x80060891"),
            (7, other) => panic!("part 7 should have failed: {other:?}"),
            (n, Ok(written)) if n % 5 == 0 => assert_eq!(written.outcome, WriteOutcome::Created, "part {n}"),
            (n, Ok(written)) => {
                assert_eq!(written.outcome, WriteOutcome::Updated, "part {n}");
                assert_eq!(written.etag.as_deref(), Some(format!("W/\"{}\"", 5000 + n).as_str()));
            }
            (n, Err(e)) => panic!("part {n} failed: {e}"),
        }
    }
    assert_eq!(fake.client.metrics().requests, 1, "a batch is one request");

    // What went on the wire: one multipart body with 20 application/http parts, conditions per part.
    let requests = fake.server.received_requests().await.unwrap();
    let sent = &requests[0];
    let content_type = sent.headers.get("content-type").unwrap().to_str().unwrap();
    assert!(
        content_type.starts_with("multipart/mixed; boundary=\"batch_"),
        "{content_type}"
    );
    let text = String::from_utf8(sent.body.clone()).unwrap();
    assert_eq!(text.matches("Content-Type: application/http\r\n").count(), 20, "{text}");
    assert_eq!(text.matches("Content-Transfer-Encoding: binary\r\n").count(), 20);
    assert_eq!(text.matches("\r\nif-match: *\r\n").count(), 20);
    assert!(
        text.contains(&format!(
            "PATCH {}contacts(hlf_membernumber='100007')?$select=contactid HTTP/1.1\r\n",
            fake.base()
        )),
        "{text}"
    );
    assert!(text.contains("{\"hlf_showonpublicsite\":false}"));
    assert!(
        text.trim_end().ends_with("--"),
        "the body must end with the closing delimiter"
    );
}

#[tokio::test]
async fn batches_split_at_the_adaptive_size_and_grow_while_calm() {
    let fake = Fake::new().await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorder = seen.clone();
    Mock::given(method("POST"))
        .and(path("/api/data/v9.2/$batch"))
        .respond_with(move |request: &Request| {
            let text = String::from_utf8_lossy(&request.body).to_string();
            let n = text.matches("Content-Type: application/http").count();
            recorder.lock().unwrap().push(n);
            let boundary = "batchresponse_x";
            let mut body = String::new();
            for _ in 0..n {
                body.push_str(&format!("--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nHTTP/1.1 204 No Content\r\nOData-Version: 4.0\r\n\r\n\r\n"));
            }
            body.push_str(&format!("--{boundary}--\r\n"));
            ResponseTemplate::new(200).set_body_raw(body, &format!("multipart/mixed; boundary={boundary}"))
        })
        .mount(&fake.server)
        .await;
    let writer = fake.client.writer(&super::mentor_mapping());
    let mut sizer = BatchSizer::new(2, 1000);
    let results = writer.upsert_many(&rows(30), UpsertMode::UpdateOnly, &mut sizer).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(*seen.lock().unwrap(), [2, 4, 8, 16]);
    assert_eq!(sizer.size(), 32);
}

#[tokio::test]
async fn a_throttled_batch_shrinks_the_next_one() {
    let fake = Fake::new().await;
    Mock::given(method("POST"))
        .and(path("/api/data/v9.2/$batch"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .mount(&fake.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/data/v9.2/$batch"))
        .respond_with(batch_answer(
            &fake,
            "batch-response-part-7-of-20-fails.txt",
            "batchresponse_0f5b6c7d-1e2f-4a3b-9c8d-7e6f5a4b3c2d",
        ))
        .mount(&fake.server)
        .await;
    let writer = fake.client.writer(&super::mentor_mapping());
    let mut sizer = BatchSizer::new(20, 1000);
    let results = writer.upsert_many(&rows(20), UpsertMode::UpdateOnly, &mut sizer).await;
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
    assert_eq!(sizer.size(), 10);
}

#[tokio::test]
async fn refused_rows_fail_alone_and_the_rest_are_sent() {
    let fake = Fake::new().await;
    Mock::given(method("POST"))
        .and(path("/api/data/v9.2/$batch"))
        .respond_with(batch_answer(
            &fake,
            "batch-response-part-7-of-20-fails.txt",
            "batchresponse_0f5b6c7d-1e2f-4a3b-9c8d-7e6f5a4b3c2d",
        ))
        .expect(1)
        .mount(&fake.server)
        .await;
    let mut input = rows(21);
    input[0].1.insert("emailaddress1".into(), json!("x@example.org"));
    let writer = fake.client.writer(&super::mentor_mapping());
    let results = writer
        .upsert_many(&input, UpsertMode::UpdateOnly, &mut BatchSizer::new(50, 1000))
        .await;
    assert!(matches!(results[0], Err(Error::ColumnNotWritable { .. })));
    assert!(results[1].is_ok());
    let sent = fake.server.received_requests().await.unwrap();
    let text = String::from_utf8_lossy(&sent[0].body);
    assert_eq!(text.matches("Content-Type: application/http").count(), 20);
    assert!(!text.contains("emailaddress1"));
}

#[tokio::test]
async fn a_batch_that_stops_at_the_first_error_marks_the_rest_not_executed() {
    let fake = Fake::new().await;
    Mock::given(method("POST"))
        .and(path("/api/data/v9.2/$batch"))
        .respond_with(batch_answer(
            &fake,
            "batch-response-stops-at-first-error.txt",
            "batchresponse_1a2b3c4d-0000-4000-8000-000000000002",
        ))
        .mount(&fake.server)
        .await;
    let results = send_batch(&fake, 3, dynamics_client::BatchMode::StopOnError)
        .await
        .unwrap();
    assert!(matches!(
        results[0],
        dynamics_client::PartResult::Answered { status: 204, .. }
    ));
    assert!(matches!(results[1].error(), Some(Error::Concurrency)));
    assert_eq!(results[2], dynamics_client::PartResult::NotExecuted);
    let sent = fake.server.received_requests().await.unwrap();
    assert!(
        sent[0].headers.get("prefer").is_none(),
        "stop-on-error is Dataverse's default: no Prefer"
    );
}

#[tokio::test]
async fn an_atomic_change_set_succeeds_or_fails_as_one() {
    let fake = Fake::new().await;
    Mock::given(method("POST"))
        .and(path("/api/data/v9.2/$batch"))
        .respond_with(batch_answer(
            &fake,
            "batch-response-changeset-ok.txt",
            "batchresponse_3c3c3c3c-0000-4000-8000-000000000003",
        ))
        .up_to_n_times(1)
        .mount(&fake.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/data/v9.2/$batch"))
        .respond_with(batch_answer(
            &fake,
            "batch-response-changeset-failed.txt",
            "batchresponse_5e5e5e5e-0000-4000-8000-000000000005",
        ))
        .mount(&fake.server)
        .await;
    let ok = send_batch(&fake, 2, dynamics_client::BatchMode::Atomic).await.unwrap();
    assert!(ok.iter().all(|r| r.error().is_none()), "{ok:?}");
    let failed = send_batch(&fake, 2, dynamics_client::BatchMode::Atomic).await.unwrap();
    for result in &failed {
        assert!(matches!(result.error(), Some(Error::UnknownColumn { column }) if column == "hlf_nosuchcolumn"));
    }
    let sent = fake.server.received_requests().await.unwrap();
    let text = String::from_utf8_lossy(&sent[0].body);
    assert!(
        text.contains("Content-Type: multipart/mixed; boundary=\"changeset_"),
        "{text}"
    );
    assert!(
        text.contains("Content-ID: 1\r\n") && text.contains("Content-ID: 2\r\n"),
        "{text}"
    );
}
