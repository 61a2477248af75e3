//! The overview as rendered, over fixed data seeded directly in the store and a fixed clock: a change to the page
//! shows up as a diff to review.

use std::collections::BTreeMap;
use std::sync::Arc;

use dashboard::{Dashboard, DashboardOptions};
use dynamics_client::{ClientOptions, DynamicsClient};
use integration_config::IntegrationConfig;
use sync_engine::{FixedClock, SyncService};
use sync_store::testing::TestDatabase;
use sync_store::{DirectionMetrics, RunKind, RunMetrics, RunStatus, Severity};

use super::{TOKEN, at, get, send};

#[tokio::test]
async fn the_overview_renders_fixed_data_the_same_way() {
    let db = TestDatabase::sqlite().await.unwrap();
    let store = db.store.clone();
    store.upsert_organisation("hlf", "HLF").await.unwrap();
    let env: BTreeMap<String, String> = [
        ("DYNAMICS_TENANT_ID", "00000000-0000-4000-8000-000000000001"),
        ("DYNAMICS_CLIENT_ID", "00000000-0000-4000-8000-000000000002"),
        ("DYNAMICS_CLIENT_SECRET", "never-shown-secret"),
        ("DYNAMICS_INSTANCE_URL", "https://hlf.crm4.dynamics.com"),
        ("SYNC_DASHBOARD_CREDENTIAL", TOKEN),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = IntegrationConfig::from_toml(
        "mapping = \"builtin:hlf-default\"\n[[organisations]]\nid = \"hlf\"\nname = \"HLF <Likeperson>\"\n",
        "snapshot.toml",
        std::path::Path::new("."),
        &env,
    )
    .unwrap();
    let clock = Arc::new(FixedClock::new(at("2026-06-03T08:00:00Z")));
    let client = DynamicsClient::for_organisation(&config.organisations[0], ClientOptions::default()).unwrap();
    let service = SyncService::new(
        &config.organisations[0],
        &config,
        client,
        Arc::new(store.clone()),
        store.clone(),
        clock.clone(),
    )
    .unwrap();

    for (day, status, written, failed, error) in [
        (1, RunStatus::Succeeded, 120, 0, None),
        (2, RunStatus::Partial, 14, 2, None),
        (
            3,
            RunStatus::Failed,
            0,
            0,
            Some("the sync for organisation hlf could not use Dynamics: timed out"),
        ),
    ] {
        let started = at(&format!("2026-06-0{day}T02:00:00Z"));
        let id = store.start_run("hlf", RunKind::Sync, started).await.unwrap();
        let metrics = RunMetrics {
            push: DirectionMetrics {
                read: written + failed,
                written,
                failed,
                ..DirectionMetrics::default()
            },
            pull: DirectionMetrics {
                read: 5,
                written: 5,
                ..DirectionMetrics::default()
            },
            requests: 7,
            duration_ms: 1250,
            // As the engine notes it: the pull of the two runs that did not fail completed.
            notes: [(sync_engine::NOTE_PULL_COMPLETED.to_owned(), "true".to_owned())]
                .into_iter()
                .filter(|_| status != RunStatus::Failed)
                .collect(),
            ..RunMetrics::default()
        };
        store
            .finish_run(&id, status, &metrics, error, started + chrono::Duration::seconds(2))
            .await
            .unwrap();
    }
    store
        .raise_alert(
            "hlf",
            "sync-failing",
            "sync-failing",
            Severity::Warning,
            "the last run failed; <check> the log",
            at("2026-06-03T02:00:02Z"),
        )
        .await
        .unwrap();
    store
        .record_failure(
            "hlf",
            "mentor",
            "hlf-7",
            sync_store::Direction::Push,
            "no contact",
            5,
            at("2026-06-02T02:00:01Z"),
        )
        .await
        .unwrap();

    let dashboard = Dashboard::new(
        config,
        store.clone(),
        vec![service],
        DashboardOptions {
            clock: Some(clock),
            csrf_key: Some([42; 32]),
        },
    )
    .unwrap();
    // The organisation's language (bokmål, the default) when the browser names neither, and English when it asks.
    let (status, _, page) = send(&dashboard.router(), get("/").bearer(TOKEN).no_language()).await;
    assert_eq!(status, axum::http::StatusCode::OK);
    assert!(!page.contains("never-shown-secret"));
    expect_test::expect_file!["overview.nb.snapshot.html"].assert_eq(&page.replace("><", ">\n<"));
    let (status, _, page) = send(&dashboard.router(), get("/").bearer(TOKEN)).await;
    assert_eq!(status, axum::http::StatusCode::OK);
    expect_test::expect_file!["overview.en.snapshot.html"].assert_eq(&page.replace("><", ">\n<"));
    db.cleanup().await.unwrap();
}
