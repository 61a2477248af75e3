//! Retries: failed records, admin resolutions and writes whose outcome is unknown are decided again against
//! Dynamics as it is now (read, never assumed). A record whose mentor left the app is released and forgotten.

use std::collections::{BTreeMap, BTreeSet};

use sync_store::{Direction, FailureState, Link};

use super::{APP_PAGE, Run, Subject};
use crate::decide::Pending;
use crate::error::Result;
use crate::service::MENTOR;

impl Run<'_> {
    pub(super) async fn retries(&mut self) -> Result<()> {
        let mut ids: BTreeSet<String> = self
            .svc
            .store
            .failures(self.org(), FailureState::Retrying)
            .await?
            .into_iter()
            .filter(|f| f.record_kind == MENTOR)
            .map(|f| f.record_key)
            .collect();
        ids.extend(
            self.conflicts
                .iter()
                .filter(|(_, fields)| fields.values().any(|p| matches!(p, Pending::Resolved { .. })))
                .map(|(app_id, _)| app_id.clone()),
        );
        ids.extend(
            self.svc
                .store
                .links_with_pending(self.org(), MENTOR)
                .await?
                .into_iter()
                .map(|l| l.app_id),
        );
        ids.retain(|id| !self.touched.is_decided(id));
        // Mentors whose contact went away this run, or whose app write was skipped, not decided or queued since.
        ids.extend(self.relink.iter().cloned());
        ids.extend(self.reread.iter().cloned());
        self.forget_dead_of_gone().await?;
        let ids: Vec<String> = ids.into_iter().collect();
        for chunk in ids.chunks(APP_PAGE as usize) {
            self.keep_lock().await?;
            let snapshots = self.svc.app.mentors(self.org(), chunk).await?;
            let mut links: BTreeMap<String, Link> = self
                .svc
                .store
                .links(self.org(), MENTOR, chunk)
                .await?
                .into_iter()
                .map(|l| (l.app_id.clone(), l))
                .collect();
            let found: BTreeSet<String> = snapshots.iter().map(|s| s.mentor.id.clone()).collect();
            for app_id in chunk.iter().filter(|id| !found.contains(*id)) {
                // Gone from the app: its failures and conflicts are forgotten, its contact released.
                let subject = Subject {
                    app_id: app_id.clone(),
                    member_number: None,
                    coordinator: None,
                };
                let outcome = match links.remove(app_id) {
                    Some(link) => self.mentor_gone(link).await,
                    None if self.apply() => self
                        .svc
                        .store
                        .forget_record(self.org(), MENTOR, app_id)
                        .await
                        .map_err(Into::into),
                    None => Ok(()),
                };
                self.isolate(&subject, Direction::Push, false, outcome).await?;
            }
            for snapshot in snapshots {
                let subject = Subject::of(&snapshot);
                let link = links.remove(&snapshot.mentor.id);
                let outcome = self.recheck(snapshot, link).await;
                self.isolate(&subject, Direction::Push, false, outcome).await?;
            }
            self.flush().await?;
        }
        Ok(())
    }

    /// Dead failed records of mentors no longer in the app (and no longer linked, so nothing else notices) are
    /// forgotten: their reasons hold personal data with no purpose left.
    async fn forget_dead_of_gone(&mut self) -> Result<()> {
        if !self.apply() {
            return Ok(());
        }
        let dead: Vec<String> = self
            .svc
            .store
            .failures(self.org(), FailureState::Dead)
            .await?
            .into_iter()
            .filter(|f| f.record_kind == MENTOR)
            .map(|f| f.record_key)
            .collect();
        let present: BTreeSet<String> = self
            .svc
            .app
            .existing_mentors(self.org(), &dead)
            .await?
            .into_iter()
            .collect();
        for app_id in dead.iter().filter(|id| !present.contains(*id)) {
            self.svc.store.forget_record(self.org(), MENTOR, app_id).await?;
            self.failing.remove(app_id);
        }
        Ok(())
    }
}
