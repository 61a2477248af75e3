//! Push: mentors the app changed since the last run (its `updated_at` watermark), decided against their shadows;
//! mentors with no contact yet are looked up by member number and take the contact, unless another mentor's link to
//! it still stands.

use std::collections::BTreeMap;

use dynamics_client::AlternateKey;
use sync_store::{Direction, Link, MentorSnapshot, Watermark};

use super::lookup::Need;
use super::record::Why;
use super::{APP_PAGE, NEEDS_GATHERED, Run, Subject};
use crate::decide::{LinkStatus, link_status};
use crate::error::Result;
use crate::record::changed_at;
use crate::service::MENTOR;

impl Run<'_> {
    pub(super) async fn push(&mut self) -> Result<()> {
        let table = self.svc.mapping.table().to_owned();
        let watermark = self.svc.store.watermark(self.org(), Direction::Push, &table).await?;
        let since = watermark
            .at
            .map(|at| at - chrono::Duration::from_std(self.svc.sync.overlap).unwrap_or_default());
        let mut cursor: Option<sync_store::ChangeCursor> = None;
        loop {
            let page = self
                .svc
                .app
                .changed_mentors(self.org(), since, cursor.as_ref(), APP_PAGE)
                .await?;
            let Some((last, _)) = page.last() else { break };
            let last = last.clone();
            self.keep_lock().await?;
            let full = page.len() == APP_PAGE as usize;
            self.push_snapshots(page.into_iter().map(|(_, s)| s).collect()).await?;
            cursor = Some(last);
            // Writes gather across pages into full batches; the watermark moves only when they are all written.
            if self.pending.len() >= self.sizer.size() {
                self.flush_push(&table, cursor.as_ref()).await?;
            }
            if !full {
                break;
            }
        }
        self.flush_push(&table, cursor.as_ref()).await
    }

    /// Writes what is pending, then moves the push watermark to the last mentor those writes cover.
    async fn flush_push(&mut self, table: &str, cursor: Option<&sync_store::ChangeCursor>) -> Result<()> {
        self.flush().await?;
        let Some(cursor) = cursor else { return Ok(()) };
        let mark = Watermark {
            at: Some(cursor.changed_at),
            ..Watermark::default()
        };
        self.save_watermark(Direction::Push, table, mark).await
    }

    /// Decides app-changed mentors against their shadows (what Dynamics held when both last agreed); the etag
    /// guards each write, so a concurrent change in Dynamics is caught rather than overwritten.
    pub(super) async fn push_snapshots(&mut self, snapshots: Vec<MentorSnapshot>) -> Result<()> {
        // A mentor the pull decided earlier in this run but whose app row changed since is decided again; its
        // pending write (if any) goes out first so the new decision starts from the link it leaves.
        let changed_since = snapshots.iter().any(|s| {
            self.touched
                .decided_at(&s.mentor.id)
                .is_some_and(|seen| changed_at(s) > seen)
        });
        if changed_since {
            self.flush().await?;
        }
        let ids: Vec<String> = snapshots.iter().map(|s| s.mentor.id.clone()).collect();
        let links: BTreeMap<String, Link> = self
            .svc
            .store
            .links(self.org(), MENTOR, &ids)
            .await?
            .into_iter()
            .map(|l| (l.app_id.clone(), l))
            .collect();
        for snapshot in snapshots {
            if self.decided_already(&snapshot) || self.has_resolution(&snapshot.mentor.id) {
                // Resolved conflicts are applied against Dynamics as it is now, in the retry phase.
                continue;
            }
            let link = links.get(&snapshot.mentor.id).cloned();
            self.metrics.push.read += 1;
            let subject = Subject::of(&snapshot);
            let outcome = self.push_one(snapshot, link).await;
            self.isolate(&subject, Direction::Push, false, outcome).await?;
        }
        // Look-ups and re-reads gather across pages into a few large `$batch`es (a bulk onboarding of 5,000 mentors
        // is one request, not one per page); every caller flushes, which resolves them, before it moves a watermark.
        if self.needs.len() >= NEEDS_GATHERED {
            self.resolve_needs().await?;
        }
        self.settle().await
    }

    async fn push_one(&mut self, snapshot: MentorSnapshot, link: Option<Link>) -> Result<()> {
        let Some(link) = link else {
            return self.unlinked(snapshot).await;
        };
        match link_status(&link, Some(snapshot.mentor.member_number.as_deref())) {
            LinkStatus::Stands => {}
            LinkStatus::Renumbered => {
                self.release(&link, link.etag.clone(), Why::Renumbered).await?;
                return self.unlinked(snapshot).await;
            }
            LinkStatus::MentorGone => return self.mentor_gone(link).await,
        }
        // A write whose outcome is unknown, or a shadow missing a mapped field (a field added to the mapping, or
        // lost while the schema drifted), cannot stand in for Dynamics: read the row.
        let incomplete = self
            .svc
            .mapping
            .fields()
            .iter()
            .any(|f| !link.shadow.contains_key(&f.field));
        // A held conflict, a failed record or an app write skipped earlier this run needs Dynamics' current values
        // too: the shadow is not them.
        let uncertain = self.conflicts.contains_key(&link.app_id)
            || self.failing.contains_key(&link.app_id)
            || self.reread.contains(&link.app_id);
        if link.pending.is_some() || incomplete || uncertain {
            return self.recheck(snapshot, Some(link)).await;
        }
        self.decide(snapshot, Some(link), None, Direction::Push, false).await
    }

    /// A mentor with no link yet: find the contact by member number (within the organisation's entity filter) and
    /// take it, unless another mentor's link to it still stands.
    pub(super) async fn unlinked(&mut self, snapshot: MentorSnapshot) -> Result<()> {
        let subject = Subject::of(&snapshot);
        let Some(number) = snapshot.mentor.member_number.clone() else {
            return self
                .queue_failure(
                    &subject,
                    Direction::Push,
                    "the mentor has no member number, so no Dynamics contact can be found; add it in the app",
                    true,
                )
                .await;
        };
        if let Err(e) = AlternateKey::new(&self.svc.mapping.alternate_key().column, &number) {
            return self
                .queue_failure(&subject, Direction::Push, &e.to_string(), true)
                .await;
        }
        // Looked up with the rest of the page, in bulk.
        self.needs.push(Need::Lookup(snapshot));
        Ok(())
    }
}
