//! The sync state: watermarks, links, runs, failures, conflicts, alerts, outbox, cache, retention.

use field_mapping::{AppRecord, AppValue};
use sync_store::*;

use super::{at, day, each};

#[tokio::test]
async fn watermarks_round_trip_per_organisation_direction_and_table() {
    each(|store| async move {
        let empty = store.watermark("hlf", Direction::Pull, "contact").await.unwrap();
        assert_eq!(empty, Watermark::default());
        let mark = Watermark {
            at: Some(at("2026-01-01T02:00:00Z")),
            delta_link: Some("https://x/api/data/v9.2/contacts?$deltatoken=1".into()),
            updated_at: None,
        };
        store
            .set_watermark("hlf", Direction::Pull, "contact", &mark, at("2026-01-01T02:05:00Z"))
            .await
            .unwrap();
        let read = store.watermark("hlf", Direction::Pull, "contact").await.unwrap();
        assert_eq!(read.at, mark.at);
        assert_eq!(read.delta_link, mark.delta_link);
        assert_eq!(read.updated_at, Some(at("2026-01-01T02:05:00Z")));
        assert_eq!(
            store.watermark("hlf", Direction::Push, "contact").await.unwrap(),
            Watermark::default()
        );
        assert_eq!(
            store.watermark("other", Direction::Pull, "contact").await.unwrap(),
            Watermark::default()
        );
    })
    .await;
}

fn link(app_id: &str, visible: bool, expires: Option<chrono::NaiveDate>) -> Link {
    let mut shadow = AppRecord::new();
    shadow.insert("certification_status".into(), AppValue::Choice("active".into()));
    shadow.insert("email".into(), AppValue::Text("a@example.org".into()));
    Link {
        organisation_id: "hlf".into(),
        record_kind: "mentor".into(),
        app_id: app_id.into(),
        dynamics_id: uuid::Uuid::new_v4(),
        alternate_key: format!("k{app_id}"),
        etag: Some("W/\"1\"".into()),
        shadow,
        visible,
        expires_on: expires,
        dynamics_modified_on: Some(at("2026-01-01T01:00:00Z")),
        synced_at: at("2026-01-01T02:00:00Z"),
        pending: None,
        seen: Default::default(),
        app_changed_at: None,
    }
}

#[tokio::test]
async fn links_keep_their_shadow_and_answer_the_time_rule() {
    each(|store| async move {
        let a = link("a", true, Some(day(2026, 3, 28)));
        let b = link("b", true, Some(day(2026, 3, 29)));
        let c = link("c", false, Some(day(2026, 1, 1)));
        for l in [&a, &b, &c] {
            store.save_link(l).await.unwrap();
        }
        let read = store.links("hlf", "mentor", &["a".into(), "zz".into()]).await.unwrap();
        assert_eq!(read, std::slice::from_ref(&a));
        assert_eq!(
            store.link_by_dynamics_id("hlf", "mentor", b.dynamics_id).await.unwrap(),
            Some(b.clone())
        );
        // On 29 March, a certification that expired on the 28th must go; one expiring on the 29th is still valid.
        let due = store
            .visible_but_expired("hlf", "mentor", day(2026, 3, 29), None, 100)
            .await
            .unwrap();
        assert_eq!(due, ["a"]);
        let mut updated = a.clone();
        updated.visible = false;
        updated.etag = Some("W/\"2\"".into());
        store.save_link(&updated).await.unwrap();
        assert!(
            store
                .visible_but_expired("hlf", "mentor", day(2026, 3, 30), None, 100)
                .await
                .unwrap()
                == ["b"]
        );
        let page = store.links_page("hlf", "mentor", Some("a"), 10).await.unwrap();
        assert_eq!(page.iter().map(|l| l.app_id.as_str()).collect::<Vec<_>>(), ["b", "c"]);
        store.delete_link("hlf", "mentor", "a").await.unwrap();
        assert!(store.links("hlf", "mentor", &["a".into()]).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn runs_are_logged_with_their_metrics() {
    each(|store| async move {
        let first = store
            .start_run("hlf", RunKind::Sync, at("2026-01-01T02:00:00Z"))
            .await
            .unwrap();
        let metrics = RunMetrics {
            pull: DirectionMetrics {
                read: 10,
                written: 2,
                skipped: 8,
                failed: 0,
                conflicts: 1,
            },
            requests: 7,
            ..RunMetrics::default()
        };
        store
            .finish_run(&first, RunStatus::Succeeded, &metrics, None, at("2026-01-01T02:01:00Z"))
            .await
            .unwrap();
        let second = store
            .start_run("hlf", RunKind::Sync, at("2026-01-02T02:00:00Z"))
            .await
            .unwrap();
        store
            .finish_run(
                &second,
                RunStatus::Failed,
                &RunMetrics::default(),
                Some("cannot reach Dynamics"),
                at("2026-01-02T02:00:10Z"),
            )
            .await
            .unwrap();
        let runs = store.recent_runs("hlf", 10).await.unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].id, second);
        assert_eq!(runs[0].status, RunStatus::Failed);
        assert_eq!(runs[0].error.as_deref(), Some("cannot reach Dynamics"));
        assert_eq!(runs[1].metrics, metrics);
        assert_eq!(runs[1].finished_at, Some(at("2026-01-01T02:01:00Z")));
    })
    .await;
}

#[tokio::test]
async fn a_failing_record_is_retried_then_dead_then_requeued_or_dismissed() {
    each(|store| async move {
        let fail = |n: u32| {
            let store = store.clone();
            async move {
                store
                    .record_failure(
                        "hlf",
                        "mentor",
                        "m1",
                        Direction::Push,
                        &format!("attempt {n} failed"),
                        3,
                        at("2026-01-01T02:00:00Z"),
                    )
                    .await
                    .unwrap()
            }
        };
        assert_eq!(
            (fail(1).await.attempts, fail(2).await.state),
            (1, FailureState::Retrying)
        );
        let dead = fail(3).await;
        assert_eq!(
            (dead.attempts, dead.state, dead.error.as_str()),
            (3, FailureState::Dead, "attempt 3 failed")
        );
        assert_eq!(store.failures("hlf", FailureState::Dead).await.unwrap().len(), 1);
        store
            .requeue_failure("hlf", "mentor", "m1", Direction::Push)
            .await
            .unwrap();
        let requeued = store
            .failure("hlf", "mentor", "m1", Direction::Push)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((requeued.attempts, requeued.state), (0, FailureState::Retrying));
        store
            .dismiss_failure("hlf", "mentor", "m1", Direction::Push)
            .await
            .unwrap();
        assert_eq!(store.failures("hlf", FailureState::Dismissed).await.unwrap().len(), 1);
        store
            .clear_failure("hlf", "mentor", "m1", Direction::Push)
            .await
            .unwrap();
        assert!(
            store
                .failure("hlf", "mentor", "m1", Direction::Push)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .requeue_failure("hlf", "mentor", "m1", Direction::Push)
                .await
                .is_err()
        );
    })
    .await;
}

fn conflict(app: &str, dynamics: &str) -> Conflict {
    Conflict {
        id: String::new(),
        organisation_id: "hlf".into(),
        record_kind: "mentor".into(),
        app_id: "m1".into(),
        field: "phone".into(),
        shadow_value: Some(AppValue::Text("1".into())),
        app_value: AppValue::Text(app.into()),
        dynamics_value: AppValue::Text(dynamics.into()),
        app_changed_at: Some(at("2026-01-01T01:00:00Z")),
        dynamics_changed_at: Some(at("2026-01-01T01:30:00Z")),
        detected_at: at("2026-01-01T02:00:00Z"),
        state: ConflictState::Open,
        resolved_by: None,
    }
}

#[tokio::test]
async fn one_conflict_per_field_until_it_is_applied() {
    each(|store| async move {
        let id = store.open_conflict(&conflict("2", "3")).await.unwrap();
        let again = store.open_conflict(&conflict("2b", "3")).await.unwrap();
        assert_eq!(id, again);
        let pending = store.pending_conflicts("hlf").await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].app_value, AppValue::Text("2b".into()));
        store
            .resolve_conflict(&id, Side::Dynamics, "admin", at("2026-01-01T03:00:00Z"))
            .await
            .unwrap();
        assert!(
            store
                .resolve_conflict(&id, Side::App, "admin", at("2026-01-01T03:00:00Z"))
                .await
                .is_err()
        );
        let resolved = store.conflict(&id).await.unwrap().unwrap();
        assert_eq!(
            (resolved.state, resolved.resolved_by.as_deref()),
            (ConflictState::Resolved(Side::Dynamics), Some("admin"))
        );
        store.mark_conflict_applied(&id).await.unwrap();
        assert!(store.pending_conflicts("hlf").await.unwrap().is_empty());
        let new = store.open_conflict(&conflict("4", "5")).await.unwrap();
        assert_ne!(
            new, id,
            "a new conflict on the same field after the last was applied is a new one"
        );
    })
    .await;
}

#[tokio::test]
async fn alerts_are_deduplicated_per_cause_and_resolve_themselves() {
    each(|store| async move {
        let raise = |message: &'static str| {
            let store = store.clone();
            async move {
                store
                    .raise_alert(
                        "hlf",
                        "sync-failing",
                        "sync",
                        Severity::Critical,
                        message,
                        at("2026-01-01T02:00:00Z"),
                    )
                    .await
                    .unwrap()
            }
        };
        let (first, new) = raise("failed twice").await;
        assert!(new);
        let (second, new) = raise("failed three times").await;
        assert!(!new);
        assert_eq!(
            (second.id, second.occurrences, second.message.as_str()),
            (first.id.clone(), 2, "failed three times")
        );
        store
            .acknowledge_alert(&first.id, at("2026-01-01T03:00:00Z"))
            .await
            .unwrap();
        let active = store.active_alerts("hlf").await.unwrap();
        assert_eq!((active.len(), active[0].state), (1, AlertState::Acknowledged));
        assert!(
            store
                .resolve_alert("hlf", "sync-failing", at("2026-01-02T02:00:00Z"))
                .await
                .unwrap()
        );
        assert!(
            !store
                .resolve_alert("hlf", "sync-failing", at("2026-01-02T02:00:00Z"))
                .await
                .unwrap()
        );
        assert!(store.active_alerts("hlf").await.unwrap().is_empty());
        let (third, new) = raise("failing again").await;
        assert!(new && third.id != first.id);
    })
    .await;
}

fn notification(key: &str) -> Notification {
    Notification {
        id: uuid::Uuid::new_v4().to_string(),
        organisation_id: "hlf".into(),
        dedupe_key: key.into(),
        channel: "email".into(),
        recipient: "coordinator@example.org".into(),
        subject: "Sertifisering kunne ikke synkroniseres".into(),
        body: "…".into(),
        created_at: at("2026-01-01T02:00:00Z"),
        attempts: 0,
        next_attempt_at: at("2026-01-01T02:00:00Z"),
        sent_at: None,
        last_error: None,
    }
}

#[tokio::test]
async fn the_outbox_never_queues_a_key_twice_and_retries_failed_deliveries() {
    each(|store| async move {
        assert!(
            store
                .enqueue_notification(&notification("cert-failed:m1:run1"))
                .await
                .unwrap()
        );
        assert!(
            !store
                .enqueue_notification(&notification("cert-failed:m1:run1"))
                .await
                .unwrap()
        );
        let due = store.due_notifications(at("2026-01-01T02:00:00Z"), 10).await.unwrap();
        assert_eq!(due.len(), 1);
        store
            .mark_notification_failed(&due[0].id, "connection refused", Some(at("2026-01-01T02:10:00Z")))
            .await
            .unwrap();
        assert!(
            store
                .due_notifications(at("2026-01-01T02:05:00Z"), 10)
                .await
                .unwrap()
                .is_empty()
        );
        let retry = store.due_notifications(at("2026-01-01T02:10:00Z"), 10).await.unwrap();
        assert_eq!(
            (retry[0].attempts, retry[0].last_error.as_deref()),
            (1, Some("connection refused"))
        );
        store
            .mark_notification_sent(&retry[0].id, at("2026-01-01T02:10:01Z"))
            .await
            .unwrap();
        assert!(
            store
                .due_notifications(at("2026-01-02T00:00:00Z"), 10)
                .await
                .unwrap()
                .is_empty()
        );
        let all = store.notifications("hlf", 10).await.unwrap();
        assert_eq!((all[0].attempts, all[0].sent_at), (2, Some(at("2026-01-01T02:10:01Z"))));

        store.enqueue_notification(&notification("gives-up")).await.unwrap();
        let id = store.due_notifications(at("2026-01-02T00:00:00Z"), 10).await.unwrap()[0]
            .id
            .clone();
        store
            .mark_notification_failed(&id, "mailbox does not exist", None)
            .await
            .unwrap();
        assert!(
            store
                .due_notifications(at("2027-01-01T00:00:00Z"), 10)
                .await
                .unwrap()
                .is_empty()
        );
    })
    .await;
}

#[tokio::test]
async fn the_certification_cache_keeps_the_as_of_time() {
    each(|store| async move {
        let entry = CacheEntry {
            organisation_id: "hlf".into(),
            mentor_id: "m1".into(),
            member_number: Some("1001".into()),
            status: "active".into(),
            expires_on: Some(day(2027, 1, 31)),
            show_on_public_site: true,
            as_of: at("2026-01-01T02:00:00Z"),
        };
        store.save_cache_entry(&entry).await.unwrap();
        assert_eq!(store.cache_entry("hlf", "m1").await.unwrap(), Some(entry.clone()));
        let newer = CacheEntry {
            status: "expired".into(),
            show_on_public_site: false,
            as_of: at("2026-02-01T02:00:00Z"),
            ..entry
        };
        store.save_cache_entry(&newer).await.unwrap();
        assert_eq!(store.cache_entry("hlf", "m1").await.unwrap(), Some(newer.clone()));
        assert_eq!(store.cache_entry("other", "m1").await.unwrap(), None);
        let first = CacheEntry {
            mentor_id: "m2".into(),
            member_number: Some("1000".into()),
            ..newer.clone()
        };
        store.save_cache_entry(&first).await.unwrap();
        assert_eq!(
            store.cache_listing("hlf", 10).await.unwrap(),
            vec![first.clone(), newer.clone()],
            "listed by member number"
        );
        assert_eq!(store.cache_listing("hlf", 1).await.unwrap(), vec![first]);
        assert!(store.cache_listing("other", 10).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn retention_purges_old_logs_but_keeps_what_is_still_needed() {
    each(|store| async move {
        let old = store
            .start_run("hlf", RunKind::Sync, at("2025-01-01T02:00:00Z"))
            .await
            .unwrap();
        store
            .finish_run(
                &old,
                RunStatus::Succeeded,
                &RunMetrics::default(),
                None,
                at("2025-01-01T02:01:00Z"),
            )
            .await
            .unwrap();
        let recent = store
            .start_run("hlf", RunKind::Sync, at("2026-01-01T02:00:00Z"))
            .await
            .unwrap();
        store
            .finish_run(
                &recent,
                RunStatus::Succeeded,
                &RunMetrics::default(),
                None,
                at("2026-01-01T02:01:00Z"),
            )
            .await
            .unwrap();
        let mut sent = notification("old");
        sent.created_at = at("2025-01-01T00:00:00Z");
        store.enqueue_notification(&sent).await.unwrap();
        store
            .mark_notification_sent(&sent.id, at("2025-01-01T00:01:00Z"))
            .await
            .unwrap();
        let mut pending = notification("pending");
        pending.created_at = at("2025-01-01T00:00:00Z");
        store.enqueue_notification(&pending).await.unwrap();

        // A notification that waited the whole period (its channel was never configured) goes too.
        let mut waiting = notification("waiting");
        waiting.created_at = at("2025-01-01T00:00:00Z");
        store.enqueue_notification(&waiting).await.unwrap();
        let mut recent_pending = notification("recent");
        recent_pending.created_at = at("2026-01-01T00:00:00Z");
        store.enqueue_notification(&recent_pending).await.unwrap();
        // A run left `running` by a crash a year ago.
        store
            .start_run("hlf", RunKind::Sync, at("2025-01-02T02:00:00Z"))
            .await
            .unwrap();
        // A dead failed record and a retrying one, both untouched since 2025; one failing now.
        for (key, when) in [("m-dead", "2025-01-01T02:00:00Z"), ("m-old", "2025-02-01T02:00:00Z")] {
            store
                .record_failure("hlf", "mentor", key, Direction::Push, "no contact", 1, at(when))
                .await
                .unwrap();
        }
        store
            .record_failure(
                "hlf",
                "mentor",
                "m-now",
                Direction::Push,
                "no contact",
                5,
                at("2026-01-01T02:00:00Z"),
            )
            .await
            .unwrap();
        // An open conflict from last year, holding both sides' phone numbers, and a recent one.
        let mut old_conflict = conflict("+47 900 00 001", "+47 900 00 002");
        old_conflict.detected_at = at("2025-01-01T02:00:00Z");
        store.open_conflict(&old_conflict).await.unwrap();
        let mut new_conflict = conflict("+47 900 00 003", "+47 900 00 004");
        new_conflict.app_id = "m2".into();
        store.open_conflict(&new_conflict).await.unwrap();
        // A cache entry no run confirmed since 2025 (the mentor left) and a fresh one.
        for (mentor, as_of) in [("m-gone", "2025-01-01T02:00:00Z"), ("m1", "2026-01-01T02:00:00Z")] {
            store
                .save_cache_entry(&CacheEntry {
                    organisation_id: "hlf".into(),
                    mentor_id: mentor.into(),
                    member_number: Some("1001".into()),
                    status: "active".into(),
                    expires_on: None,
                    show_on_public_site: true,
                    as_of: at(as_of),
                })
                .await
                .unwrap();
        }

        let cutoff = at("2025-10-01T00:00:00Z");
        let preview = store.purge_preview(cutoff).await.unwrap();
        let expected = [
            ("alerts", 0),
            ("cache entries", 1),
            ("conflicts", 1),
            ("failed records", 2),
            ("notifications", 3),
            ("runs", 2),
        ];
        assert_eq!(preview.rows, expected.into_iter().collect(), "{preview}");
        assert_eq!(
            store.purge_preview(cutoff).await.unwrap(),
            preview,
            "a preview deletes nothing"
        );
        let purged = store.purge(cutoff).await.unwrap();
        assert_eq!(purged, preview);
        assert_eq!(purged.total(), 9);
        assert_eq!(store.purge(cutoff).await.unwrap().total(), 0, "nothing old is left");

        assert_eq!(store.recent_runs("hlf", 10).await.unwrap().len(), 1);
        let left: Vec<String> = store
            .notifications("hlf", 10)
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.dedupe_key)
            .collect();
        assert_eq!(left, ["recent"]);
        assert!(
            store
                .failure("hlf", "mentor", "m-now", Direction::Push)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .failure("hlf", "mentor", "m-dead", Direction::Push)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(store.pending_conflicts("hlf").await.unwrap().len(), 1);
        assert!(store.cache_entry("hlf", "m-gone").await.unwrap().is_none());
        assert!(store.cache_entry("hlf", "m1").await.unwrap().is_some());
    })
    .await;
}

#[tokio::test]
async fn forgetting_a_member_removes_their_sync_state_and_queues_their_contact_to_be_hidden() {
    each(|store| async move {
        let now = at("2026-06-01T02:00:00Z");
        // The member (app id with an underscore, which LIKE would take as a wildcard) and another mentor whose id
        // differs in that one character: nothing of the other may go.
        let mut forgotten = link("hlf_m1", true, None);
        forgotten.alternate_key = "1001".into();
        let mut other = link("hlfXm1", true, None);
        other.alternate_key = "1002".into();
        store.save_link(&forgotten).await.unwrap();
        store.save_link(&other).await.unwrap();
        for (app_id, member) in [("hlf_m1", "1001"), ("hlfXm1", "1002")] {
            store
                .record_failure("hlf", "mentor", app_id, Direction::Push, "refused", 5, now)
                .await
                .unwrap();
            let mut c = conflict("a@x.example", "b@x.example");
            c.app_id = app_id.into();
            store.open_conflict(&c).await.unwrap();
            store
                .save_cache_entry(&CacheEntry {
                    organisation_id: "hlf".into(),
                    mentor_id: app_id.into(),
                    member_number: Some(member.into()),
                    status: "active".into(),
                    expires_on: None,
                    show_on_public_site: true,
                    as_of: now,
                })
                .await
                .unwrap();
            store
                .enqueue_notification(&notification(&format!("certification-sync-failed:hlf:{app_id}:1")))
                .await
                .unwrap();
        }
        // A mentor never linked, named by app id, with only a failed record.
        store
            .record_failure("hlf", "mentor", "hlf-m9", Direction::Push, "no contact", 5, now)
            .await
            .unwrap();

        let report = store
            .forget_member("hlf", "1001", &["hlf-m9".to_owned()], now)
            .await
            .unwrap();
        assert_eq!(
            report,
            ForgetReport {
                mentors: vec!["hlf-m9".into(), "hlf_m1".into()],
                links: 1,
                contacts_to_hide: 1,
                failures: 2,
                conflicts: 1,
                notifications: 1,
                cache_entries: 1,
            }
        );
        let releases = store.releases("hlf", "mentor", None, 10).await.unwrap();
        assert_eq!(releases.len(), 1);
        assert_eq!(releases[0].dynamics_id, forgotten.dynamics_id);
        assert!(
            store
                .links("hlf", "mentor", &["hlf_m1".to_owned()])
                .await
                .unwrap()
                .is_empty()
        );
        assert!(store.cache_entry("hlf", "hlf_m1").await.unwrap().is_none());
        assert!(
            store
                .failure("hlf", "mentor", "hlf_m1", Direction::Push)
                .await
                .unwrap()
                .is_none()
        );

        // The other mentor keeps everything.
        assert!(
            !store
                .links("hlf", "mentor", &["hlfXm1".to_owned()])
                .await
                .unwrap()
                .is_empty()
        );
        assert!(store.cache_entry("hlf", "hlfXm1").await.unwrap().is_some());
        assert!(
            store
                .failure("hlf", "mentor", "hlfXm1", Direction::Push)
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(store.pending_conflicts("hlf").await.unwrap().len(), 1);
        let keys: Vec<String> = store
            .notifications("hlf", 10)
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.dedupe_key)
            .collect();
        assert_eq!(keys, ["certification-sync-failed:hlf:hlfXm1:1"]);

        // Twice: nothing more to remove, and the contact is not queued again.
        let again = store.forget_member("hlf", "1001", &[], now).await.unwrap();
        assert_eq!(again, ForgetReport::default());
        assert_eq!(store.releases("hlf", "mentor", None, 10).await.unwrap().len(), 1);
    })
    .await;
}
