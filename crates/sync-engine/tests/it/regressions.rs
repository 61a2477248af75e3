//! Regressions found in review: each of these once left a mentor visible on the public site, or lost a change.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use sync_store::{AppStore, ChangeCursor, Direction, MentorSnapshot, PullUpdate, Store};
use uuid::Uuid;

use super::{DEFAULT_CONFIG, World, at, day, each, mentor_id, revoke};

async fn drift_then_fix(filter: &str) {
    each(|db| async move {
        let w = World::with_organisation(&db, DEFAULT_CONFIG, None, filter).await;
        let a = w.contact("9001", json!({}));
        w.mentor("hlf", "9001", day(2027, 6, 30)).await;
        w.service.run().await.unwrap();
        assert_eq!(w.row(a)["hlf_showonpublicsite"], true);
        // A column the sync only reads disappears; meanwhile the certification is revoked in the app.
        w.sim.faults().drop_column("contact", "hlf_membershiptype").unwrap();
        revoke(&w.store, "9001", at("2026-06-01T08:00:00Z")).await;
        w.clock.set(at("2026-06-02T00:30:00Z"));
        w.service.run().await.unwrap();
        assert_eq!(
            w.row(a)["hlf_showonpublicsite"],
            true,
            "nothing is written while the schema drifts"
        );
        // HLF restores the column: the held change goes out on the next run.
        w.sim.faults().clear();
        w.clock.set(at("2026-06-03T00:30:00Z"));
        w.service.run().await.unwrap();
        assert_eq!(
            w.row(a)["hlf_showonpublicsite"],
            false,
            "the revocation must reach Dynamics once writes work"
        );
        let link = w
            .store
            .links("hlf", "mentor", &[mentor_id("hlf", "9001")])
            .await
            .unwrap()
            .remove(0);
        assert!(
            link.shadow.contains_key("membership_type"),
            "the shadow kept the field it could not read"
        );
        db
    })
    .await;
}

#[tokio::test]
async fn a_change_made_during_schema_drift_is_written_once_it_is_fixed() {
    drift_then_fix("").await;
}

#[tokio::test]
async fn a_change_made_during_schema_drift_is_written_once_it_is_fixed_with_an_entity_filter() {
    drift_then_fix("[organisations.filters]\ncontact = \"hlf_membernumber ne null\"\n").await;
}

/// Revokes a mentor the first time the push asks for changed mentors: a coordinator saving while the run pulls.
struct RevokesDuringRun {
    inner: Store,
    armed: Arc<AtomicBool>,
}

#[async_trait]
impl AppStore for RevokesDuringRun {
    async fn changed_mentors(
        &self,
        organisation: &str,
        since: Option<DateTime<Utc>>,
        after: Option<&ChangeCursor>,
        limit: u32,
    ) -> sync_store::Result<Vec<(ChangeCursor, MentorSnapshot)>> {
        if self.armed.swap(false, Ordering::SeqCst) {
            revoke(&self.inner, "9101", at("2026-06-01T20:00:00Z")).await;
        }
        self.inner.changed_mentors(organisation, since, after, limit).await
    }
    async fn mentors(&self, organisation: &str, ids: &[String]) -> sync_store::Result<Vec<MentorSnapshot>> {
        self.inner.mentors(organisation, ids).await
    }
    async fn all_mentors(
        &self,
        organisation: &str,
        after: Option<&str>,
        limit: u32,
    ) -> sync_store::Result<Vec<MentorSnapshot>> {
        self.inner.all_mentors(organisation, after, limit).await
    }
    async fn mentor_by_member_number(
        &self,
        organisation: &str,
        number: &str,
    ) -> sync_store::Result<Option<MentorSnapshot>> {
        self.inner.mentor_by_member_number(organisation, number).await
    }
    async fn mentors_by_member_numbers(
        &self,
        organisation: &str,
        numbers: &[String],
    ) -> sync_store::Result<Vec<MentorSnapshot>> {
        self.inner.mentors_by_member_numbers(organisation, numbers).await
    }
    async fn apply_pull(
        &self,
        organisation: &str,
        mentor: &str,
        update: &PullUpdate,
    ) -> sync_store::Result<sync_store::PullOutcome> {
        self.inner.apply_pull(organisation, mentor, update).await
    }
    async fn set_dynamics_contact(
        &self,
        organisation: &str,
        mentor: &str,
        contact: Option<Uuid>,
    ) -> sync_store::Result<()> {
        self.inner.set_dynamics_contact(organisation, mentor, contact).await
    }
}

#[tokio::test]
async fn an_app_edit_made_during_the_run_after_the_pull_is_still_pushed() {
    each(|db| async move {
        let armed = Arc::new(AtomicBool::new(false));
        let trigger = armed.clone();
        let w = World::with_app(&db, DEFAULT_CONFIG, None, "", move |store| {
            Arc::new(RevokesDuringRun {
                inner: store,
                armed: trigger,
            })
        })
        .await;
        let a = w.contact("9101", json!({}));
        w.mentor("hlf", "9101", day(2027, 6, 30)).await;
        w.service.run().await.unwrap();
        // The contact changes in Dynamics, so the pull decides the mentor; the app revokes it right after.
        w.sim
            .state()
            .update("contacts", a, json!({ "firstname": "Endret" }))
            .unwrap();
        armed.store(true, Ordering::SeqCst);
        w.clock.set(at("2026-06-01T22:00:00Z"));
        w.service.run().await.unwrap();
        assert_eq!(
            w.row(a)["hlf_peermentorstatus"],
            100000002,
            "the revocation made during the run was pushed"
        );
        assert_eq!(w.row(a)["hlf_showonpublicsite"], false);
        db
    })
    .await;
}

#[tokio::test]
async fn a_dry_run_leaves_failed_records_alone() {
    each(|db| async move {
        let w = World::new(&db).await;
        w.contact("9201", json!({}));
        w.mentor("hlf", "9201", day(2027, 6, 30)).await;
        w.service.run().await.unwrap();
        let key = mentor_id("hlf", "9201");
        w.store
            .record_failure(
                "hlf",
                "mentor",
                &key,
                Direction::Push,
                "earlier failure",
                5,
                at("2026-06-01T00:30:00Z"),
            )
            .await
            .unwrap();
        w.service.plan().await.unwrap();
        assert!(
            w.store
                .failure("hlf", "mentor", &key, Direction::Push)
                .await
                .unwrap()
                .is_some()
        );
        db
    })
    .await;
}

#[tokio::test]
async fn a_visible_mentor_gone_from_the_app_is_hidden_when_the_certification_expires() {
    each(|db| async move {
        let w = World::new(&db).await;
        let a = w.contact("9301", json!({}));
        w.mentor("hlf", "9301", day(2026, 6, 30)).await;
        w.service.run().await.unwrap();
        assert_eq!(w.row(a)["hlf_showonpublicsite"], true);
        // The mentor moves to another organisation in the app: HLF's sync no longer sees them.
        let mut mentor = w
            .store
            .mentors("hlf", &[mentor_id("hlf", "9301")])
            .await
            .unwrap()
            .remove(0)
            .mentor;
        mentor.organisation_id = "other".into();
        w.store.upsert_mentor(&mentor).await.unwrap();
        w.clock.set(at("2026-07-01T00:30:00Z"));
        w.service.run().await.unwrap();
        assert_eq!(
            w.row(a)["hlf_showonpublicsite"],
            false,
            "an expired mentor never stays on the public site"
        );
        db
    })
    .await;
}
