//! The time rule, run by every run that can reach Dynamics: links whose mentor left the app release their contact;
//! certifications that expired by the passing of time (which changes no app row) are pushed; and every released
//! contact is hidden from the public site, until that write succeeds.

use std::collections::BTreeSet;

use sync_store::Direction;
use uuid::Uuid;

use super::write::{PendingWrite, WriteTarget};
use super::{APP_PAGE, Run, Subject};
use crate::error::Result;
use crate::service::MENTOR;

impl Run<'_> {
    /// Its three parts run whatever happened to the one before (unless the run must stop); the first error is
    /// the phase's.
    pub(super) async fn time_rule(&mut self) -> Result<()> {
        let gone = self.release_gone().await;
        if let Err(e) = &gone
            && super::stops_run(e)
        {
            return gone;
        }
        let expired = self.push_expired().await;
        if let Err(e) = &expired
            && super::stops_run(e)
        {
            return expired;
        }
        let released = self.time_rule_releases().await;
        gone.and(expired).and(released)
    }

    /// Links whose mentor is no longer in the app (deleted, or moved to another organisation): their contacts are
    /// released. Paged by app id.
    async fn release_gone(&mut self) -> Result<()> {
        let mut after: Option<String> = None;
        loop {
            // Ids only: the shadows of the links whose mentor is still there (nearly all) are never read.
            let ids = self
                .svc
                .store
                .link_ids_page(self.org(), MENTOR, after.as_deref(), APP_PAGE)
                .await?;
            let Some((last, _)) = ids.last() else { return Ok(()) };
            after = Some(last.clone());
            self.keep_lock().await?;
            let full = ids.len() == APP_PAGE as usize;
            let app_ids: Vec<String> = ids.into_iter().map(|(app_id, _)| app_id).collect();
            let present: BTreeSet<String> = self
                .svc
                .app
                .existing_mentors(self.org(), &app_ids)
                .await?
                .into_iter()
                .collect();
            let gone: Vec<String> = app_ids.into_iter().filter(|id| !present.contains(id)).collect();
            for link in self.svc.store.links(self.org(), MENTOR, &gone).await? {
                let subject = Subject {
                    app_id: link.app_id.clone(),
                    member_number: None,
                    coordinator: None,
                };
                let outcome = self.mentor_gone(link).await;
                self.isolate(&subject, Direction::Push, false, outcome).await?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Certifications that expired by the passing of time change no app row, so every run asks for mentors Dynamics
    /// still shows as visible whose expiry date has passed. Paged by app id, so mentors whose writes keep failing
    /// cannot hide the ones after them.
    async fn push_expired(&mut self) -> Result<()> {
        let mut after: Option<String> = None;
        loop {
            let due = self
                .svc
                .store
                .visible_but_expired(self.org(), MENTOR, self.today, after.as_deref(), APP_PAGE)
                .await?;
            let Some(last) = due.last().cloned() else { return Ok(()) };
            self.keep_lock().await?;
            let snapshots = self.svc.app.mentors(self.org(), &due).await?;
            let found: BTreeSet<String> = snapshots.iter().map(|s| s.mentor.id.clone()).collect();
            self.push_snapshots(snapshots).await?;
            // A mentor who left during the run: released now rather than next run.
            let gone: Vec<String> = due.iter().filter(|id| !found.contains(*id)).cloned().collect();
            for link in self.svc.store.links(self.org(), MENTOR, &gone).await? {
                let subject = Subject {
                    app_id: link.app_id.clone(),
                    member_number: None,
                    coordinator: None,
                };
                let outcome = self.mentor_gone(link).await;
                self.isolate(&subject, Direction::Push, false, outcome).await?;
            }
            self.flush().await?;
            if due.len() < APP_PAGE as usize {
                return Ok(());
            }
            after = Some(last);
        }
    }

    /// Hides every released contact from the public site (app-owned columns only), page by page.
    pub(super) async fn time_rule_releases(&mut self) -> Result<()> {
        if !self.writes_enabled || !self.apply() {
            return Ok(());
        }
        // What is queued now goes first: a mentor who takes a released contact cancels its release.
        self.flush().await?;
        let fields = self.hide_fields();
        let mut after: Option<Uuid> = None;
        loop {
            let releases = self.svc.store.releases(self.org(), MENTOR, after, APP_PAGE).await?;
            let Some(last) = releases.last() else { return Ok(()) };
            after = Some(last.dynamics_id);
            self.keep_lock().await?;
            let full = releases.len() == APP_PAGE as usize;
            // A contact a mentor has taken meanwhile is not hidden.
            let ids: Vec<Uuid> = releases.iter().map(|r| r.dynamics_id).collect();
            let taken: BTreeSet<Uuid> = self
                .svc
                .store
                .links_by_dynamics_ids(self.org(), MENTOR, &ids)
                .await?
                .into_iter()
                .map(|l| l.dynamics_id)
                .collect();
            for release in releases {
                if taken.contains(&release.dynamics_id) {
                    self.cancel_release(release.dynamics_id).await?;
                    continue;
                }
                self.pending.push(PendingWrite {
                    dynamics_id: release.dynamics_id,
                    etag: release.etag,
                    fields: fields.clone(),
                    after_412: false,
                    target: WriteTarget::Release { app_id: release.app_id },
                });
            }
            self.flush().await?;
            if !full {
                return Ok(());
            }
        }
    }
}
