//! Client benchmarks: how fast 5,000-row contact pages decode (every value at once, as the client reads pages, and
//! into a typed struct), and how much memory streaming 50,000 rows takes.
//!
//! Run: `cargo bench -p dynamics-client --bench client`. It prints a Markdown table for docs/benchmarks.md. The
//! Dynamics side is a wiremock server on loopback serving generated pages in the documented format.

// A benchmark reports on stdout and may unwrap: a failure is the report.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use dynamics_client::{ClientOptions, DynamicsClient, Page, Query, Row, StaticTokenSource};
use futures::StreamExt;
use integration_config::InstanceUrl;
use serde::Deserialize;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PAGE_ROWS: usize = 5000;

fn page_json(base: &str, page: usize, pages: usize) -> String {
    let rows: Vec<serde_json::Value> = (0..PAGE_ROWS)
        .map(|i| {
            let n = page * PAGE_ROWS + i;
            serde_json::json!({
                "@odata.etag": format!("W/\"{}\"", 100_000 + n),
                "contactid": format!("00000000-0000-4000-8000-{n:012}"),
                "modifiedon": "2026-11-27T22:15:00Z",
                "hlf_membernumber": format!("{}", 100_000 + n),
                "hlf_peermentorstatus": 100_000_000,
                "hlf_certificationexpiry": "2027-06-30",
                "hlf_showonpublicsite": n.is_multiple_of(2),
                "hlf_appsyncedon": "2026-11-27T01:00:00Z",
                "hlf_membershipstatus": 100_000_000,
                "hlf_membershiptype": 100_000_001,
                "hlf_paiduntil": "2026-12-31",
                "firstname": "Kari",
                "lastname": "Nordmann-Ødegård",
                "emailaddress1": format!("member{n}@example.org"),
                "mobilephone": "+47 400 00 000",
                "statecode": 0
            })
        })
        .collect();
    let mut body = serde_json::json!({
        "@odata.context": format!("{base}$metadata#contacts(contactid,modifiedon,hlf_membernumber)"),
        "value": rows,
    });
    if page + 1 < pages {
        body["@odata.nextLink"] = format!("{base}contacts?$select=contactid&$skiptoken=page{}", page + 1).into();
    }
    body.to_string()
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Contact {
    contactid: uuid::Uuid,
    hlf_membernumber: String,
    hlf_showonpublicsite: bool,
    #[serde(rename = "@odata.etag")]
    etag: String,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Body<T> {
    value: Vec<T>,
}

fn decode_rate<T: serde::de::DeserializeOwned>(body: &str, rounds: usize) -> f64 {
    let started = Instant::now();
    for _ in 0..rounds {
        let page: Body<T> = serde_json::from_str(body).unwrap();
        assert_eq!(page.value.len(), PAGE_ROWS);
    }
    (rounds * PAGE_ROWS) as f64 / started.elapsed().as_secs_f64()
}

/// Peak resident memory of this process in KiB, and a way to reset it (Linux).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn current_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn reset_peak() {
    // Writing 5 to clear_refs resets VmHWM to the current RSS.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

async fn stream_rows(pages: usize) -> (Duration, u64, u64) {
    let server = MockServer::start().await;
    let base = format!("{}/api/data/v9.2/", server.uri());
    // One body per page position; the server keeps them, so build them before measuring.
    for page in 0..pages {
        let matcher = Mock::given(method("GET")).and(path("/api/data/v9.2/contacts"));
        let mock = if page == 0 {
            matcher.and(query_param("$select", "contactid,hlf_membernumber"))
        } else {
            matcher.and(query_param("$skiptoken", format!("page{page}")))
        };
        mock.respond_with(ResponseTemplate::new(200).set_body_raw(page_json(&base, page, pages), "application/json"))
            .mount(&server)
            .await;
    }
    let instance = InstanceUrl::parse(&server.uri()).unwrap();
    let client = DynamicsClient::new(
        &instance,
        Arc::new(StaticTokenSource::new("bench")),
        ClientOptions::default(),
    )
    .unwrap();
    let query = Query::new("contacts").select(&["contactid", "hlf_membernumber"]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = current_rss_kib();
    reset_peak();
    let started = Instant::now();
    let mut stream = Box::pin(client.pages::<Row>(&query));
    let mut rows = 0u64;
    while let Some(page) = stream.next().await {
        let page: Page<Row> = page.unwrap();
        rows += page.rows.len() as u64;
    }
    let elapsed = started.elapsed();
    assert_eq!(rows, (pages * PAGE_ROWS) as u64);
    (elapsed, peak_rss_kib().saturating_sub(before), rows)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = page_json("https://hlf.crm4.dynamics.com/api/data/v9.2/", 0, 1);
    println!("# dynamics-client benchmark\n");
    println!(
        "A 5,000-row contact page is {:.1} MB of JSON.\n",
        body.len() as f64 / 1e6
    );
    println!("| measure | value |\n| --- | --- |");
    let raw = decode_rate::<Row>(&body, 20);
    println!(
        "| decode into raw rows (`Row`, every value decoded) | {:.0} rows/s |",
        raw
    );
    let lazy = decode_rate::<field_mapping::LazyRow>(&body, 20);
    println!(
        "| decode into rows as the client reads pages (`LazyRow`, values kept as text) | {:.0} rows/s |",
        lazy
    );
    let typed = decode_rate::<Contact>(&body, 20);
    println!("| decode into a typed struct (4 columns) | {:.0} rows/s |", typed);
    for pages in [2usize, 10] {
        let (elapsed, peak_growth, rows) = runtime.block_on(stream_rows(pages));
        println!(
            "| stream {rows} rows over HTTP (loopback, {pages} pages): wall time | {:.2} s ({:.0} rows/s) |",
            elapsed.as_secs_f64(),
            rows as f64 / elapsed.as_secs_f64()
        );
        println!(
            "| stream {rows} rows: peak memory growth (client and fake server) | {:.1} MB |",
            peak_growth as f64 / 1024.0
        );
    }
}
