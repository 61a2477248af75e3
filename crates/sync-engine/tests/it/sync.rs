//! The sync in both directions: first link, nightly deltas, expiry by time, revocation, organisation scoping, plan,
//! reconcile, the run lock.

use serde_json::json;
use sync_engine::{Error, PlanItem};
use sync_store::{AppStore, Direction, FailureState, RunStatus};

use super::{World, at, day, each, mentor_id};

#[tokio::test]
async fn first_sync_links_contacts_by_member_number_and_creates_none() {
    each(|db| async move {
        let w = World::new(&db).await;
        let a = w.contact("1001", json!({}));
        let b = w.contact("1002", json!({}));
        let stranger = w.contact("1003", json!({}));
        w.mentor("hlf", "1001", day(2027, 1, 31)).await;
        w.mentor("hlf", "1002", day(2026, 1, 31)).await;
        w.mentor("hlf", "1004", day(2027, 1, 31)).await; // no contact in Dynamics

        let report = w.service.run().await.unwrap();
        assert_eq!(report.status, RunStatus::Partial, "{report:?}");
        assert_eq!(
            w.sim.state().row_count("contacts"),
            Some(3),
            "the sync never creates contacts"
        );
        assert_eq!(w.row(a)["hlf_peermentorstatus"], 100000000);
        assert_eq!(w.row(a)["hlf_showonpublicsite"], true);
        assert_eq!(w.row(a)["hlf_certificationexpiry"], "2027-01-31");
        assert_eq!(w.row(b)["hlf_peermentorstatus"], 100000001);
        assert_eq!(w.row(b)["hlf_showonpublicsite"], false);
        let before = w.row(stranger);
        assert_eq!(w.row(stranger), before);
        assert!(w.row(a)["hlf_appsyncedon"].is_string());

        let snapshot = w
            .store
            .mentors("hlf", &[mentor_id("hlf", "1001")])
            .await
            .unwrap()
            .remove(0);
        assert_eq!(snapshot.mentor.dynamics_contact_id, Some(a));

        let failed = w.store.failures("hlf", FailureState::Retrying).await.unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].record_key, mentor_id("hlf", "1004"));
        assert!(
            failed[0]
                .error
                .contains("no contact in Dynamics has the mentor's member number"),
            "{}",
            failed[0].error
        );
        assert!(
            !failed[0].error.contains("1004"),
            "member numbers stay out of reasons (they are logged)"
        );
        let notes = w.store.notifications("hlf", 10).await.unwrap();
        assert_eq!(notes.len(), 1, "the coordinator is told once");
        assert!(notes[0].subject.contains("1004") && notes[0].recipient == "koordinator@hlf.example");

        // The second run finds nothing new to write and links nothing twice.
        let again = w.service.run().await.unwrap();
        assert_eq!(again.metrics.push.written, 0, "{again:?}");
        assert_eq!(w.sim.state().row_count("contacts"), Some(3));
        assert_eq!(
            w.store.notifications("hlf", 10).await.unwrap().len(),
            1,
            "no second notification"
        );
        db
    })
    .await;
}

#[tokio::test]
async fn a_certification_expiring_at_2359_is_suppressed_by_the_next_nightly_run() {
    each(|db| async move {
        let w = World::new(&db).await;
        let id = w.contact("2001", json!({}));
        w.mentor("hlf", "2001", day(2026, 3, 28)).await;
        // 23:59 in Oslo on the 28th (UTC+1): still valid on its last day.
        w.clock.set(at("2026-03-28T22:59:00Z"));
        w.service.run().await.unwrap();
        assert_eq!(w.row(id)["hlf_showonpublicsite"], true);
        // The nightly run at 02:00 local on the 29th (the night summer time starts): expired, and nothing in the
        // app changed.
        w.clock.set(at("2026-03-29T00:00:00Z"));
        let report = w.service.run().await.unwrap();
        assert_eq!(report.metrics.push.written, 1, "{report:?}");
        assert_eq!(w.row(id)["hlf_showonpublicsite"], false);
        assert_eq!(w.row(id)["hlf_peermentorstatus"], 100000001);
        let cached = w
            .service
            .certification_status(&mentor_id("hlf", "2001"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (cached.status.as_str(), cached.show_on_public_site, cached.stale),
            ("expired", false, false)
        );
        db
    })
    .await;
}

#[tokio::test]
async fn a_revocation_is_pushed_on_the_next_run() {
    each(|db| async move {
        let w = World::new(&db).await;
        let id = w.contact("3001", json!({}));
        w.mentor("hlf", "3001", day(2027, 6, 30)).await;
        w.service.run().await.unwrap();
        assert_eq!(w.row(id)["hlf_peermentorstatus"], 100000000);
        super::revoke(&w.store, "3001", at("2026-06-01T08:00:00Z")).await;
        w.clock.set(at("2026-06-02T00:00:00Z"));
        w.service.run().await.unwrap();
        assert_eq!(w.row(id)["hlf_peermentorstatus"], 100000002);
        assert_eq!(w.row(id)["hlf_showonpublicsite"], false);
        db
    })
    .await;
}

#[tokio::test]
async fn membership_and_contact_changes_in_dynamics_reach_the_app() {
    each(|db| async move {
        let w = World::new(&db).await;
        let id = w.contact("4001", json!({}));
        w.mentor("hlf", "4001", day(2027, 6, 30)).await;
        w.service.run().await.unwrap();
        w.sim
            .state()
            .update(
                "contacts",
                id,
                json!({ "firstname": "Åse", "hlf_membershipstatus": 100000001, "hlf_paiduntil": "2027-12-31" }),
            )
            .unwrap();
        let report = w.service.run().await.unwrap();
        assert_eq!(report.metrics.pull.written, 1, "{report:?}");
        let snapshot = w
            .store
            .mentors("hlf", &[mentor_id("hlf", "4001")])
            .await
            .unwrap()
            .remove(0);
        assert_eq!(snapshot.mentor.given_name.as_deref(), Some("Åse"));
        let membership = snapshot.membership.unwrap();
        assert_eq!(membership.status.as_deref(), Some("lapsed"));
        assert_eq!(membership.paid_until, Some(day(2027, 12, 31)));
        assert_eq!(
            snapshot.mentor.updated_at,
            at("2026-05-01T10:00:00Z"),
            "sync writes never bump updated_at"
        );
        db
    })
    .await;
}

#[tokio::test]
async fn a_deleted_contact_ends_the_membership_and_keeps_the_app_row() {
    each(|db| async move {
        let w = World::new(&db).await;
        let id = w.contact("4501", json!({}));
        w.mentor("hlf", "4501", day(2027, 6, 30)).await;
        w.service.run().await.unwrap();
        w.sim.state().delete("contacts", id).unwrap();
        w.service.run().await.unwrap();
        let snapshot = w
            .store
            .mentors("hlf", &[mentor_id("hlf", "4501")])
            .await
            .unwrap()
            .remove(0);
        assert_eq!(snapshot.mentor.dynamics_contact_id, None);
        assert_eq!(snapshot.membership.unwrap().status.as_deref(), Some("ended"));
        db
    })
    .await;
}

#[tokio::test]
async fn mentors_of_another_organisation_never_reach_hlfs_dynamics() {
    each(|db| async move {
        let w = World::new(&db).await;
        let id = w.contact("5001", json!({}));
        // Another organisation's mentor with the same member number, certified: must not touch HLF's contact.
        w.mentor("other", "5001", day(2027, 6, 30)).await;
        let before = w.row(id);
        let report = w.service.run().await.unwrap();
        assert_eq!(report.metrics.push.written, 0, "{report:?}");
        assert_eq!(w.row(id), before);
        assert!(
            w.store
                .links("hlf", "mentor", &[mentor_id("other", "5001")])
                .await
                .unwrap()
                .is_empty()
        );
        db
    })
    .await;
}

#[tokio::test]
async fn plan_lists_every_change_and_writes_nothing() {
    each(|db| async move {
        let w = World::new(&db).await;
        let id = w.contact("6001", json!({ "firstname": "Per" }));
        w.mentor("hlf", "6001", day(2027, 6, 30)).await;
        let before = w.row(id);
        let plan = w.service.plan().await.unwrap();
        assert_eq!(plan.dynamics_writes(), 1, "{plan}");
        assert_eq!(plan.app_writes(), 1, "{plan}");
        assert!(plan.items.iter().any(|i| matches!(i, PlanItem::WriteApp { changes, .. } if changes.contains(&("given_name".to_owned(), "Per".to_owned())))));
        // Printed, it names fields, member numbers and app ids; the values (personal data) only on request.
        let shown = plan.to_string();
        assert!(shown.contains("given_name") && !shown.contains("Per"), "{shown}");
        assert!(shown.contains("Dynamics contact of member 6001"), "{shown}");
        assert!(plan.clone().with_values().to_string().contains("given_name = Per"));
        assert_eq!(w.row(id), before, "nothing written to Dynamics");
        let snapshot = w.store.mentors("hlf", &[mentor_id("hlf", "6001")]).await.unwrap().remove(0);
        assert_eq!(snapshot.mentor.given_name.as_deref(), Some("Kari"), "nothing written to the app");
        assert!(w.store.links("hlf", "mentor", &[mentor_id("hlf", "6001")]).await.unwrap().is_empty());
        assert!(w.store.recent_runs("hlf", 10).await.unwrap().is_empty());
        assert_eq!(w.store.watermark("hlf", Direction::Pull, "contact").await.unwrap().delta_link, None);
        db
    })
    .await;
}

#[tokio::test]
async fn reconcile_finds_an_injected_divergence() {
    each(|db| async move {
        let w = World::new(&db).await;
        let id = w.contact("7001", json!({}));
        w.contact("7002", json!({}));
        w.mentor("hlf", "7001", day(2027, 6, 30)).await;
        w.mentor("hlf", "7002", day(2027, 6, 30)).await;
        w.service.run().await.unwrap();
        let clean = w.service.reconcile().await.unwrap();
        assert_eq!(
            (clean.divergence.records_compared, clean.divergence.records_differing),
            (2, 0),
            "{clean:?}"
        );
        // Someone edits an app-owned column by hand in Dynamics.
        w.sim
            .state()
            .update("contacts", id, json!({ "hlf_showonpublicsite": false }))
            .unwrap();
        w.clock.advance(chrono::Duration::minutes(5));
        let report = w.service.reconcile().await.unwrap();
        assert_eq!(report.divergence.records_differing, 1, "{report:?}");
        assert_eq!(report.divergence.fields_differing, 1);
        assert_eq!(report.differences[0].field, "show_on_public_site");
        let runs = w.store.recent_runs("hlf", 1).await.unwrap();
        assert_eq!(runs[0].metrics.divergence, Some(report.divergence));
        // The next sync puts the app's value back.
        w.service.run().await.unwrap();
        assert_eq!(w.row(id)["hlf_showonpublicsite"], true);
        db
    })
    .await;
}

#[tokio::test]
async fn a_second_run_for_the_same_organisation_is_refused_while_one_holds_the_lock() {
    each(|db| async move {
        let w = World::new(&db).await;
        let lock = w
            .store
            .try_lock(
                "hlf",
                "another-worker",
                std::time::Duration::from_secs(60),
                sync_engine::Clock::now(w.clock.as_ref()),
            )
            .await
            .unwrap()
            .unwrap();
        match w.service.run().await {
            Err(Error::AlreadyRunning { organisation, .. }) => assert_eq!(organisation, "hlf"),
            other => panic!("expected AlreadyRunning, got {other:?}"),
        }
        lock.release().await.unwrap();
        w.service.run().await.unwrap();
        db
    })
    .await;
}

#[tokio::test]
async fn a_delta_with_nothing_changed_makes_a_constant_handful_of_requests() {
    each(|db| async move {
        let w = World::new(&db).await;
        for n in 0..25 {
            let member = format!("16{n:03}");
            w.contact(&member, json!({}));
            w.mentor("hlf", &member, day(2027, 6, 30)).await;
        }
        w.service.run().await.unwrap();
        w.clock.advance(chrono::Duration::days(1));
        let quiet = w.service.run().await.unwrap();
        // Metadata (definition, attributes, two kinds of choice column) and one delta page.
        assert!(quiet.metrics.requests <= 5, "{:?}", quiet.metrics);
        assert_eq!(quiet.metrics.push.written + quiet.metrics.pull.written, 0);
        let cached = w
            .service
            .certification_status(&mentor_id("hlf", "16000"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            cached.as_of,
            sync_engine::Clock::now(w.clock.as_ref()),
            "the cache is confirmed by the run"
        );
        db
    })
    .await;
}

#[tokio::test]
async fn with_an_entity_filter_the_pull_tracks_changes_and_asks_dynamics_which_rows_match() {
    each(|db| async move {
        let filter = "[organisations.filters]\ncontact = \"hlf_membernumber ne null\"\n";
        let w = World::with_organisation(&db, super::DEFAULT_CONFIG, None, filter).await;
        let id = w.contact("17001", json!({}));
        w.mentor("hlf", "17001", day(2027, 6, 30)).await;
        w.service.run().await.unwrap();
        assert_eq!(w.row(id)["hlf_peermentorstatus"], 100000000);
        let mark = w.store.watermark("hlf", Direction::Pull, "contact").await.unwrap();
        assert!(
            mark.delta_link.is_some(),
            "change tracking is used with a filter too: {mark:?}"
        );

        w.sim
            .state()
            .update("contacts", id, json!({ "firstname": "Filtrert" }))
            .unwrap();
        // A contact no mentor has changes too: it costs no filter question.
        let stranger = w.contact("17999", json!({}));
        w.sim
            .state()
            .update("contacts", stranger, json!({ "firstname": "Ukjent" }))
            .unwrap();
        let report = w.service.run().await.unwrap();
        assert_eq!(report.metrics.pull.written, 1, "{report:?}");
        // Metadata (definition, attributes, two kinds of choice column), one delta page, one filter question.
        assert!(report.metrics.requests <= 6, "{report:?}");
        let snapshot = w
            .store
            .mentors("hlf", &[mentor_id("hlf", "17001")])
            .await
            .unwrap()
            .remove(0);
        assert_eq!(snapshot.mentor.given_name.as_deref(), Some("Filtrert"));
        db
    })
    .await;
}

#[tokio::test]
async fn without_change_tracking_a_contact_that_leaves_the_filter_leaves_the_sync() {
    each(|db| async move {
        let config = format!("{}[sync]\nchange_tracking = false\n", super::DEFAULT_CONFIG);
        let filter = "[organisations.filters]\ncontact = \"statecode eq 0\"\n";
        let w = World::with_organisation(&db, &config, None, filter).await;
        let id = w.contact("17101", json!({}));
        w.mentor("hlf", "17101", day(2027, 6, 30)).await;
        w.service.run().await.unwrap();
        let mark = w.store.watermark("hlf", Direction::Pull, "contact").await.unwrap();
        assert!(mark.at.is_some() && mark.delta_link.is_none(), "{mark:?}");
        assert_eq!(w.row(id)["hlf_showonpublicsite"], true);
        w.sim
            .state()
            .update("contacts", id, json!({ "statecode": 1, "statuscode": 2 }))
            .unwrap();
        let report = w.service.run().await.unwrap();
        // The mentor is left without a contact within the filter: queued, not a failed run.
        assert_eq!(report.status, RunStatus::Partial, "{report:?}");
        let snapshot = w
            .store
            .mentors("hlf", &[mentor_id("hlf", "17101")])
            .await
            .unwrap()
            .remove(0);
        assert_eq!(snapshot.mentor.dynamics_contact_id, None);
        assert_eq!(snapshot.membership.unwrap().status.as_deref(), Some("ended"));
        assert_eq!(w.row(id)["hlf_showonpublicsite"], false);
        db
    })
    .await;
}
