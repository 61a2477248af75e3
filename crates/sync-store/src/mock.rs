//! `MockAppStore` (feature `mock`): a mockall mock of [`AppStore`] for a backend's own unit tests.
//!
//! mockall cannot mock `Option<&T>` arguments with elided lifetimes, so the expectations take those arguments owned
//! (`Option<ChangeCursor>`, `Option<String>`); every other argument is as in the trait. Set expectations with the
//! `expect_*` methods and use the mock wherever an `AppStore` is wanted:
//!
//! ```
//! use sync_store::{AppStore, MockAppStore};
//! # async fn example() {
//! let mut app = MockAppStore::new();
//! app.expect_existing_mentors()
//!     .withf(|org, ids| org == "hlf" && ids == ["m1".to_owned()])
//!     .returning(|_, ids| Ok(ids.to_vec()));
//! let app: &dyn AppStore = &app;
//! assert_eq!(app.existing_mentors("hlf", &["m1".to_owned()]).await.unwrap(), ["m1"]);
//! # }
//! ```

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::app::AppStore;
use crate::error::Result;
use crate::model::{ChangeCursor, MentorSnapshot, PullOutcome, PullUpdate};

mockall::mock! {
    /// A mock of [`AppStore`]: see the module documentation.
    pub AppStore {
        /// [`AppStore::changed_mentors`], with the cursor owned.
        pub fn changed_mentors(
            &self,
            organisation_id: &str,
            since: Option<DateTime<Utc>>,
            after: Option<ChangeCursor>,
            limit: u32,
        ) -> Result<Vec<(ChangeCursor, MentorSnapshot)>>;
        /// [`AppStore::mentors`].
        pub fn mentors(&self, organisation_id: &str, ids: &[String]) -> Result<Vec<MentorSnapshot>>;
        /// [`AppStore::all_mentors`], with `after_id` owned.
        pub fn all_mentors(&self, organisation_id: &str, after_id: Option<String>, limit: u32) -> Result<Vec<MentorSnapshot>>;
        /// [`AppStore::mentor_by_member_number`].
        pub fn mentor_by_member_number(&self, organisation_id: &str, member_number: &str) -> Result<Option<MentorSnapshot>>;
        /// [`AppStore::mentors_by_member_numbers`].
        pub fn mentors_by_member_numbers(&self, organisation_id: &str, member_numbers: &[String]) -> Result<Vec<MentorSnapshot>>;
        /// [`AppStore::existing_mentors`].
        pub fn existing_mentors(&self, organisation_id: &str, ids: &[String]) -> Result<Vec<String>>;
        /// [`AppStore::apply_pull`].
        pub fn apply_pull(&self, organisation_id: &str, mentor_id: &str, update: &PullUpdate) -> Result<PullOutcome>;
        /// [`AppStore::set_dynamics_contact`].
        pub fn set_dynamics_contact(&self, organisation_id: &str, mentor_id: &str, contact: Option<Uuid>) -> Result<()>;
        /// [`AppStore::apply_pulls`].
        pub fn apply_pulls(&self, organisation_id: &str, updates: &[(String, PullUpdate)]) -> Result<Vec<Result<PullOutcome>>>;
        /// [`AppStore::set_dynamics_contacts`].
        pub fn set_dynamics_contacts(&self, organisation_id: &str, contacts: &[(String, Option<Uuid>)]) -> Result<()>;
    }
}

#[async_trait]
impl AppStore for MockAppStore {
    async fn changed_mentors(
        &self,
        organisation_id: &str,
        since: Option<DateTime<Utc>>,
        after: Option<&ChangeCursor>,
        limit: u32,
    ) -> Result<Vec<(ChangeCursor, MentorSnapshot)>> {
        MockAppStore::changed_mentors(self, organisation_id, since, after.cloned(), limit)
    }

    async fn mentors(&self, organisation_id: &str, ids: &[String]) -> Result<Vec<MentorSnapshot>> {
        MockAppStore::mentors(self, organisation_id, ids)
    }

    async fn all_mentors(
        &self,
        organisation_id: &str,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<MentorSnapshot>> {
        MockAppStore::all_mentors(self, organisation_id, after_id.map(str::to_owned), limit)
    }

    async fn mentor_by_member_number(
        &self,
        organisation_id: &str,
        member_number: &str,
    ) -> Result<Option<MentorSnapshot>> {
        MockAppStore::mentor_by_member_number(self, organisation_id, member_number)
    }

    async fn mentors_by_member_numbers(
        &self,
        organisation_id: &str,
        member_numbers: &[String],
    ) -> Result<Vec<MentorSnapshot>> {
        MockAppStore::mentors_by_member_numbers(self, organisation_id, member_numbers)
    }

    async fn existing_mentors(&self, organisation_id: &str, ids: &[String]) -> Result<Vec<String>> {
        MockAppStore::existing_mentors(self, organisation_id, ids)
    }

    async fn apply_pull(&self, organisation_id: &str, mentor_id: &str, update: &PullUpdate) -> Result<PullOutcome> {
        MockAppStore::apply_pull(self, organisation_id, mentor_id, update)
    }

    async fn set_dynamics_contact(&self, organisation_id: &str, mentor_id: &str, contact: Option<Uuid>) -> Result<()> {
        MockAppStore::set_dynamics_contact(self, organisation_id, mentor_id, contact)
    }

    async fn apply_pulls(
        &self,
        organisation_id: &str,
        updates: &[(String, PullUpdate)],
    ) -> Result<Vec<Result<PullOutcome>>> {
        MockAppStore::apply_pulls(self, organisation_id, updates)
    }

    async fn set_dynamics_contacts(&self, organisation_id: &str, contacts: &[(String, Option<Uuid>)]) -> Result<()> {
        MockAppStore::set_dynamics_contacts(self, organisation_id, contacts)
    }
}
