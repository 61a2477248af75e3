//! Conflicts on a shared field: each strategy, and manual resolution.

use field_mapping::HLF_DEFAULT_MAPPING;
use serde_json::json;
use sync_store::{ConflictState, Mentor, Side};

use super::{DEFAULT_CONFIG, World, day, each, mentor_id};

/// The default mapping with `phone` shared between the two sides.
fn shared_phone_mapping() -> String {
    HLF_DEFAULT_MAPPING.replace(
        "field = \"phone\"\ncolumn = \"mobilephone\"\nowner = \"dynamics\"",
        "field = \"phone\"\ncolumn = \"mobilephone\"\nowner = \"shared\"",
    )
}

/// Links a mentor with phone "1" on both sides, then changes it to "app" in the app (at `app_time`) and to
/// "dynamics" in Dynamics.
async fn conflicting(w: &World, app_time: chrono::DateTime<chrono::Utc>) -> uuid::Uuid {
    let id = w.contact("8001", json!({ "mobilephone": "1" }));
    w.mentor("hlf", "8001", day(2027, 6, 30)).await;
    let mut mentor: Mentor = w.store_mentor("8001").await;
    mentor.phone = Some("1".into());
    w.store.upsert_mentor(&mentor).await.unwrap();
    w.service.run().await.unwrap();
    w.sim
        .state()
        .update("contacts", id, json!({ "mobilephone": "dynamics" }))
        .unwrap();
    mentor.phone = Some("app".into());
    mentor.updated_at = app_time;
    w.store.upsert_mentor(&mentor).await.unwrap();
    id
}

impl World {
    async fn store_mentor(&self, member: &str) -> Mentor {
        use sync_store::AppStore;
        self.store
            .mentors("hlf", &[mentor_id("hlf", member)])
            .await
            .unwrap()
            .remove(0)
            .mentor
    }
}

/// Each case on a fresh database of the same kind as `like`.
async fn phone_after(
    strategy: &str,
    app_time: chrono::DateTime<chrono::Utc>,
    like: &sync_store::testing::TestDatabase,
) -> (String, String) {
    let db = match like.name {
        "postgres" => sync_store::testing::TestDatabase::postgres().await.unwrap().unwrap(),
        _ => sync_store::testing::TestDatabase::sqlite().await.unwrap(),
    };
    let config = format!("{DEFAULT_CONFIG}[conflicts]\ndefault = \"{strategy}\"\n");
    let w = World::with_config(&db, &config, Some(&shared_phone_mapping())).await;
    let id = conflicting(&w, app_time).await;
    let report = w.service.run().await.unwrap();
    assert_eq!(report.metrics.pull.conflicts, 1, "{strategy}: {report:?}");
    let dynamics = w.row(id)["mobilephone"].as_str().unwrap_or_default().to_owned();
    let app = w.store_mentor("8001").await.phone.unwrap_or_default();
    drop(w);
    db.cleanup().await.unwrap();
    (app, dynamics)
}

#[tokio::test]
async fn each_strategy_resolves_a_shared_field_changed_on_both_sides() {
    each(|db| async move {
        let later = chrono::Utc::now() + chrono::Duration::hours(1);
        let earlier = chrono::Utc::now() - chrono::Duration::days(30);
        assert_eq!(
            phone_after("app-wins", earlier, &db).await,
            ("app".into(), "app".into())
        );
        assert_eq!(
            phone_after("dynamics-wins", later, &db).await,
            ("dynamics".into(), "dynamics".into())
        );
        assert_eq!(
            phone_after("newest-wins", later, &db).await,
            ("app".into(), "app".into())
        );
        assert_eq!(
            phone_after("newest-wins", earlier, &db).await,
            ("dynamics".into(), "dynamics".into())
        );
        db
    })
    .await;
}

#[tokio::test]
async fn a_manual_conflict_waits_for_an_admin_then_the_choice_is_written() {
    each(|db| async move {
        let config = format!("{DEFAULT_CONFIG}[conflicts]\ndefault = \"manual\"\n");
        let w = World::with_config(&db, &config, Some(&shared_phone_mapping())).await;
        let id = conflicting(&w, chrono::Utc::now()).await;
        w.service.run().await.unwrap();
        // Neither side is written while the conflict is open.
        assert_eq!(w.row(id)["mobilephone"], "dynamics");
        assert_eq!(w.store_mentor("8001").await.phone.as_deref(), Some("app"));
        let conflicts = w.store.pending_conflicts("hlf").await.unwrap();
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].state, ConflictState::Open);
        assert_eq!(conflicts[0].field, "phone");
        assert!(
            w.store
                .notifications("hlf", 10)
                .await
                .unwrap()
                .iter()
                .any(|n| n.subject.contains("8001"))
        );
        // Another run keeps it open and does not duplicate it.
        w.service.run().await.unwrap();
        assert_eq!(w.store.pending_conflicts("hlf").await.unwrap().len(), 1);

        w.service
            .resolve_conflict(&conflicts[0].id, Side::App, "admin@hlf", false)
            .await
            .unwrap();
        w.service.run().await.unwrap();
        assert_eq!(w.row(id)["mobilephone"], "app");
        assert!(w.store.pending_conflicts("hlf").await.unwrap().is_empty());
        // And stays agreed.
        let report = w.service.run().await.unwrap();
        assert_eq!(
            report.metrics.pull.conflicts + report.metrics.push.conflicts + report.metrics.push.written,
            0,
            "{report:?}"
        );
        db
    })
    .await;
}

#[tokio::test]
async fn a_resolution_can_be_applied_at_once() {
    each(|db| async move {
        let config = format!("{DEFAULT_CONFIG}[conflicts]\ndefault = \"manual\"\n");
        let w = World::with_config(&db, &config, Some(&shared_phone_mapping())).await;
        conflicting(&w, chrono::Utc::now()).await;
        w.service.run().await.unwrap();
        let conflict = w.store.pending_conflicts("hlf").await.unwrap().remove(0);
        w.service
            .resolve_conflict(&conflict.id, Side::Dynamics, "admin@hlf", true)
            .await
            .unwrap();
        assert_eq!(w.store_mentor("8001").await.phone.as_deref(), Some("dynamics"));
        assert!(w.store.pending_conflicts("hlf").await.unwrap().is_empty());
        db
    })
    .await;
}
