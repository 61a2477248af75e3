//! The `AppStore` contract (docs/app-store.md) held by the reference store on both databases, and a suite that can
//! fail: an implementation that breaks two rules is caught on exactly those.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sync_store::testing::{AppFixture, app_store_conformance};
use sync_store::{
    AppStore, Certification, ChangeCursor, Mentor, MentorSnapshot, PullOutcome, PullUpdate, Result, Store,
};
use uuid::Uuid;

use crate::each;

#[tokio::test]
async fn the_reference_store_keeps_the_app_store_contract() {
    each(|store| async move {
        let report = app_store_conformance(&store, "reference").await;
        assert_eq!(report.checked, 10, "{report}");
        report.assert_passed();
    })
    .await;
}

/// The reference store with two faults a hand-written implementation could have: changed mentors in reverse
/// order within a page, and `if_updated_at` ignored (an app edit made meanwhile is overwritten).
struct Careless(Store);

#[async_trait]
impl AppStore for Careless {
    async fn changed_mentors(
        &self,
        organisation_id: &str,
        since: Option<DateTime<Utc>>,
        after: Option<&ChangeCursor>,
        limit: u32,
    ) -> Result<Vec<(ChangeCursor, MentorSnapshot)>> {
        let mut page = self.0.changed_mentors(organisation_id, since, after, limit).await?;
        page.reverse();
        Ok(page)
    }

    async fn mentors(&self, organisation_id: &str, ids: &[String]) -> Result<Vec<MentorSnapshot>> {
        self.0.mentors(organisation_id, ids).await
    }

    async fn all_mentors(
        &self,
        organisation_id: &str,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<MentorSnapshot>> {
        self.0.all_mentors(organisation_id, after_id, limit).await
    }

    async fn mentor_by_member_number(
        &self,
        organisation_id: &str,
        member_number: &str,
    ) -> Result<Option<MentorSnapshot>> {
        self.0.mentor_by_member_number(organisation_id, member_number).await
    }

    async fn mentors_by_member_numbers(
        &self,
        organisation_id: &str,
        member_numbers: &[String],
    ) -> Result<Vec<MentorSnapshot>> {
        self.0.mentors_by_member_numbers(organisation_id, member_numbers).await
    }

    async fn apply_pull(&self, organisation_id: &str, mentor_id: &str, update: &PullUpdate) -> Result<PullOutcome> {
        let careless = PullUpdate {
            if_updated_at: None,
            ..update.clone()
        };
        self.0.apply_pull(organisation_id, mentor_id, &careless).await
    }

    async fn set_dynamics_contact(&self, organisation_id: &str, mentor_id: &str, contact: Option<Uuid>) -> Result<()> {
        self.0.set_dynamics_contact(organisation_id, mentor_id, contact).await
    }
}

#[async_trait]
impl AppFixture for Careless {
    fn app(&self) -> &dyn AppStore {
        self
    }

    async fn add_organisation(&self, id: &str) -> Result<()> {
        self.0.upsert_organisation(id, id).await
    }

    async fn put_mentor(&self, mentor: &Mentor) -> Result<()> {
        self.0.upsert_mentor(mentor).await
    }

    async fn put_certification(&self, certification: &Certification) -> Result<()> {
        self.0.upsert_certification(certification).await
    }
}

#[tokio::test]
async fn an_implementation_that_breaks_a_rule_is_caught_on_that_rule() {
    each(|store| async move {
        let report = app_store_conformance(&Careless(store), "careless").await;
        let broken: Vec<&str> = report
            .failures
            .iter()
            .map(|f| f.split(':').next().unwrap_or_default())
            .collect();
        assert_eq!(
            broken,
            [
                "changed mentors come in (change time, id) order and resume after the cursor",
                "apply_pull is stale, writing nothing, when the app edited the mentor since",
            ],
            "{report}"
        );
    })
    .await;
}

/// The mock a backend's own unit tests can use (feature `mock`): it answers what the test tells it to.
#[tokio::test]
async fn the_mock_app_store_answers_as_told() {
    let mut mock = sync_store::MockAppStore::new();
    mock.expect_existing_mentors()
        .withf(|org, ids| org == "hlf" && ids.len() == 2)
        .times(1)
        .returning(|_, ids| Ok(vec![ids[0].clone()]));
    let app: &dyn AppStore = &mock;
    let found = app
        .existing_mentors("hlf", &["m1".to_owned(), "m2".to_owned()])
        .await
        .unwrap();
    assert_eq!(found, ["m1"]);
}
