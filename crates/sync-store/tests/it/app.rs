//! The app side on the reference schema.

use sync_store::testing::TestDatabase;
use sync_store::{AppStore, ChangeCursor, PullUpdate, Store};

use super::{at, certification, day, each, mentor, seed_orgs};

#[tokio::test]
async fn changed_mentors_come_in_change_order_and_page_by_cursor() {
    each(|store| async move {
        seed_orgs(&store).await;
        for (id, updated) in [
            ("m1", "2026-01-01T10:00:00Z"),
            ("m2", "2026-01-01T09:00:00Z"),
            ("m3", "2026-01-01T10:00:00Z"),
        ] {
            store
                .upsert_mentor(&mentor(id, "hlf", &format!("10{id}"), updated))
                .await
                .unwrap();
        }
        store
            .upsert_mentor(&mentor("x1", "other", "900", "2026-01-01T09:30:00Z"))
            .await
            .unwrap();
        // A certification changed later than its mentor makes the mentor changed at that time.
        store
            .upsert_certification(&certification("c2", "m2", day(2027, 1, 1), "2026-01-01T11:00:00Z"))
            .await
            .unwrap();

        let first = store.changed_mentors("hlf", None, None, 2).await.unwrap();
        let ids: Vec<_> = first.iter().map(|(_, s)| s.mentor.id.as_str()).collect();
        assert_eq!(ids, ["m1", "m3"]);
        let cursor = first.last().unwrap().0.clone();
        let rest = store.changed_mentors("hlf", None, Some(&cursor), 10).await.unwrap();
        let ids: Vec<_> = rest.iter().map(|(_, s)| s.mentor.id.as_str()).collect();
        assert_eq!(ids, ["m2"]);
        assert_eq!(
            rest[0].0,
            ChangeCursor {
                changed_at: at("2026-01-01T11:00:00Z"),
                id: "m2".into()
            }
        );
        assert_eq!(rest[0].1.certifications.len(), 1);

        let since = store
            .changed_mentors("hlf", Some(at("2026-01-01T10:30:00Z")), None, 10)
            .await
            .unwrap();
        assert_eq!(since.len(), 1);
        assert_eq!(since[0].1.mentor.id, "m2");
    })
    .await;
}

/// The change time the store keeps follows every write: a mentor saved again keeps its certification's later time,
/// and a certification moved to another mentor changes both.
#[tokio::test]
async fn a_mentor_s_change_time_follows_its_row_and_its_certifications() {
    each(|store| async move {
        seed_orgs(&store).await;
        for id in ["m1", "m2"] {
            store
                .upsert_mentor(&mentor(id, "hlf", &format!("20{id}"), "2026-02-01T08:00:00Z"))
                .await
                .unwrap();
        }
        store
            .upsert_certification(&certification("c1", "m1", day(2027, 1, 1), "2026-02-01T12:00:00Z"))
            .await
            .unwrap();
        // The app saves m1 again with an older row time than its certification's.
        store
            .upsert_mentor(&mentor("m1", "hlf", "20m1", "2026-02-01T09:00:00Z"))
            .await
            .unwrap();
        let changed = |since: &'static str| {
            let store = store.clone();
            async move {
                store
                    .changed_mentors("hlf", Some(at(since)), None, 10)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|(c, _)| (c.id, c.changed_at))
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            changed("2026-02-01T10:00:00Z").await,
            [("m1".to_owned(), at("2026-02-01T12:00:00Z"))]
        );
        // The certification moves to m2 at 13:00: m2 changed then; m1 is back to its own row time.
        store
            .upsert_certification(&certification("c1", "m2", day(2027, 1, 1), "2026-02-01T13:00:00Z"))
            .await
            .unwrap();
        assert_eq!(
            changed("2026-02-01T08:30:00Z").await,
            [
                ("m1".to_owned(), at("2026-02-01T09:00:00Z")),
                ("m2".to_owned(), at("2026-02-01T13:00:00Z"))
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn mentors_of_another_organisation_are_never_returned() {
    each(|store| async move {
        seed_orgs(&store).await;
        store
            .upsert_mentor(&mentor("m1", "hlf", "1001", "2026-01-01T10:00:00Z"))
            .await
            .unwrap();
        store
            .upsert_mentor(&mentor("x1", "other", "1001", "2026-01-01T10:00:00Z"))
            .await
            .unwrap();
        let got = store
            .mentors("hlf", &["m1".into(), "x1".into(), "missing".into()])
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].mentor.id, "m1");
        assert_eq!(
            store
                .mentor_by_member_number("hlf", "1001")
                .await
                .unwrap()
                .unwrap()
                .mentor
                .id,
            "m1"
        );
        assert_eq!(
            store
                .mentor_by_member_number("other", "1001")
                .await
                .unwrap()
                .unwrap()
                .mentor
                .id,
            "x1"
        );
        let all = store.all_mentors("hlf", None, 100).await.unwrap();
        assert_eq!(all.len(), 1);
        assert!(store.apply_pull("hlf", "x1", &PullUpdate::default()).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn pulled_values_are_written_without_touching_updated_at() {
    each(|store| async move {
        seed_orgs(&store).await;
        store
            .upsert_mentor(&mentor("m1", "hlf", "1001", "2026-01-01T10:00:00Z"))
            .await
            .unwrap();
        let update = PullUpdate {
            given_name: Some(Some("Åse".into())),
            phone: Some(None),
            membership_status: Some(Some("active".into())),
            paid_until: Some(Some(day(2026, 12, 31))),
            source_modified_on: Some(at("2026-02-01T08:00:00Z")),
            ..PullUpdate::default()
        };
        store.apply_pull("hlf", "m1", &update).await.unwrap();
        let snapshot = store.mentors("hlf", &["m1".into()]).await.unwrap().remove(0);
        assert_eq!(snapshot.mentor.given_name.as_deref(), Some("Åse"));
        assert_eq!(
            snapshot.mentor.family_name.as_deref(),
            Some("Nordmann"),
            "fields not given are kept"
        );
        assert_eq!(snapshot.mentor.updated_at, at("2026-01-01T10:00:00Z"));
        let membership = snapshot.membership.unwrap();
        assert_eq!(membership.status.as_deref(), Some("active"));
        assert_eq!(membership.paid_until, Some(day(2026, 12, 31)));
        assert_eq!(membership.source_modified_on, Some(at("2026-02-01T08:00:00Z")));
        // Nothing the sync wrote makes the mentor look changed by the app.
        let changed = store
            .changed_mentors("hlf", Some(at("2026-01-02T00:00:00Z")), None, 10)
            .await
            .unwrap();
        assert!(changed.is_empty());

        let contact = uuid::Uuid::new_v4();
        store.set_dynamics_contact("hlf", "m1", Some(contact)).await.unwrap();
        let snapshot = store.mentors("hlf", &["m1".into()]).await.unwrap().remove(0);
        assert_eq!(snapshot.mentor.dynamics_contact_id, Some(contact));
    })
    .await;
}

#[tokio::test]
async fn migrations_can_run_again_on_a_migrated_database() {
    each(|store| async move {
        store.migrate().await.unwrap();
        store.migrate().await.unwrap();
    })
    .await;
}

/// The worker and the app's backend write the same database at once, each through its own pool. Every write waits
/// its turn: none fails with "database is locked", as a transaction that reads before it writes would on SQLite
/// when another connection commits in between.
#[tokio::test]
async fn writers_on_two_pools_at_once_all_succeed() {
    for database in TestDatabase::all().await.unwrap() {
        eprintln!("-- on {}", database.name);
        let worker = database.store.clone();
        let app = Store::connect(&database.url).await.unwrap();
        seed_orgs(&worker).await;
        for m in 0..8 {
            worker
                .upsert_mentor(&mentor(
                    &format!("m{m}"),
                    "hlf",
                    &format!("30{m}"),
                    "2026-03-01T08:00:00Z",
                ))
                .await
                .unwrap();
        }
        let mut tasks = tokio::task::JoinSet::new();
        for writer in 0..8 {
            let store = if writer % 2 == 0 { worker.clone() } else { app.clone() };
            tasks.spawn(async move {
                for round in 0..40 {
                    // Each certification is saved again and again, moving between mentors, so the read of where it
                    // was before races the other writers.
                    let id = format!("c{}", (writer + round) % 6);
                    let owner = format!("m{}", (writer * 3 + round) % 8);
                    let updated = format!("2026-03-01T09:{:02}:{:02}Z", round, writer);
                    store
                        .upsert_certification(&certification(&id, &owner, day(2027, 1, 1), &updated))
                        .await
                        .unwrap_or_else(|e| panic!("writer {writer}, round {round}: {e:?}"));
                    if round % 5 == 0 {
                        let m = format!("m{}", (writer + round) % 8);
                        store
                            .upsert_mentor(&mentor(&m, "hlf", &format!("30{}", (writer + round) % 8), &updated))
                            .await
                            .unwrap_or_else(|e| panic!("writer {writer}, round {round}: {e:?}"));
                    }
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        app.close().await;
        database.cleanup().await.unwrap();
    }
}
