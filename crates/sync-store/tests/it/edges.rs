//! What the engine needs for the events of a year in production: a write's intent and per-field change memory kept
//! on the link, released contacts, conflicts that settle, records forgotten when a mentor leaves, pulled values
//! guarded against an app edit, refused values, and a run lock that notices it was lost.

use std::collections::BTreeMap;
use std::time::Duration;

use field_mapping::{AppRecord, AppValue};
use sync_store::testing::TestDatabase;
use sync_store::*;

use super::{at, certification, day, each, mentor, seed_orgs};

fn link(app_id: &str) -> Link {
    let mut shadow = AppRecord::new();
    shadow.insert("phone".into(), AppValue::Text("1".into()));
    Link {
        organisation_id: "hlf".into(),
        record_kind: "mentor".into(),
        app_id: app_id.into(),
        dynamics_id: uuid::Uuid::new_v4(),
        alternate_key: format!("k{app_id}"),
        etag: Some("W/\"1\"".into()),
        shadow,
        visible: true,
        expires_on: Some(day(2027, 1, 1)),
        dynamics_modified_on: None,
        synced_at: at("2026-01-01T02:00:00Z"),
        pending: None,
        seen: BTreeMap::new(),
        app_changed_at: None,
    }
}

#[tokio::test]
async fn a_link_keeps_its_pending_write_and_change_memory() {
    each(|store| async move {
        let mut a = link("a");
        let mut pending = AppRecord::new();
        pending.insert("phone".into(), AppValue::Text("2".into()));
        pending.insert("app_synced_on".into(), AppValue::DateTime(at("2026-01-02T02:00:00Z")));
        a.pending = Some(pending);
        a.seen.insert(
            "phone".into(),
            FieldSeen {
                app: Some(SeenValue {
                    value: AppValue::Text("2".into()),
                    at: at("2026-01-01T09:00:00Z"),
                }),
                dynamics: None,
            },
        );
        let b = link("b");
        store.save_links(&[a.clone(), b.clone()]).await.unwrap();
        let read = store.links("hlf", "mentor", &["a".into(), "b".into()]).await.unwrap();
        assert_eq!(read.len(), 2);
        let read_a = read.iter().find(|l| l.app_id == "a").unwrap();
        assert_eq!(read_a, &a);
        assert_eq!(read.iter().find(|l| l.app_id == "b").unwrap(), &b);
        let pending = store.links_with_pending("hlf", "mentor").await.unwrap();
        assert_eq!(pending.iter().map(|l| l.app_id.as_str()).collect::<Vec<_>>(), ["a"]);
        // Saving the confirmed link clears the intent.
        a.pending = None;
        a.seen.clear();
        store.save_link(&a).await.unwrap();
        assert!(store.links_with_pending("hlf", "mentor").await.unwrap().is_empty());
        assert_eq!(store.links("hlf", "mentor", &["a".into()]).await.unwrap()[0], a);
    })
    .await;
}

#[tokio::test]
async fn a_released_contact_is_kept_until_it_is_hidden_claimed_or_deleted() {
    each(|store| async move {
        let id = uuid::Uuid::new_v4();
        let release = Release {
            organisation_id: "hlf".into(),
            record_kind: "mentor".into(),
            dynamics_id: id,
            app_id: "m1".into(),
            etag: Some("W/\"4\"".into()),
            reason: "the mentor is no longer in the app".into(),
            since: at("2026-01-01T02:00:00Z"),
            attempts: 0,
            last_error: None,
        };
        store.add_release(&release).await.unwrap();
        // Released again (another run): one row, the attempts kept.
        store
            .release_failed("hlf", "mentor", id, Some("W/\"5\""), "Dynamics answered 400")
            .await
            .unwrap();
        store
            .add_release(&Release {
                etag: None,
                ..release.clone()
            })
            .await
            .unwrap();
        let listed = store.releases("hlf", "mentor", None, 10).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].attempts, 1);
        assert_eq!(listed[0].etag.as_deref(), Some("W/\"5\""));
        assert_eq!(listed[0].last_error.as_deref(), Some("Dynamics answered 400"));
        assert!(store.releases("other", "mentor", None, 10).await.unwrap().is_empty());
        assert!(store.releases("hlf", "mentor", Some(id), 10).await.unwrap().is_empty());
        store.delete_release("hlf", "mentor", id).await.unwrap();
        assert!(store.releases("hlf", "mentor", None, 10).await.unwrap().is_empty());
    })
    .await;
}

fn conflict(app_id: &str) -> Conflict {
    Conflict {
        id: String::new(),
        organisation_id: "hlf".into(),
        record_kind: "mentor".into(),
        app_id: app_id.into(),
        field: "phone".into(),
        shadow_value: Some(AppValue::Text("1".into())),
        app_value: AppValue::Text("a".into()),
        dynamics_value: AppValue::Text("d".into()),
        app_changed_at: None,
        dynamics_changed_at: None,
        detected_at: at("2026-01-01T02:00:00Z"),
        state: ConflictState::Open,
        resolved_by: None,
    }
}

#[tokio::test]
async fn a_settled_conflict_is_closed_and_a_new_one_may_open() {
    each(|store| async move {
        let id = store.open_conflict(&conflict("m1")).await.unwrap();
        store.settle_conflict(&id, at("2026-01-02T02:00:00Z")).await.unwrap();
        assert!(store.pending_conflicts("hlf").await.unwrap().is_empty());
        assert_eq!(
            store.conflict(&id).await.unwrap().unwrap().state,
            ConflictState::Settled
        );
        let again = store.open_conflict(&conflict("m1")).await.unwrap();
        assert_ne!(again, id);
        // Retention takes settled conflicts like applied ones.
        assert!(store.purge(at("2026-02-01T00:00:00Z")).await.unwrap().rows["conflicts"] >= 1);
        assert!(store.conflict(&id).await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn a_record_that_left_the_app_is_forgotten() {
    each(|store| async move {
        store.open_conflict(&conflict("m1")).await.unwrap();
        store.open_conflict(&conflict("m2")).await.unwrap();
        for key in ["m1", "m2"] {
            store
                .record_failure(
                    "hlf",
                    "mentor",
                    key,
                    Direction::Push,
                    "no contact",
                    3,
                    at("2026-01-01T02:00:00Z"),
                )
                .await
                .unwrap();
        }
        store.forget_record("hlf", "mentor", "m1").await.unwrap();
        let conflicts = store.pending_conflicts("hlf").await.unwrap();
        assert_eq!(conflicts.iter().map(|c| c.app_id.as_str()).collect::<Vec<_>>(), ["m2"]);
        let failures = store.failures("hlf", FailureState::Retrying).await.unwrap();
        assert_eq!(
            failures.iter().map(|f| f.record_key.as_str()).collect::<Vec<_>>(),
            ["m2"]
        );
    })
    .await;
}

#[tokio::test]
async fn a_pull_is_written_only_while_the_mentor_is_as_the_engine_read_it() {
    each(|store| async move {
        seed_orgs(&store).await;
        store
            .upsert_mentor(&mentor("m1", "hlf", "1001", "2026-01-01T10:00:00Z"))
            .await
            .unwrap();
        let update = PullUpdate {
            phone: Some(Some("+47 900 00 000".into())),
            if_updated_at: Some(at("2026-01-01T10:00:00Z")),
            ..PullUpdate::default()
        };
        assert_eq!(
            store.apply_pull("hlf", "m1", &update).await.unwrap(),
            PullOutcome::Applied
        );
        // The app edits the mentor after the engine read it.
        store
            .upsert_mentor(&mentor("m1", "hlf", "1001", "2026-01-01T11:00:00Z"))
            .await
            .unwrap();
        let later = PullUpdate {
            given_name: Some(Some("Overskrevet".into())),
            ..update.clone()
        };
        assert_eq!(store.apply_pull("hlf", "m1", &later).await.unwrap(), PullOutcome::Stale);
        let snapshot = store.mentors("hlf", &["m1".into()]).await.unwrap().remove(0);
        assert_eq!(snapshot.mentor.given_name.as_deref(), Some("Kari"), "nothing written");
        let missing = store.apply_pull("hlf", "nobody", &update).await.unwrap_err();
        assert!(missing.is_record_level(), "{missing}");
    })
    .await;
}

#[tokio::test]
async fn a_member_number_another_mentor_has_is_refused_for_that_record() {
    each(|store| async move {
        seed_orgs(&store).await;
        store
            .upsert_mentor(&mentor("m1", "hlf", "1001", "2026-01-01T10:00:00Z"))
            .await
            .unwrap();
        store
            .upsert_mentor(&mentor("m2", "hlf", "1002", "2026-01-01T10:00:00Z"))
            .await
            .unwrap();
        let update = PullUpdate {
            member_number: Some(Some("1002".into())),
            ..PullUpdate::default()
        };
        let refused = store.apply_pull("hlf", "m1", &update).await.unwrap_err();
        assert!(matches!(refused, Error::Refused { .. }), "{refused:?}");
        assert!(refused.is_record_level());
        assert!(
            !refused.to_string().contains("1002"),
            "no member number in the reason: {refused}"
        );
        let renumbered = PullUpdate {
            member_number: Some(Some("1003".into())),
            ..PullUpdate::default()
        };
        store.apply_pull("hlf", "m1", &renumbered).await.unwrap();
        let snapshot = store.mentors("hlf", &["m1".into()]).await.unwrap().remove(0);
        assert_eq!(snapshot.mentor.member_number.as_deref(), Some("1003"));
    })
    .await;
}

#[tokio::test]
async fn a_removed_mentor_takes_their_rows_along_and_only_their_own() {
    each(|store| async move {
        seed_orgs(&store).await;
        store
            .upsert_mentor(&mentor("m1", "hlf", "1001", "2026-01-01T10:00:00Z"))
            .await
            .unwrap();
        store
            .upsert_certification(&certification("c1", "m1", day(2027, 1, 1), "2026-01-01T10:00:00Z"))
            .await
            .unwrap();
        store
            .upsert_mentor(&mentor("m2", "hlf", "1002", "2026-01-01T10:00:00Z"))
            .await
            .unwrap();
        assert!(
            store.delete_mentor("other", "m1").await.is_err(),
            "scoped by organisation"
        );
        store.delete_mentor("hlf", "m1").await.unwrap();
        assert_eq!(
            store
                .existing_mentors("hlf", &["m1".into(), "m2".into(), "m3".into()])
                .await
                .unwrap(),
            ["m2"]
        );
        assert!(
            store
                .existing_mentors("other", &["m2".into()])
                .await
                .unwrap()
                .is_empty()
        );
    })
    .await;
}

#[tokio::test]
async fn a_sqlite_lease_taken_by_another_worker_is_reported_lost() {
    let db = TestDatabase::sqlite().await.unwrap();
    let now = at("2026-01-01T02:00:00Z");
    let lease = Duration::from_secs(60);
    let first = db
        .store
        .try_lock("hlf", "other-host:1:a", lease, now)
        .await
        .unwrap()
        .unwrap();
    let later = now + chrono::Duration::minutes(5);
    let second = db
        .store
        .try_lock("hlf", "other-host:2:b", lease, later)
        .await
        .unwrap()
        .unwrap();
    let lost = first.renew(lease, later).await.unwrap_err();
    assert!(matches!(lost, Error::LockLost { .. }), "{lost:?}");
    assert!(!lost.is_record_level());
    second.renew(lease, later).await.unwrap();
    second.release().await.unwrap();
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn a_postgres_lock_whose_session_died_is_reported_lost() {
    let Some(db) = TestDatabase::postgres().await.unwrap() else {
        return;
    };
    let now = at("2026-01-01T02:00:00Z");
    let lease = Duration::from_secs(60);
    let lock = db.store.try_lock("hlf", "worker", lease, now).await.unwrap().unwrap();
    lock.renew(lease, now).await.unwrap();
    sync_store::testing::terminate_advisory_lock_sessions(&db.url)
        .await
        .unwrap();
    let lost = lock.renew(lease, now).await.unwrap_err();
    assert!(matches!(lost, Error::LockLost { .. }), "{lost:?}");
    // The lock is free for the next run.
    let next = db.store.try_lock("hlf", "worker-2", lease, now).await.unwrap();
    assert!(next.is_some());
    next.unwrap().release().await.unwrap();
    lock.release().await.unwrap();
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn pulls_in_bulk_write_each_mentor_or_say_why_not() {
    each(|store| async move {
        seed_orgs(&store).await;
        for (id, member) in [("m1", "1001"), ("m2", "1002"), ("m3", "1003"), ("m4", "1004")] {
            store
                .upsert_mentor(&mentor(id, "hlf", member, "2026-01-01T10:00:00Z"))
                .await
                .unwrap();
        }
        let seen = at("2026-01-01T10:00:00Z");
        let update = |given: &str| PullUpdate {
            given_name: Some(Some(given.to_owned())),
            membership_status: Some(Some("active".to_owned())),
            paid_until: Some(Some(day(2026, 12, 31))),
            source_modified_on: Some(at("2026-02-01T08:00:00Z")),
            if_updated_at: Some(seen),
            ..PullUpdate::default()
        };
        // m2 was edited in the app after the engine read it; m9 does not exist.
        store
            .upsert_mentor(&mentor("m2", "hlf", "1002", "2026-01-01T11:00:00Z"))
            .await
            .unwrap();
        let updates = vec![
            ("m1".to_owned(), update("Ane")),
            ("m2".to_owned(), update("Bo")),
            ("m9".to_owned(), update("Ingen")),
            (
                "m3".to_owned(),
                PullUpdate {
                    membership_type: Some(Some("family".into())),
                    if_updated_at: Some(seen),
                    ..PullUpdate::default()
                },
            ),
        ];
        let results = store.apply_pulls("hlf", &updates).await.unwrap();
        assert!(matches!(results[0], Ok(PullOutcome::Applied)), "{results:?}");
        assert!(matches!(results[1], Ok(PullOutcome::Stale)), "{results:?}");
        assert!(matches!(results[2], Err(Error::NotFound { .. })), "{results:?}");
        assert!(matches!(results[3], Ok(PullOutcome::Applied)), "{results:?}");
        let snapshots = store
            .mentors("hlf", &["m1".into(), "m2".into(), "m3".into()])
            .await
            .unwrap();
        assert_eq!(snapshots[0].mentor.given_name.as_deref(), Some("Ane"));
        assert_eq!(snapshots[0].mentor.updated_at, seen, "a pull never moves updated_at");
        let membership = snapshots[0].membership.clone().unwrap();
        assert_eq!(
            (membership.status.as_deref(), membership.paid_until),
            (Some("active"), Some(day(2026, 12, 31)))
        );
        assert_eq!(membership.source_modified_on, Some(at("2026-02-01T08:00:00Z")));
        assert_eq!(
            snapshots[1].mentor.given_name.as_deref(),
            Some("Kari"),
            "the stale one is untouched"
        );
        assert!(snapshots[1].membership.is_none());
        assert_eq!(
            snapshots[2].membership.clone().unwrap().membership_type.as_deref(),
            Some("family")
        );

        // One refused value among several: only that one fails, the others are written.
        let updates = vec![
            (
                "m1".to_owned(),
                PullUpdate {
                    member_number: Some(Some("1004".into())),
                    ..PullUpdate::default()
                },
            ),
            ("m3".to_owned(), update("Cecilie")),
        ];
        let results = store.apply_pulls("hlf", &updates).await.unwrap();
        assert!(matches!(results[0], Err(Error::Refused { .. })), "{results:?}");
        assert!(matches!(results[1], Ok(PullOutcome::Applied)), "{results:?}");
        let snapshots = store.mentors("hlf", &["m1".into(), "m3".into()]).await.unwrap();
        assert_eq!(snapshots[0].mentor.member_number.as_deref(), Some("1001"));
        assert_eq!(snapshots[1].mentor.given_name.as_deref(), Some("Cecilie"));
        store
            .set_dynamics_contacts(
                "hlf",
                &[
                    ("m1".into(), Some(uuid::Uuid::nil())),
                    ("m3".into(), None),
                    ("m9".into(), None),
                ],
            )
            .await
            .unwrap();
        let snapshots = store.mentors("hlf", &["m1".into(), "m3".into()]).await.unwrap();
        assert_eq!(snapshots[0].mentor.dynamics_contact_id, Some(uuid::Uuid::nil()));
        assert_eq!(snapshots[1].mentor.dynamics_contact_id, None);
    })
    .await;
}
