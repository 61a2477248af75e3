//! The overview's status is the health monitor's verdict: the dashboard, `/api/health`, the metrics and a monitor
//! built as `health-check` builds it agree, and `/metrics` answers a scraper that sends the credential.

use std::sync::Arc;

use axum::http::StatusCode;
use health_monitor::{HealthMonitor, Probe};
use serde_json::Value;
use sync_store::Certification;

use super::{TOKEN, World, at, day, each, get, send};

#[tokio::test]
async fn the_overview_api_health_and_metrics_give_the_health_monitors_verdict() {
    each(|db| async move {
        let w = World::new(&db).await;
        w.with_conflict_and_failure().await;
        // Revoked in the app before the last run started, yet Dynamics last confirmed it active: a mismatch.
        w.store
            .upsert_certification(&Certification {
                id: "c-hlf-8001".into(),
                mentor_id: "hlf-8001".into(),
                kind: "likeperson".into(),
                issued_on: day(2024, 1, 1),
                expires_on: day(2027, 6, 30),
                revoked_at: Some(at("2026-05-01T09:00:00Z")),
                updated_at: at("2026-05-01T10:00:00Z"),
            })
            .await
            .unwrap();

        // What `health-check --no-probe` would say.
        let monitor = HealthMonitor::new(&w.config, w.store.clone(), Arc::new(w.store.clone()), w.clock.clone());
        let expected = monitor.check(&w.config.organisations[0], Probe::Skip).await.unwrap();
        assert!(
            expected.reasons.len() >= 2,
            "the test wants several reasons: {expected:?}"
        );
        // 8001 is revoked but shown: a mismatch. 899990 is active but not in Dynamics at all: counted apart, since
        // nothing in Dynamics differs from the app.
        assert_eq!(expected.mismatch_count, 1, "{expected:?}");
        assert_eq!(expected.not_in_dynamics, 1, "{expected:?}");
        let status = serde_json::to_value(expected.status).unwrap();

        let (code, _, body) = send(&w.router, get("/api/health").bearer(TOKEN)).await;
        assert_eq!(code, StatusCode::OK, "{body}");
        let health: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            health,
            serde_json::to_value(vec![&expected]).unwrap(),
            "/api/health is check()"
        );

        let (code, _, body) = send(&w.router, get("/api/overview").bearer(TOKEN)).await;
        assert_eq!(code, StatusCode::OK, "{body}");
        let overview: Value = serde_json::from_str(&body).unwrap();
        let org = &overview["organisations"][0];
        assert_eq!(org["status"], status, "{org}");
        assert_eq!(
            org["reasons"],
            serde_json::to_value(&expected.reasons).unwrap(),
            "{org}"
        );
        assert_eq!(org["mismatches"], 1, "{org}");
        assert_eq!(org["not_in_dynamics"], 1, "{org}");

        let (code, _, page) = send(&w.router, get("/").bearer(TOKEN)).await;
        assert_eq!(code, StatusCode::OK);
        let badge = format!("<span class=\"badge {0}\">{0}</span>", status.as_str().unwrap());
        assert!(page.contains(&badge), "{badge} in {page}");
        // The page words the monitor's findings in the reader's language; in English, as health-check prints them,
        // worst first.
        let shown: Vec<String> = page
            .split("<li class=\"reason\">")
            .skip(1)
            .map(|item| text_of(item.split("</li>").next().unwrap_or("")))
            .collect();
        assert_eq!(shown, expected.reasons, "{page}");
        assert!(page.contains("1 mentor differs between the app and Dynamics"), "{page}");
        assert!(page.contains("1 active mentor Dynamics has never confirmed"), "{page}");

        let (code, headers, metrics) = send(&w.router, get("/metrics").bearer(TOKEN)).await;
        assert_eq!(code, StatusCode::OK, "{metrics}");
        assert_eq!(headers["content-type"], health_monitor::METRICS_CONTENT_TYPE);
        let level = match status.as_str().unwrap() {
            "healthy" => 0,
            "degraded" => 1,
            _ => 2,
        };
        let series = format!("hlf_sync_health_status{{organisation=\"hlf\"}} {level}");
        assert!(metrics.contains(&series), "{series} in {metrics}");
        assert!(!metrics.contains(TOKEN) && !metrics.contains(dataverse_sim::DEFAULT_CLIENT_SECRET));
        drop(w);
        db
    })
    .await;
}

#[tokio::test]
async fn the_cache_page_flags_stale_entries_by_the_shared_definition() {
    let db = sync_store::testing::TestDatabase::sqlite().await.unwrap();
    let w = World::new(&db).await;
    w.with_conflict_and_failure().await;
    let entries = w.store.cache_listing("hlf", 10).await.unwrap();
    assert!(!entries.is_empty());
    let stale_after = w.config.cache.stale_after;
    // Exactly at the limit is still fresh, one second past it is stale.
    for (offset, stale) in [(0, false), (1, true)] {
        let as_of = entries[0].as_of;
        w.clock
            .set(as_of + chrono::Duration::from_std(stale_after).unwrap() + chrono::Duration::seconds(offset));
        let shared = entries[0]
            .staleness(sync_engine::Clock::now(&*w.clock), stale_after)
            .stale;
        assert_eq!(shared, stale);
        let (_, _, body) = send(&w.router, get("/api/cache").bearer(TOKEN)).await;
        let cache: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(cache[0]["entries"][0]["stale"], stale, "offset {offset}: {cache}");
    }
    drop(w);
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn the_overview_and_run_log_show_the_accounting_export_and_its_reconciliation() {
    each(|db| async move {
        let w = World::new(&db).await;
        let (_, _, page) = send(&w.router, get("/").bearer(TOKEN)).await;
        assert!(
            !page.contains("Accounting export"),
            "no export has run: nothing to show"
        );

        let now = sync_engine::Clock::now(&*w.clock);
        let id = w
            .store
            .start_run("hlf", sync_store::RunKind::Postings, now)
            .await
            .unwrap();
        let metrics = sync_store::RunMetrics {
            postings: Some(sync_store::PostingMetrics {
                exported: 12,
                failed: 1,
                held: 0,
                checked: 40,
                missing: 1,
                differing: 1,
                sample: vec!["P-0002".into(), "P-0003".into()],
            }),
            ..Default::default()
        };
        w.store
            .finish_run(&id, sync_store::RunStatus::Partial, &metrics, None, now)
            .await
            .unwrap();

        let (code, _, page) = send(&w.router, get("/").bearer(TOKEN)).await;
        assert_eq!(code, StatusCode::OK);
        assert!(page.contains("12 exported, 1 failed, 0 held"), "{page}");
        assert!(
            page.contains("40 checked: 1 missing in Dynamics, 1 with another amount (posting ids P-0002, P-0003)"),
            "{page}"
        );
        let (_, _, overview) = send(&w.router, get("/api/overview").bearer(TOKEN)).await;
        let overview: Value = serde_json::from_str(&overview).unwrap();
        assert_eq!(overview["organisations"][0]["postings"]["metrics"]["missing"], 1);
        let (_, _, runs) = send(&w.router, get("/runs").bearer(TOKEN)).await;
        assert!(runs.contains("<td>accounting export</td>"), "{runs}");
        assert!(runs.contains("12 postings exported, 1 failed"), "{runs}");
        db
    })
    .await;
}

#[tokio::test]
async fn the_configuration_page_checks_the_application_user_s_privileges_on_request() {
    each(|db| async move {
        let w = World::new(&db).await;
        let (status, _, page) = send(&w.router, get("/config").bearer(TOKEN)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("/config/privileges?org=hlf"), "{page}");
        let (status, _, page) = send(&w.router, get("/config/privileges?org=hlf").bearer(TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page.contains("It holds all 2 privileges the sync needs"), "{page}");
        assert!(page.contains("Nothing more than it needs."), "{page}");

        let mut role = vec![dataverse_sim::RolePrivilege::global("prvReadContact")];
        role.push(dataverse_sim::RolePrivilege::global("prvDeleteContact"));
        w.sim.faults().set_role(role);
        let (_, _, page) = send(&w.router, get("/config/privileges").bearer(TOKEN)).await;
        assert!(page.contains("Missing</span> <code>prvWriteContact</code>"), "{page}");
        assert!(
            page.contains("Not needed</span> <code>prvDeleteContact</code>"),
            "{page}"
        );
        let (status, _, body) = send(&w.router, get("/api/privileges?org=hlf").bearer(TOKEN)).await;
        assert_eq!(status, StatusCode::OK);
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            json[0]["report"]["missing"][0]["privilege"], "prvWriteContact",
            "{json}"
        );
        assert_eq!(json[0]["report"]["excess"][0]["access"], "delete", "{json}");

        // Dynamics unreachable: the page says so instead of failing.
        w.sim.faults().fail_next(50, 503);
        let (status, _, page) = send(&w.router, get("/config/privileges").bearer(TOKEN)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("Dynamics could not be asked"), "{page}");
        let (status, _, _) = send(&w.router, get("/config/privileges?org=nobody").bearer(TOKEN)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        drop(w);
        db
    })
    .await;
}

/// The text of a piece of markup: tags dropped, the few entities maud writes decoded.
fn text_of(markup: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in markup.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}
