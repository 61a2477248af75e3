//! The admin's actions, end to end: what the pages show after real syncs, and what each action changes in the
//! store and, through the engine, in Dynamics.

use axum::http::StatusCode;
use serde_json::{Value, json};
use sync_store::{AlertState, ConflictState, Direction, FailureState, Severity};

use super::{TOKEN, World, at, each, get, post, send};

#[tokio::test]
async fn a_resolved_conflict_is_written_to_dynamics_by_the_next_run() {
    each(|db| async move {
        let w = World::new(&db).await;
        let contact = w.with_conflict_and_failure().await;
        let (status, _, page) = send(&w.router, get("/conflicts").bearer(TOKEN)).await;
        assert_eq!(status, StatusCode::OK);
        for shown in [
            "3 from the app",
            "2 from Dynamics",
            "8001",
            "Kari Medlem 8001",
            "mobilephone",
            "31 May 2026, 14:00 CEST",
        ] {
            assert!(page.contains(shown), "the conflict page shows {shown}: {page}");
        }
        let conflict = w.store.pending_conflicts("hlf").await.unwrap().remove(0);
        assert!(page.contains(&format!("/conflicts/{}/resolve", conflict.id)));

        let token = w.csrf_token().await;
        let (status, headers, body) = send(
            &w.router,
            post(
                &format!("/conflicts/{}/resolve", conflict.id),
                &format!("side=app&csrf={token}"),
            )
            .bearer(TOKEN),
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        assert_eq!(headers["location"], "/conflicts?notice=resolved");
        let resolved = w.store.conflict(&conflict.id).await.unwrap().unwrap();
        assert_eq!(resolved.state, ConflictState::Resolved(sync_store::Side::App));
        assert_eq!(resolved.resolved_by.as_deref(), Some("admin (bearer token)"));
        assert_eq!(
            w.sim.state().row("contacts", contact).unwrap()["mobilephone"],
            "2 from Dynamics"
        );

        // Resolving twice is refused; the page says it is waiting for the next run.
        let (status, _, _) = send(
            &w.router,
            post(
                &format!("/conflicts/{}/resolve", conflict.id),
                &format!("side=dynamics&csrf={token}"),
            )
            .bearer(TOKEN),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (_, _, page) = send(&w.router, get("/conflicts?notice=resolved").bearer(TOKEN)).await;
        assert!(page.contains("the next run writes the chosen value"), "{page}");

        w.service.run().await.unwrap();
        assert_eq!(
            w.sim.state().row("contacts", contact).unwrap()["mobilephone"],
            "3 from the app"
        );
        assert_eq!(
            w.store.conflict(&conflict.id).await.unwrap().unwrap().state,
            ConflictState::Applied
        );
        let (_, _, page) = send(&w.router, get("/conflicts").bearer(TOKEN)).await;
        assert!(page.contains("No conflicts to resolve."), "{page}");
        drop(w);
        db
    })
    .await;
}

#[tokio::test]
async fn resolving_through_the_api_with_apply_now_writes_at_once() {
    each(|db| async move {
        let w = World::new(&db).await;
        let contact = w.with_conflict_and_failure().await;
        let conflicts: Value =
            serde_json::from_str(&send(&w.router, get("/api/conflicts").bearer(TOKEN)).await.2).unwrap();
        assert_eq!(conflicts.as_array().unwrap().len(), 1, "{conflicts}");
        let id = conflicts[0]["id"].as_str().unwrap().to_owned();
        assert_eq!(conflicts[0]["app_value"], "3 from the app");
        assert_eq!(conflicts[0]["dynamics_value"], "2 from Dynamics");
        let token = w.csrf_token().await;
        let (status, _, body) = send(
            &w.router,
            post(&format!("/api/conflicts/{id}/resolve"), "")
                .bearer(TOKEN)
                .header("x-csrf-token", &token)
                .json(&json!({ "side": "dynamics", "apply_now": true })),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["outcome"],
            "resolved-applied"
        );
        assert_eq!(
            w.store_mentor("hlf-8001").await.phone.as_deref(),
            Some("2 from Dynamics")
        );
        assert_eq!(
            w.sim.state().row("contacts", contact).unwrap()["mobilephone"],
            "2 from Dynamics"
        );
        let (status, _, body) = send(
            &w.router,
            post("/api/conflicts/no-such-conflict/resolve", "")
                .bearer(TOKEN)
                .header("x-csrf-token", &token)
                .json(&json!({ "side": "app" })),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert!(
            serde_json::from_str::<Value>(&body).unwrap()["error"]
                .as_str()
                .unwrap()
                .contains("not found")
        );
        drop(w);
        db
    })
    .await;
}

#[tokio::test]
async fn a_dead_record_is_requeued_or_dismissed_and_the_page_says_why_it_failed() {
    each(|db| async move {
        let w = World::new(&db).await;
        w.with_conflict_and_failure().await;
        let (_, _, page) = send(&w.router, get("/failures").bearer(TOKEN)).await;
        for shown in [
            "899990",
            "Kari Ukjent",
            "no contact in Dynamics has the mentor's member number",
            "dead",
            "Requeue",
        ] {
            assert!(page.contains(shown), "the failures page shows {shown}: {page}");
        }
        let token = w.csrf_token().await;
        let form = format!("org=hlf&key=hlf-899990&direction=push&csrf={token}");
        let (status, _, body) = send(&w.router, post("/failures/requeue", &form).bearer(TOKEN)).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        let failure = w
            .store
            .failure("hlf", "mentor", "hlf-899990", Direction::Push)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((failure.state, failure.attempts), (FailureState::Retrying, 0));
        let (status, _, body) = send(&w.router, post("/failures/dismiss", &form).bearer(TOKEN)).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        let failure = w
            .store
            .failure("hlf", "mentor", "hlf-899990", Direction::Push)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(failure.state, FailureState::Dismissed);
        let (status, _, body) = send(
            &w.router,
            post(
                "/failures/requeue",
                &format!("org=hlf&key=nobody&direction=push&csrf={token}"),
            )
            .bearer(TOKEN),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, _, _) = send(
            &w.router,
            post(
                "/failures/requeue",
                &format!("org=elsewhere&key=hlf-899990&direction=push&csrf={token}"),
            )
            .bearer(TOKEN),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "an organisation not configured here");
        drop(w);
        db
    })
    .await;
}

#[tokio::test]
async fn the_overview_shows_status_last_success_alerts_and_the_run_chart() {
    each(|db| async move {
        let w = World::new(&db).await;
        w.with_conflict_and_failure().await;
        w.store
            .raise_alert(
                "hlf",
                "schema-drift:contact",
                "schema-drift",
                Severity::Critical,
                "column <hlf_x> & co missing",
                at("2026-06-01T00:31:00Z"),
            )
            .await
            .unwrap();
        let (_, _, page) = send(&w.router, get("/").bearer(TOKEN)).await;
        assert!(
            page.contains(r#"class="badge unhealthy""#),
            "a critical open alert: {page}"
        );
        assert!(
            page.contains("column &lt;hlf_x&gt; &amp; co missing"),
            "escaped: {page}"
        );
        assert!(!page.contains("<hlf_x>"));
        assert!(page.contains("<svg class=\"chart\""), "{page}");
        assert_eq!(
            page.matches("<title>").count(),
            1 + 2,
            "the page title and one tooltip per run: {page}"
        );
        assert!(page.contains("1 dead, 0 retrying"), "{page}");
        let overview: Value =
            serde_json::from_str(&send(&w.router, get("/api/overview").bearer(TOKEN)).await.2).unwrap();
        let org = &overview["organisations"][0];
        assert_eq!(org["status"], "unhealthy");
        assert_eq!(
            org["reasons"][0], "alert schema-drift:contact: column <hlf_x> & co missing",
            "the deciding rule first: {org}"
        );
        assert_eq!(org["conflicts_open"], 1);
        assert_eq!(org["chart"].as_array().unwrap().len(), 2);
        // A run that completed with failed records queued still synced everything else.
        assert_eq!(org["last_success"]["pull"], "2026-06-01T00:30:00Z");
        assert_eq!(org["last_success"]["push"], "2026-06-01T00:30:00Z");

        let alert = w.store.active_alerts("hlf").await.unwrap().remove(0);
        let token = w.csrf_token().await;
        let (status, _, body) = send(
            &w.router,
            post(
                &format!("/alerts/{}/acknowledge", alert.id),
                &format!("org=hlf&csrf={token}"),
            )
            .bearer(TOKEN),
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        assert_eq!(
            w.store.active_alerts("hlf").await.unwrap()[0].state,
            AlertState::Acknowledged
        );
        // The health monitor counts an acknowledged alert until its cause is gone, as `health-check` does.
        let (_, _, page) = send(&w.router, get("/").bearer(TOKEN)).await;
        assert!(page.contains(r#"class="badge unhealthy""#), "acknowledged: {page}");
        assert!(page.contains(" · acknowledged</span>"), "{page}");
        drop(w);
        db
    })
    .await;
}

#[tokio::test]
async fn configuration_and_cache_pages_show_settings_and_staleness_but_no_secret() {
    each(|db| async move {
        let w = World::new(&db).await;
        w.with_conflict_and_failure().await;
        let (_, _, page) = send(&w.router, get("/config").bearer(TOKEN)).await;
        for shown in [
            "hlf_membernumber",
            "mobilephone",
            "manual",
            "nightly at 02:00 Europe/Oslo",
            "Client secret",
        ] {
            assert!(page.contains(shown), "the configuration page shows {shown}");
        }
        assert!(!page.contains(dataverse_sim::DEFAULT_CLIENT_SECRET) && !page.contains(TOKEN));
        let config: Value = serde_json::from_str(&send(&w.router, get("/api/config").bearer(TOKEN)).await.2).unwrap();
        assert_eq!(config["organisations"][0]["client_secret"], "set");

        let cache: Value = serde_json::from_str(&send(&w.router, get("/api/cache").bearer(TOKEN)).await.2).unwrap();
        let entries = cache[0]["entries"].as_array().unwrap();
        assert!(!entries.is_empty(), "{cache}");
        assert!(entries.iter().all(|e| e["stale"] == false), "{cache}");
        assert_eq!(cache[0]["stale_after_hours"], 26);
        assert!(
            entries.iter().all(|e| e.get("name").is_none()),
            "the cache needs no names"
        );
        // Two days without a run: every entry is past the configured 26 hours.
        w.clock.advance(chrono::Duration::hours(48));
        let cache: Value = serde_json::from_str(&send(&w.router, get("/api/cache").bearer(TOKEN)).await.2).unwrap();
        assert_eq!(cache[0]["stale"], cache[0]["total"], "{cache}");
        let (_, _, page) = send(&w.router, get("/cache").bearer(TOKEN)).await;
        assert!(page.contains(r#"<tr class="stale">"#), "{page}");
        drop(w);
        db
    })
    .await;
}
