//! The ordinary events of a year in production, each of which must converge by the next run without stopping it:
//! a member number moving to another mentor, a mentor leaving the app, a contact deleted or deactivated in Dynamics
//! (with and without an entity filter), newest-wins between edits of one field, a held conflict both sides settle
//! themselves, a worker killed between a write and its bookkeeping, an app edit racing the pull, a row that does
//! not decode, a member renumbered in Dynamics, and a run lock kept through every phase.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use field_mapping::HLF_DEFAULT_MAPPING;
use serde_json::json;
use sync_store::testing::TestDatabase;
use sync_store::{AppStore, Certification, ConflictState, Direction, FailureState, Link, Mentor, RunStatus, Store};

use super::{DEFAULT_CONFIG, Hooked, World, at, day, each, mentor_id, shared_phone_mapping};

/// The default mapping with `phone` shared between the two sides.
fn strategy_config(strategy: &str) -> String {
    format!("{DEFAULT_CONFIG}[conflicts]\ndefault = \"{strategy}\"\n")
}

impl World {
    /// Adds a mentor with an explicit app id.
    async fn mentor_as(&self, id: &str, member: &str, expires: chrono::NaiveDate) {
        self.store
            .upsert_mentor(&Mentor {
                id: id.to_owned(),
                organisation_id: "hlf".to_owned(),
                member_number: Some(member.to_owned()),
                given_name: Some("Ola".into()),
                family_name: Some(format!("Mentor {member}")),
                email: Some(format!("n{member}@example.org")),
                phone: None,
                coordinator_email: Some("koordinator@hlf.example".into()),
                dynamics_contact_id: None,
                updated_at: at("2026-05-20T10:00:00Z"),
            })
            .await
            .unwrap();
        self.store
            .upsert_certification(&Certification {
                id: format!("c-{id}"),
                mentor_id: id.to_owned(),
                kind: "likeperson".into(),
                issued_on: day(2024, 1, 1),
                expires_on: expires,
                revoked_at: None,
                updated_at: at("2026-05-20T10:00:00Z"),
            })
            .await
            .unwrap();
    }

    async fn snapshot(&self, id: &str) -> sync_store::MentorSnapshot {
        self.store.mentors("hlf", &[id.to_owned()]).await.unwrap().remove(0)
    }

    async fn link(&self, id: &str) -> Option<Link> {
        self.store
            .links("hlf", "mentor", &[id.to_owned()])
            .await
            .unwrap()
            .into_iter()
            .next()
    }

    async fn failing(&self) -> Vec<sync_store::FailedRecord> {
        let mut all = self.store.failures("hlf", FailureState::Retrying).await.unwrap();
        all.extend(self.store.failures("hlf", FailureState::Dead).await.unwrap());
        all
    }

    /// The app edits a mentor (its own write, so `updated_at` moves).
    async fn edit(&self, id: &str, when: DateTime<Utc>, change: impl FnOnce(&mut Mentor)) {
        edit(&self.store, id, when, change).await;
    }

    /// Runs, and checks the run did not fail as a whole.
    async fn run_ok(&self) -> sync_engine::RunReport {
        let report = self.service.run().await.unwrap();
        assert_ne!(report.status, RunStatus::Failed, "{report:?}");
        report
    }
}

async fn edit(store: &Store, id: &str, when: DateTime<Utc>, change: impl FnOnce(&mut Mentor)) {
    let mut mentor = store.mentors("hlf", &[id.to_owned()]).await.unwrap().remove(0).mentor;
    change(&mut mentor);
    mentor.updated_at = when;
    store.upsert_mentor(&mentor).await.unwrap();
}

#[track_caller]
fn assert_hidden(row: &serde_json::Value) {
    assert_eq!(row["hlf_showonpublicsite"], false, "shown on the public site: {row}");
    assert_eq!(
        row["hlf_peermentorstatus"], 100000003,
        "still a mentor in Dynamics: {row}"
    );
}

// ----- a member number moves -----

#[tokio::test]
async fn a_member_number_moved_to_another_mentor_relinks_the_contact_and_ends_the_old_link() {
    each(|db| async move {
        let w = World::new(&db).await;
        let x = w.contact("7101", json!({}));
        let y = w.contact("7102", json!({}));
        w.mentor("hlf", "7101", day(2027, 6, 30)).await;
        w.run_ok().await;
        assert_eq!(w.row(x)["hlf_showonpublicsite"], true);
        // Mentor A's member number is corrected to 7102; mentor B registers with A's old number.
        let a = mentor_id("hlf", "7101");
        w.edit(&a, at("2026-06-01T08:00:00Z"), |m| {
            m.member_number = Some("7102".into())
        })
        .await;
        w.mentor_as("hlf-b", "7101", day(2028, 1, 31)).await;
        w.clock.set(at("2026-06-02T00:30:00Z"));
        let report = w.run_ok().await;
        assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
        assert_eq!(
            w.link("hlf-b").await.unwrap().dynamics_id,
            x,
            "B takes the contact with 7101"
        );
        assert_eq!(
            w.link(&a).await.unwrap().dynamics_id,
            y,
            "A moves to the contact with 7102"
        );
        assert_eq!(w.row(x)["hlf_certificationexpiry"], "2028-01-31");
        assert_eq!(w.row(y)["hlf_certificationexpiry"], "2027-06-30");
        assert_eq!(w.row(x)["hlf_showonpublicsite"], true);
        assert_eq!(w.row(y)["hlf_showonpublicsite"], true);
        assert_eq!(w.snapshot("hlf-b").await.mentor.dynamics_contact_id, Some(x));
        assert_eq!(w.snapshot(&a).await.mentor.dynamics_contact_id, Some(y));
        assert!(w.failing().await.is_empty());
        // And it stays so.
        let report = w.run_ok().await;
        assert_eq!(
            report.metrics.push.written + report.metrics.pull.written,
            0,
            "{report:?}"
        );
        db
    })
    .await;
}

#[tokio::test]
async fn a_contact_nobody_claims_after_a_renumbering_is_hidden_and_the_mentor_queued() {
    each(|db| async move {
        let w = World::new(&db).await;
        let x = w.contact("7111", json!({}));
        w.mentor("hlf", "7111", day(2027, 6, 30)).await;
        w.run_ok().await;
        let a = mentor_id("hlf", "7111");
        // The app gives A a number no contact has, and nobody takes 7111.
        w.edit(&a, at("2026-06-01T08:00:00Z"), |m| {
            m.member_number = Some("7199".into())
        })
        .await;
        let report = w.run_ok().await;
        assert_eq!(report.status, RunStatus::Partial, "{report:?}");
        assert_hidden(&w.row(x));
        assert!(w.link(&a).await.is_none());
        let failing = w.failing().await;
        assert_eq!(failing.len(), 1, "{failing:?}");
        assert!(failing[0].error.contains("no contact"), "{}", failing[0].error);
        assert!(
            !failing[0].error.contains("7199"),
            "no member number in the reason: {}",
            failing[0].error
        );
        db
    })
    .await;
}

// ----- a mentor leaves the app -----

#[tokio::test]
async fn a_mentor_removed_from_the_app_is_hidden_even_after_a_dynamics_edit() {
    each(|db| async move {
        let w = World::new(&db).await;
        let x = w.contact("7201", json!({}));
        w.mentor("hlf", "7201", day(2026, 6, 30)).await;
        w.run_ok().await;
        assert_eq!(w.row(x)["hlf_showonpublicsite"], true);
        // The mentor leaves the app; then HLF staff edit the contact (a new etag) before the certification expires.
        w.store.delete_mentor("hlf", &mentor_id("hlf", "7201")).await.unwrap();
        w.sim
            .state()
            .update("contacts", x, json!({ "firstname": "Endret" }))
            .unwrap();
        w.clock.set(at("2026-06-02T00:30:00Z"));
        let report = w.run_ok().await;
        assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
        assert_hidden(&w.row(x));
        assert_eq!(
            w.row(x)["firstname"],
            "Endret",
            "nothing but the app-owned columns is written"
        );
        assert!(w.link(&mentor_id("hlf", "7201")).await.is_none());
        assert!(w.failing().await.is_empty());
        // Past the expiry and with more edits in Dynamics, it stays hidden and nothing is written again.
        w.sim
            .state()
            .update("contacts", x, json!({ "lastname": "Igjen" }))
            .unwrap();
        w.clock.set(at("2026-07-02T00:30:00Z"));
        let report = w.run_ok().await;
        assert_eq!(report.metrics.push.written, 0, "{report:?}");
        assert_hidden(&w.row(x));
        db
    })
    .await;
}

#[tokio::test]
async fn a_contact_deleted_in_dynamics_after_its_mentor_left_the_app_unlinks_and_the_run_goes_on() {
    each(|db| async move {
        let w = World::new(&db).await;
        let x = w.contact("7301", json!({}));
        let z = w.contact("7302", json!({}));
        w.mentor("hlf", "7301", day(2027, 6, 30)).await;
        w.mentor("hlf", "7302", day(2027, 6, 30)).await;
        w.run_ok().await;
        w.store.delete_mentor("hlf", &mentor_id("hlf", "7301")).await.unwrap();
        w.sim.state().delete("contacts", x).unwrap();
        super::revoke(&w.store, "7302", at("2026-06-01T09:00:00Z")).await;
        w.clock.set(at("2026-06-02T00:30:00Z"));
        let report = w.run_ok().await;
        assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
        assert!(w.link(&mentor_id("hlf", "7301")).await.is_none());
        assert_eq!(w.row(z)["hlf_peermentorstatus"], 100000002, "the push still ran");
        assert_eq!(w.row(z)["hlf_showonpublicsite"], false);
        assert!(w.failing().await.is_empty());
        db
    })
    .await;
}

// ----- a contact is deactivated or deleted in Dynamics -----

async fn deactivated_and_deleted(filter: &'static str) {
    each(|db| async move {
        let w = World::with_organisation(&db, DEFAULT_CONFIG, None, filter).await;
        let x = w.contact("7401", json!({}));
        let z = w.contact("7402", json!({}));
        w.mentor("hlf", "7401", day(2027, 6, 30)).await;
        w.mentor("hlf", "7402", day(2027, 6, 30)).await;
        w.run_ok().await;
        let (a, d) = (mentor_id("hlf", "7401"), mentor_id("hlf", "7402"));
        assert_eq!(w.snapshot(&a).await.mentor.dynamics_contact_id, Some(x));
        // HLF staff deactivate one contact and delete the other.
        w.sim
            .state()
            .update("contacts", x, json!({ "statecode": 1, "statuscode": 2 }))
            .unwrap();
        w.sim.state().delete("contacts", z).unwrap();
        w.clock.set(at("2026-06-02T00:30:00Z"));
        let report = w.run_ok().await;
        let a_now = w.snapshot(&a).await;
        let membership = a_now.membership.unwrap();
        assert_eq!(
            membership.status.as_deref(),
            Some("ended"),
            "deactivation ends the membership"
        );
        assert_eq!(membership.contact_state.as_deref(), Some("inactive"));
        assert_eq!(a_now.mentor.dynamics_contact_id, None);
        assert_hidden(&w.row(x));
        let d_now = w.snapshot(&d).await;
        assert_eq!(
            d_now.membership.unwrap().status.as_deref(),
            Some("ended"),
            "deletion ends the membership"
        );
        assert_eq!(d_now.mentor.dynamics_contact_id, None);
        // Both mentors are left without a contact: they are queued, once, and their coordinator told.
        assert_eq!(report.status, RunStatus::Partial, "{report:?}");
        let failing = w.failing().await;
        assert_eq!(failing.len(), 2, "{failing:?}");
        assert!(failing.iter().all(|f| f.attempts == 1), "{failing:?}");
        let reasons: Vec<&str> = failing.iter().map(|f| f.error.as_str()).collect();
        assert!(reasons.iter().any(|r| r.contains("no contact")), "{reasons:?}");
        // A quiet night: nothing written, each tried once more.
        let report = w.run_ok().await;
        assert_eq!(
            report.metrics.push.written + report.metrics.pull.written,
            0,
            "{report:?}"
        );
        assert!(w.failing().await.iter().all(|f| f.attempts == 2));
        // The contact is reactivated: the mentor is linked again and the membership flows back.
        w.sim
            .state()
            .update("contacts", x, json!({ "statecode": 0, "statuscode": 1 }))
            .unwrap();
        w.run_ok().await;
        let a_now = w.snapshot(&a).await;
        assert_eq!(a_now.mentor.dynamics_contact_id, Some(x));
        assert_eq!(a_now.membership.unwrap().status.as_deref(), Some("active"));
        assert_eq!(w.row(x)["hlf_showonpublicsite"], true);
        let failing = w.failing().await;
        assert_eq!(
            failing.len(),
            1,
            "only the mentor whose contact was deleted still waits: {failing:?}"
        );
        assert_eq!(failing[0].record_key, d);
        db
    })
    .await;
}

#[tokio::test]
async fn a_deactivated_or_deleted_contact_ends_the_membership_without_a_filter() {
    deactivated_and_deleted("").await;
}

#[tokio::test]
async fn a_deactivated_or_deleted_contact_ends_the_membership_with_a_state_filter() {
    deactivated_and_deleted("[organisations.filters]\ncontact = \"statecode eq 0\"\n").await;
}

/// Found by the fault soak: a contact deleted while the worker could not follow the delta (the token expired during a
/// long outage) is not in the full read that follows, and no delta ever reports it. The full read checks the links
/// it did not see.
#[tokio::test]
async fn a_contact_deleted_while_the_delta_token_expired_is_found_by_the_full_resync() {
    each(|db| async move {
        let w = World::with_organisation(
            &db,
            DEFAULT_CONFIG,
            None,
            "[organisations.filters]\ncontact = \"statecode eq 0\"\n",
        )
        .await;
        let z = w.contact("7411", json!({}));
        let kept = w.contact("7412", json!({}));
        w.mentor("hlf", "7411", day(2027, 6, 30)).await;
        w.mentor("hlf", "7412", day(2027, 6, 30)).await;
        w.run_ok().await;
        let (d, k) = (mentor_id("hlf", "7411"), mentor_id("hlf", "7412"));
        assert!(w.link(&d).await.is_some());
        // The contact is deleted, and the worker does not run until Dynamics has forgotten its delta token.
        w.sim.state().delete("contacts", z).unwrap();
        w.sim.faults().expire_delta_tokens();
        w.clock.set(at("2026-06-12T00:30:00Z"));
        let report = w.run_ok().await;
        assert_eq!(report.metrics.full_resyncs, 1, "{report:?}");
        assert!(w.link(&d).await.is_none(), "the link to the deleted contact ends");
        let d_now = w.snapshot(&d).await;
        assert_eq!(d_now.mentor.dynamics_contact_id, None);
        assert_eq!(d_now.membership.unwrap().status.as_deref(), Some("ended"));
        assert!(
            w.failing().await.iter().any(|f| f.record_key == d),
            "the mentor waits for a contact"
        );
        assert_eq!(w.link(&k).await.unwrap().dynamics_id, kept, "the other link stands");
        db
    })
    .await;
}

// ----- newest-wins compares the edits of the field -----

#[tokio::test]
async fn newest_wins_compares_the_edits_of_the_field_not_the_mentors_newest_change() {
    each(|db| async move {
        let w = World::with_config(&db, &strategy_config("newest-wins"), Some(&shared_phone_mapping())).await;
        let x = w.contact("7501", json!({ "mobilephone": "1" }));
        w.mentor("hlf", "7501", day(2027, 6, 30)).await;
        let a = mentor_id("hlf", "7501");
        w.edit(&a, at("2026-05-01T10:00:00Z"), |m| m.phone = Some("1".into()))
            .await;
        w.run_ok().await;
        // The emulator stamps Dynamics' edits with the real time: the app's phone edit comes an hour before it, a
        // certification renewal an hour after.
        let now = Utc::now();
        w.edit(&a, now - chrono::Duration::hours(1), |m| m.phone = Some("app".into()))
            .await;
        w.sim
            .state()
            .update("contacts", x, json!({ "mobilephone": "dyn" }))
            .unwrap();
        let mut certification = w.snapshot(&a).await.certifications.remove(0);
        certification.expires_on = day(2028, 6, 30);
        certification.updated_at = now + chrono::Duration::hours(1);
        w.store.upsert_certification(&certification).await.unwrap();
        w.run_ok().await;
        assert_eq!(w.row(x)["mobilephone"], "dyn", "Dynamics' later edit of the phone wins");
        assert_eq!(w.snapshot(&a).await.mentor.phone.as_deref(), Some("dyn"));
        assert_eq!(
            w.row(x)["hlf_certificationexpiry"],
            "2028-06-30",
            "the renewal is pushed"
        );
        db
    })
    .await;
}

// ----- a held conflict both sides settle themselves -----

#[tokio::test]
async fn a_held_conflict_follows_both_sides_and_closes_when_they_agree() {
    each(|db| async move {
        let w = World::with_config(&db, &strategy_config("manual"), Some(&shared_phone_mapping())).await;
        let x = w.contact("7601", json!({ "mobilephone": "1" }));
        w.mentor("hlf", "7601", day(2027, 6, 30)).await;
        let a = mentor_id("hlf", "7601");
        w.edit(&a, at("2026-05-01T10:00:00Z"), |m| m.phone = Some("1".into()))
            .await;
        w.run_ok().await;
        w.edit(&a, Utc::now(), |m| m.phone = Some("app".into())).await;
        w.sim
            .state()
            .update("contacts", x, json!({ "mobilephone": "dyn" }))
            .unwrap();
        w.run_ok().await;
        let held = w.store.pending_conflicts("hlf").await.unwrap();
        assert_eq!(held.len(), 1, "{held:?}");
        // Dynamics changes it again: the held conflict shows the current value.
        w.sim
            .state()
            .update("contacts", x, json!({ "mobilephone": "dyn2" }))
            .unwrap();
        w.run_ok().await;
        let held = w.store.pending_conflicts("hlf").await.unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].dynamics_value, field_mapping::AppValue::Text("dyn2".into()));
        assert_eq!(held[0].app_value, field_mapping::AppValue::Text("app".into()));
        // The coordinator agrees in the app: the conflict closes by itself.
        w.edit(&a, Utc::now(), |m| m.phone = Some("dyn2".into())).await;
        w.run_ok().await;
        assert!(w.store.pending_conflicts("hlf").await.unwrap().is_empty());
        assert_eq!(
            w.store.conflict(&held[0].id).await.unwrap().unwrap().state,
            ConflictState::Settled
        );
        // Later edits flow again.
        w.sim
            .state()
            .update("contacts", x, json!({ "mobilephone": "later" }))
            .unwrap();
        w.run_ok().await;
        assert_eq!(w.snapshot(&a).await.mentor.phone.as_deref(), Some("later"));
        db
    })
    .await;
}

// ----- a worker killed between a write and its bookkeeping -----

#[tokio::test]
async fn a_write_that_landed_before_the_worker_died_is_no_conflict_and_no_later_edit_is_lost() {
    each(|db| async move {
        let armed = Arc::new(AtomicBool::new(false));
        let hooked = std::sync::Mutex::new(None);
        let w = World::with_app(
            &db,
            &strategy_config("app-wins"),
            Some(&shared_phone_mapping()),
            "",
            |store| {
                let app = Hooked::new(store);
                *hooked.lock().unwrap() = Some(app.clone());
                Arc::new(app)
            },
        )
        .await;
        let app = hooked.lock().unwrap().take().unwrap();
        let x = w.contact("7701", json!({ "mobilephone": "1" }));
        w.mentor("hlf", "7701", day(2027, 6, 30)).await;
        let a = mentor_id("hlf", "7701");
        w.edit(&a, at("2026-05-01T10:00:00Z"), |m| m.phone = Some("1".into()))
            .await;
        w.run_ok().await;
        // The app changes the phone; the push's write reaches Dynamics, but its answer never comes back and the
        // worker is killed before it records anything.
        w.edit(&a, at("2026-06-01T09:00:00Z"), |m| m.phone = Some("a".into()))
            .await;
        let (faults, flag) = (w.sim.faults(), armed.clone());
        faults.set_hang_duration(Duration::from_secs(60));
        app.on(
            "changed_mentors",
            Box::new(move || {
                if !flag.swap(true, Ordering::SeqCst) {
                    faults.answer_late_next(1);
                }
                Box::pin(async {})
            }),
        );
        w.clock.set(at("2026-06-01T10:00:00Z"));
        let service = w.service.clone();
        let run = tokio::spawn(async move { service.run().await });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while w.row(x)["mobilephone"] != "a" && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        run.abort();
        let _ = run.await;
        app.clear();
        w.sim.faults().clear();
        assert_eq!(w.row(x)["mobilephone"], "a", "the write landed");
        // Then HLF staff change the phone in Dynamics.
        w.sim
            .state()
            .update("contacts", x, json!({ "mobilephone": "d" }))
            .unwrap();
        // The killed worker's SQLite lease runs its course; on PostgreSQL its session ends when its connection has
        // closed, which the pool does in the background, so the next run may find the lock held for a moment.
        w.clock.set(at("2026-06-01T11:00:00Z"));
        let report = w.run_after_kill().await;
        assert_ne!(report.status, RunStatus::Failed, "{report:?}");
        assert_eq!(
            report.metrics.pull.conflicts + report.metrics.push.conflicts,
            0,
            "the landed write is no conflict: {report:?}"
        );
        assert_eq!(
            w.row(x)["mobilephone"],
            "d",
            "the later Dynamics edit is not overwritten"
        );
        assert_eq!(w.snapshot(&a).await.mentor.phone.as_deref(), Some("d"));
        assert!(w.link(&a).await.unwrap().pending.is_none());
        db
    })
    .await;
}

// ----- an app edit racing the pull -----

#[tokio::test]
async fn an_app_edit_between_the_pulls_read_and_its_write_is_not_overwritten() {
    each(|db| async move {
        let hooked = std::sync::Mutex::new(None);
        let w = World::with_app(
            &db,
            &strategy_config("app-wins"),
            Some(&shared_phone_mapping()),
            "",
            |store| {
                let app = Hooked::new(store);
                *hooked.lock().unwrap() = Some(app.clone());
                Arc::new(app)
            },
        )
        .await;
        let app = hooked.lock().unwrap().take().unwrap();
        let x = w.contact("7801", json!({ "mobilephone": "1" }));
        w.mentor("hlf", "7801", day(2027, 6, 30)).await;
        let a = mentor_id("hlf", "7801");
        w.edit(&a, at("2026-05-01T10:00:00Z"), |m| m.phone = Some("1".into()))
            .await;
        w.run_ok().await;
        w.sim
            .state()
            .update("contacts", x, json!({ "mobilephone": "d" }))
            .unwrap();
        // A coordinator saves the phone in the app just as the pull writes Dynamics' value.
        let (store, fired) = (w.store.clone(), Arc::new(AtomicBool::new(false)));
        app.on(
            "apply_pull",
            Box::new(move || {
                let (store, fired) = (store.clone(), fired.clone());
                Box::pin(async move {
                    if !fired.swap(true, Ordering::SeqCst) {
                        edit(&store, "hlf-7801", at("2026-06-01T08:00:00Z"), |m| {
                            m.phone = Some("a".into())
                        })
                        .await;
                    }
                })
            }),
        );
        w.clock.set(at("2026-06-01T09:00:00Z"));
        let report = w.run_ok().await;
        app.clear();
        w.run_ok().await;
        assert_eq!(
            w.snapshot(&a).await.mentor.phone.as_deref(),
            Some("a"),
            "the app edit survives"
        );
        assert_eq!(
            w.row(x)["mobilephone"],
            "a",
            "and wins the conflict under app-wins: {report:?}"
        );
        db
    })
    .await;
}

#[tokio::test]
async fn an_app_edit_during_the_pull_does_not_lose_the_dynamics_change() {
    each(|db| async move {
        let hooked = std::sync::Mutex::new(None);
        let w = World::with_app(&db, DEFAULT_CONFIG, None, "", |store| {
            let app = Hooked::new(store);
            *hooked.lock().unwrap() = Some(app.clone());
            Arc::new(app)
        })
        .await;
        let app = hooked.lock().unwrap().take().unwrap();
        let x = w.contact("7851", json!({}));
        let y = w.contact("7852", json!({}));
        w.mentor("hlf", "7851", day(2027, 6, 30)).await;
        w.mentor("hlf", "7852", day(2027, 6, 30)).await;
        w.run_ok().await;
        // Dynamics extends one membership and deactivates the other contact; the app edits both mentors (a field
        // the mapping does not sync) just as the pull writes into them.
        w.sim
            .state()
            .update("contacts", x, json!({ "hlf_paiduntil": "2027-12-31" }))
            .unwrap();
        w.sim
            .state()
            .update("contacts", y, json!({ "statecode": 1, "statuscode": 2 }))
            .unwrap();
        let store = w.store.clone();
        app.on(
            "apply_pull",
            Box::new(move || {
                let store = store.clone();
                Box::pin(async move {
                    for id in ["hlf-7851", "hlf-7852"] {
                        let mentor = store.mentors("hlf", &[id.to_owned()]).await.unwrap().remove(0).mentor;
                        if mentor.coordinator_email.as_deref() != Some("ny@hlf.example") {
                            edit(&store, id, at("2026-06-01T08:00:00Z"), |m| {
                                m.coordinator_email = Some("ny@hlf.example".into());
                            })
                            .await;
                        }
                    }
                })
            }),
        );
        w.clock.set(at("2026-06-01T09:00:00Z"));
        w.run_ok().await;
        app.clear();
        let a = w.snapshot(&mentor_id("hlf", "7851")).await;
        assert_eq!(
            a.mentor.coordinator_email.as_deref(),
            Some("ny@hlf.example"),
            "the app edit is kept"
        );
        assert_eq!(
            a.membership.unwrap().paid_until,
            Some(day(2027, 12, 31)),
            "and the Dynamics change arrived in the same run"
        );
        let b = w.snapshot(&mentor_id("hlf", "7852")).await;
        assert_eq!(b.membership.unwrap().status.as_deref(), Some("ended"));
        assert_eq!(b.mentor.dynamics_contact_id, None);
        assert_hidden(&w.row(y));
        db
    })
    .await;
}

// ----- a row that does not decode -----

fn mapping_without_honorary() -> String {
    HLF_DEFAULT_MAPPING.replace(", honorary = 100000003 }", " }")
}

#[tokio::test]
async fn a_row_that_does_not_decode_counts_one_attempt_per_run_and_is_forgotten_when_the_mentor_leaves() {
    each(|db| async move {
        let w = World::with_config(&db, DEFAULT_CONFIG, Some(&mapping_without_honorary())).await;
        let x = w.contact("7901", json!({}));
        let ok = w.contact("7902", json!({}));
        w.mentor("hlf", "7901", day(2027, 6, 30)).await;
        w.mentor("hlf", "7902", day(2026, 6, 15)).await;
        w.run_ok().await;
        // Dynamics gives the member a membership type the mapping does not know.
        w.sim
            .state()
            .update("contacts", x, json!({ "hlf_membershiptype": 100000003 }))
            .unwrap();
        w.clock.set(at("2026-06-20T00:30:00Z"));
        let report = w.run_ok().await;
        assert_eq!(report.status, RunStatus::Partial, "{report:?}");
        let failing = w.failing().await;
        assert_eq!(failing.len(), 1, "{failing:?}");
        assert_eq!(failing[0].attempts, 1, "one attempt per run");
        assert!(failing[0].error.contains("membership_type"), "{}", failing[0].error);
        assert_eq!(
            w.row(ok)["hlf_showonpublicsite"],
            false,
            "the time rule ran for the others"
        );
        let report = w.run_ok().await;
        let failing = w.failing().await;
        assert_eq!(failing.len(), 1, "{report:?}");
        assert_eq!(failing[0].attempts, 2);
        // The mentor leaves the app: the failure goes with them and the contact is hidden.
        w.store.delete_mentor("hlf", &mentor_id("hlf", "7901")).await.unwrap();
        let report = w.run_ok().await;
        assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
        assert!(w.failing().await.is_empty());
        assert_hidden(&w.row(x));
        db
    })
    .await;
}

#[tokio::test]
async fn a_certification_expires_off_the_public_site_even_when_other_columns_cannot_be_read_or_written() {
    each(|db| async move {
        let w = World::with_config(&db, DEFAULT_CONFIG, Some(&mapping_without_honorary())).await;
        let x = w.contact("7961", json!({}));
        let y = w.contact("7963", json!({}));
        w.mentor("hlf", "7961", day(2026, 6, 15)).await;
        w.mentor("hlf", "7963", day(2026, 6, 15)).await;
        // Another mentor already has 7962.
        w.mentor("hlf", "7962", day(2027, 6, 30)).await;
        w.run_ok().await;
        assert_eq!(w.row(x)["hlf_showonpublicsite"], true);
        // One contact gets a membership type the mapping does not know; the other is renumbered in Dynamics to a
        // number the app refuses.
        w.sim
            .state()
            .update("contacts", x, json!({ "hlf_membershiptype": 100000003 }))
            .unwrap();
        w.sim
            .state()
            .update("contacts", y, json!({ "hlf_membernumber": "7962" }))
            .unwrap();
        // Then both certifications expire by time.
        w.clock.set(at("2026-06-20T00:30:00Z"));
        let report = w.run_ok().await;
        assert_eq!(report.status, RunStatus::Partial, "{report:?}");
        assert_eq!(
            w.row(x)["hlf_showonpublicsite"],
            false,
            "expired despite the unreadable column"
        );
        assert_eq!(w.row(x)["hlf_peermentorstatus"], 100000001);
        assert_eq!(
            w.row(y)["hlf_showonpublicsite"],
            false,
            "expired despite the refused number"
        );
        let failing = w.failing().await;
        assert!(
            failing.iter().any(|f| f.record_key == mentor_id("hlf", "7961")),
            "{failing:?}"
        );
        assert!(
            failing.iter().any(|f| f.record_key == mentor_id("hlf", "7963")),
            "{failing:?}"
        );
        // The successful writes did not clear those failures, and the next run counts one more attempt each.
        w.run_ok().await;
        let failing = w.failing().await;
        for id in ["7961", "7963"] {
            let failure = failing.iter().find(|f| f.record_key == mentor_id("hlf", id)).unwrap();
            assert_eq!(failure.attempts, 2, "{failure:?}");
        }
        db
    })
    .await;
}

#[tokio::test]
async fn a_dead_failure_of_a_mentor_who_left_the_app_is_forgotten() {
    each(|db| async move {
        let w = World::new(&db).await;
        w.mentor("hlf", "7971", day(2027, 6, 30)).await;
        let a = mentor_id("hlf", "7971");
        // No contact has the number: three runs make the record dead (record_max_attempts = 3).
        for _ in 0..3 {
            w.edit(&a, sync_engine::Clock::now(&*w.clock), |_| {}).await;
            w.run_ok().await;
            w.clock.advance(chrono::Duration::hours(1));
        }
        assert_eq!(w.store.failures("hlf", FailureState::Dead).await.unwrap().len(), 1);
        w.store.delete_mentor("hlf", &a).await.unwrap();
        w.run_ok().await;
        assert!(w.failing().await.is_empty());
        db
    })
    .await;
}

#[tokio::test]
async fn the_conflicts_of_a_mentor_who_leaves_the_app_are_forgotten() {
    each(|db| async move {
        let w = World::with_config(&db, &strategy_config("manual"), Some(&shared_phone_mapping())).await;
        let x = w.contact("7951", json!({ "mobilephone": "1" }));
        w.mentor("hlf", "7951", day(2027, 6, 30)).await;
        let a = mentor_id("hlf", "7951");
        w.edit(&a, at("2026-05-01T10:00:00Z"), |m| m.phone = Some("1".into()))
            .await;
        w.run_ok().await;
        w.edit(&a, Utc::now(), |m| m.phone = Some("app".into())).await;
        w.sim
            .state()
            .update("contacts", x, json!({ "mobilephone": "dyn" }))
            .unwrap();
        w.run_ok().await;
        let conflict = w.store.pending_conflicts("hlf").await.unwrap().remove(0);
        w.service
            .resolve_conflict(&conflict.id, sync_store::Side::App, "admin", false)
            .await
            .unwrap();
        w.store.delete_mentor("hlf", &a).await.unwrap();
        w.run_ok().await;
        assert!(w.store.pending_conflicts("hlf").await.unwrap().is_empty());
        assert!(
            w.store.conflict(&conflict.id).await.unwrap().is_none(),
            "personal values go with the mentor"
        );
        assert_hidden(&w.row(x));
        db
    })
    .await;
}

// ----- a member renumbered in Dynamics -----

#[tokio::test]
async fn a_member_number_changed_in_dynamics_reaches_the_app_once() {
    each(|db| async move {
        let w = World::new(&db).await;
        let x = w.contact("8201", json!({}));
        w.mentor("hlf", "8201", day(2027, 6, 30)).await;
        w.run_ok().await;
        w.sim
            .state()
            .update("contacts", x, json!({ "hlf_membernumber": "8299" }))
            .unwrap();
        let report = w.run_ok().await;
        assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
        let a = mentor_id("hlf", "8201");
        assert_eq!(w.snapshot(&a).await.mentor.member_number.as_deref(), Some("8299"));
        assert_eq!(w.link(&a).await.unwrap().alternate_key, "8299");
        let report = w.run_ok().await;
        assert_eq!(
            report.metrics.push.written + report.metrics.pull.written,
            0,
            "converged: {report:?}"
        );
        db
    })
    .await;
}

#[tokio::test]
async fn a_renumbering_the_app_refuses_queues_that_mentor_and_the_run_goes_on() {
    each(|db| async move {
        let w = World::new(&db).await;
        let x = w.contact("8301", json!({}));
        let e = w.contact("8303", json!({}));
        w.mentor("hlf", "8301", day(2027, 6, 30)).await;
        w.mentor("hlf", "8303", day(2026, 6, 15)).await;
        // Another mentor in the app already has 8302, which has no contact.
        w.mentor("hlf", "8302", day(2027, 6, 30)).await;
        w.run_ok().await;
        // Dynamics renumbers A's contact to 8302: the app's unique member number refuses it.
        w.sim
            .state()
            .update("contacts", x, json!({ "hlf_membernumber": "8302" }))
            .unwrap();
        w.clock.set(at("2026-06-20T00:30:00Z"));
        let report = w.run_ok().await;
        assert_eq!(report.status, RunStatus::Partial, "{report:?}");
        let a = mentor_id("hlf", "8301");
        let failure = w
            .store
            .failure("hlf", "mentor", &a, Direction::Pull)
            .await
            .unwrap()
            .expect("the renumbered mentor is queued");
        assert!(failure.error.contains("another mentor"), "{}", failure.error);
        assert_eq!(w.snapshot(&a).await.mentor.member_number.as_deref(), Some("8301"));
        assert_eq!(w.row(e)["hlf_showonpublicsite"], false, "the time rule ran");
        db
    })
    .await;
}

// ----- the run lock -----

#[tokio::test]
async fn the_sqlite_lease_is_renewed_in_every_phase() {
    each(|db| async move {
        let hooked = std::sync::Mutex::new(None);
        let w = World::with_app(&db, DEFAULT_CONFIG, Some(&mapping_without_honorary()), "", |store| {
            let app = Hooked::new(store);
            *hooked.lock().unwrap() = Some(app.clone());
            Arc::new(app)
        })
        .await;
        let app = hooked.lock().unwrap().take().unwrap();
        let mut contacts = Vec::new();
        for n in 0..3 {
            let member = format!("840{n}");
            contacts.push(w.contact(&member, json!({})));
            w.mentor("hlf", &member, day(2027, 6, 30)).await;
        }
        w.run_ok().await;
        for x in &contacts {
            w.sim
                .state()
                .update("contacts", *x, json!({ "hlf_membershiptype": 100000003 }))
                .unwrap();
        }
        w.run_ok().await;
        assert_eq!(w.failing().await.len(), 3);
        // Every time the run reads mentors, 20 minutes pass and another worker tries to take the lock.
        let (store, clock, taken, calls) = (
            w.store.clone(),
            w.clock.clone(),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (seen_taken, seen_calls) = (taken.clone(), calls.clone());
        app.on(
            "mentors",
            Box::new(move || {
                let (store, clock, taken, calls) = (store.clone(), clock.clone(), taken.clone(), calls.clone());
                Box::pin(async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    clock.advance(chrono::Duration::minutes(20));
                    let now = sync_engine::Clock::now(&*clock);
                    if let Some(intruder) = store
                        .try_lock("hlf", "intruder:1:x", Duration::from_secs(60), now)
                        .await
                        .unwrap()
                    {
                        taken.fetch_add(1, Ordering::SeqCst);
                        intruder.release().await.unwrap();
                    }
                })
            }),
        );
        w.clock.advance(chrono::Duration::hours(1));
        w.run_ok().await;
        app.clear();
        assert!(seen_calls.load(Ordering::SeqCst) >= 1);
        assert_eq!(
            seen_taken.load(Ordering::SeqCst),
            0,
            "another worker took the lock mid-run"
        );
        db
    })
    .await;
}

#[tokio::test]
async fn a_lost_postgres_lock_session_ends_the_run() {
    let Some(db) = TestDatabase::postgres().await.unwrap() else {
        return;
    };
    let hooked = std::sync::Mutex::new(None);
    let w = World::with_app(&db, DEFAULT_CONFIG, None, "", |store| {
        let app = Hooked::new(store);
        *hooked.lock().unwrap() = Some(app.clone());
        Arc::new(app)
    })
    .await;
    let app = hooked.lock().unwrap().take().unwrap();
    for n in 0..3 {
        let member = format!("850{n}");
        w.contact(&member, json!({}));
        w.mentor("hlf", &member, day(2027, 6, 30)).await;
    }
    // The lock's database session dies as the push starts (a proxy cut, a failover, an admin's terminate).
    let url = db.url.clone();
    app.on(
        "changed_mentors",
        Box::new(move || {
            let url = url.clone();
            Box::pin(async move {
                sync_store::testing::terminate_advisory_lock_sessions(&url)
                    .await
                    .unwrap()
            })
        }),
    );
    let report = w.service.run().await.unwrap();
    app.clear();
    assert_eq!(report.status, RunStatus::Failed, "{report:?}");
    assert!(
        report.error.as_deref().unwrap_or_default().contains("run lock"),
        "{report:?}"
    );
    // The next run takes the lock afresh and finishes.
    let report = w.service.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    drop(w);
    db.cleanup().await.unwrap();
}
