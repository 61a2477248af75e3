//! One record: decide it with the pure core and carry the outcome out (app writes now, Dynamics writes queued with
//! their intent, conflicts held or closed, the link saved); and the ways a link ends: the contact deleted, out of
//! the sync's scope, or released because no mentor claims it any more.

use std::collections::{BTreeMap, BTreeSet};

use field_mapping::{AppRecord, AppValue, OnDelete};
use sync_store::{
    CacheEntry, Conflict, ConflictState, Direction, Link, MentorSnapshot, PullOutcome, PullUpdate, Release,
};
use tracing::{info, warn};

use super::write::{PendingWrite, RecordWrite, WriteTarget};
use super::{Read, RowMeta, Run, Subject};
use crate::decide::{
    FieldTimes, HeldField, LinkStatus, RecordInput, RecordOutcome, decide_record, effective_shadow, in_scope,
    link_status,
};
use crate::error::Result;
use crate::notify;
use crate::plan::{PlanItem, show};
use crate::record::{app_record, changed_at, field_changed_at, pull_update, shadow_expiry, shows_as_visible};
use crate::service::MENTOR;

/// A decision waiting to be carried out with the rest of its page.
pub(crate) struct Decided {
    snapshot: MentorSnapshot,
    link: Option<Link>,
    seen: Seen,
    outcome: RecordOutcome,
    direction: Direction,
    after_412: bool,
    problems: Vec<String>,
}

/// The sync state a page's decisions write, gathered to be written in bulk.
#[derive(Default)]
struct Books {
    /// Links to save.
    links: Vec<Link>,
    /// The app's record of mentors' contacts.
    contacts: Vec<(String, Option<uuid::Uuid>)>,
    /// Contacts mentors take (their releases are cancelled).
    claimed: Vec<uuid::Uuid>,
    /// Records that synced (their failures are cleared).
    synced: Vec<String>,
    /// Cached certification statuses that changed.
    cache: Vec<CacheEntry>,
}

/// What the decision saw of Dynamics.
struct Seen {
    meta: RowMeta,
    /// The shadow it decided against.
    shadow: Option<AppRecord>,
    /// Dynamics' values (the shadow when Dynamics was not read).
    dynamics: AppRecord,
}

/// Whether any of these records shows the mentor on the public site, and the earliest expiry among those that do.
fn may_show(records: &[&AppRecord]) -> (bool, Option<chrono::NaiveDate>) {
    let showing: Vec<&&AppRecord> = records.iter().filter(|r| shows_as_visible(r)).collect();
    let expires = showing.iter().filter_map(|r| shadow_expiry(r)).min();
    (!showing.is_empty(), expires)
}

/// Why a contact was released.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Why {
    /// The mentor is no longer in the app.
    MentorGone,
    /// The app gave the mentor another member number.
    Renumbered,
    /// The contact was deactivated or no longer matches the organisation's filter.
    LeftScope,
}

impl Why {
    fn text(self) -> &'static str {
        match self {
            Why::MentorGone => "the mentor is no longer in the app",
            Why::Renumbered => "the mentor's member number changed in the app",
            Why::LeftScope => "the contact was deactivated or no longer matches the organisation's contact filter",
        }
    }
}

impl Run<'_> {
    /// Decides a mentor against a Dynamics row read just now (or, without one, against the shadow: the etag then
    /// guards the write) and carries the outcome out.
    pub(super) async fn decide(
        &mut self,
        snapshot: MentorSnapshot,
        link: Option<Link>,
        read: Option<Read>,
        direction: Direction,
        after_412: bool,
    ) -> Result<()> {
        let started = std::time::Instant::now();
        let app_id = snapshot.mentor.id.clone();
        self.touched.decide(&app_id, changed_at(&snapshot));
        self.relink.remove(&app_id);
        if read.is_some() {
            self.reread.remove(&app_id);
        }
        let mapping = &self.svc.mapping;
        let shadow = link
            .as_ref()
            .map(|l| effective_shadow(mapping, l, read.as_ref().map(|r| &r.values)));
        let app = app_record(mapping, &snapshot, self.today, shadow.as_ref());
        let meta = match (&read, &link) {
            (Some(read), _) => read.meta.clone(),
            (None, Some(link)) => RowMeta {
                id: link.dynamics_id,
                etag: link.etag.clone(),
                modified_on: link.dynamics_modified_on,
                key: Some(link.alternate_key.clone()),
            },
            (None, None) => return Ok(()),
        };
        let dynamics = read
            .as_ref()
            .map(|r| r.values.clone())
            .or_else(|| shadow.clone())
            .unwrap_or_default();
        let no_pending = BTreeMap::new();
        let pending = self.conflicts.get(&app_id).unwrap_or(&no_pending);
        let seen = link.as_ref().map(|l| l.seen.clone()).unwrap_or_default();
        let default_times = |field: &str| FieldTimes {
            app: Some(field_changed_at(&snapshot, field)),
            dynamics: meta.modified_on,
        };
        let no_unreadable = BTreeSet::new();
        let outcome = decide_record(RecordInput {
            mapping,
            policy: &self.svc.conflicts,
            shadow: shadow.as_ref(),
            app: &app,
            dynamics: &dynamics,
            seen: &seen,
            default_times: &default_times,
            pending,
            unreadable: read.as_ref().map_or(&no_unreadable, |r| &r.unreadable),
        });
        let counts = match direction {
            Direction::Pull => &mut self.metrics.pull,
            Direction::Push => &mut self.metrics.push,
        };
        counts.conflicts += outcome.conflicts;
        if outcome.writes_nothing() {
            counts.skipped += 1;
        }
        let problems = read.map(|r| r.problems).unwrap_or_default();
        self.deciding += started.elapsed();
        // Carried out with the rest of the page (`settle`), so the app and the sync state are written in bulk.
        self.decisions.push(Decided {
            snapshot,
            link,
            seen: Seen { meta, shadow, dynamics },
            outcome,
            direction,
            after_412,
            problems,
        });
        Ok(())
    }

    /// Carries out the decisions made since the last call: the app writes in one call, then each record's
    /// bookkeeping (its problems isolated), then the links, contact ids and cache entries in bulk.
    pub(super) async fn settle(&mut self) -> Result<()> {
        if self.decisions.is_empty() {
            return Ok(());
        }
        let decisions = std::mem::take(&mut self.decisions);
        let mut written: BTreeMap<String, sync_store::Result<PullOutcome>> = BTreeMap::new();
        if self.apply() {
            let updates: Vec<(String, PullUpdate)> = decisions
                .iter()
                .filter(|d| !d.outcome.to_app.is_empty())
                .map(|d| {
                    let mut update = pull_update(&d.outcome.to_app, d.seen.meta.modified_on);
                    // Only if the app did not change the mentor since it was read: an app edit is never overwritten.
                    update.if_updated_at = Some(d.snapshot.mentor.updated_at);
                    (d.snapshot.mentor.id.clone(), update)
                })
                .collect();
            if !updates.is_empty() {
                let results = self.svc.app.apply_pulls(self.org(), &updates).await?;
                for ((app_id, _), result) in updates.into_iter().zip(results) {
                    written.insert(app_id, result);
                }
            }
        }
        let mut books = Books::default();
        for decided in decisions {
            let subject = Subject::of(&decided.snapshot);
            let direction = decided.direction;
            let app_write = written.remove(&decided.snapshot.mentor.id);
            let outcome = self.carry_out(decided, app_write, &mut books).await;
            self.isolate(&subject, direction, false, outcome).await?;
        }
        self.keep_books(books).await
    }

    /// Saves what a page's decisions agreed on: links, then the app's record of each mentor's contact, then the
    /// cached certification status, each in bulk; and clears the failures of the records that synced.
    async fn keep_books(&mut self, books: Books) -> Result<()> {
        if !self.apply() {
            return Ok(());
        }
        for id in &books.claimed {
            self.cancel_release(*id).await?;
        }
        let links: Vec<Link> = books.links;
        let unsaved = self.save_links_isolated(&links).await?;
        let contacts: Vec<(String, Option<uuid::Uuid>)> = books
            .contacts
            .into_iter()
            .filter(|(app_id, _)| !unsaved.contains(app_id))
            .collect();
        self.svc.app.set_dynamics_contacts(self.org(), &contacts).await?;
        let entries: Vec<CacheEntry> = books
            .cache
            .into_iter()
            .filter(|e| !unsaved.contains(&e.mentor_id))
            .collect();
        self.svc.store.save_cache_entries(&entries).await?;
        for app_id in books.synced.iter().filter(|id| !unsaved.contains(*id)) {
            self.clear_failures(app_id).await?;
        }
        Ok(())
    }

    /// Forgets a release of a contact a mentor takes (only when there is one: releases are rare).
    pub(super) async fn cancel_release(&mut self, dynamics_id: uuid::Uuid) -> Result<()> {
        if self.released.remove(&dynamics_id) {
            self.svc.store.delete_release(self.org(), MENTOR, dynamics_id).await?;
        }
        Ok(())
    }

    async fn carry_out(
        &mut self,
        decided: Decided,
        app_write: Option<sync_store::Result<PullOutcome>>,
        books: &mut Books,
    ) -> Result<()> {
        let Decided {
            snapshot,
            link,
            seen: Seen { meta, shadow, dynamics },
            mut outcome,
            direction,
            after_412,
            mut problems,
        } = decided;
        let app_id = snapshot.mentor.id.clone();
        for held in &outcome.held {
            self.hold_conflict(&snapshot, held).await?;
        }
        if !outcome.to_app.is_empty() {
            if self.apply() {
                match app_write.unwrap_or(Ok(PullOutcome::Applied)) {
                    Ok(PullOutcome::Applied) => self.metrics.pull.written += 1,
                    Ok(PullOutcome::Stale) => {
                        // Decided again this run, against Dynamics read afresh: its change is not lost.
                        info!(org = %self.org(), mentor = %app_id, "the mentor changed in the app during the run; deciding it again");
                        self.touched.undecide(&app_id);
                        self.reread.insert(app_id);
                        return Ok(());
                    }
                    Err(e) if e.is_record_level() => {
                        // The app refused these values: they stay unagreed and are tried again next run, while the
                        // rest of the record (the certification above all) goes on.
                        problems.push(crate::service::error_chain(&e));
                        for (field, _) in &outcome.to_app {
                            match shadow.as_ref().and_then(|s| s.get(field)) {
                                Some(old) => {
                                    outcome.agreed.insert(field.clone(), old.clone());
                                    outcome.after_write.insert(field.clone(), old.clone());
                                }
                                None => {
                                    outcome.agreed.remove(field);
                                    outcome.after_write.remove(field);
                                }
                            }
                        }
                        outcome.applied_with_app.clear();
                    }
                    Err(e) => return Err(e.into()),
                }
            } else {
                let changes = outcome.to_app.iter().map(|(f, v)| (f.clone(), show(v))).collect();
                self.plan.push(PlanItem::WriteApp {
                    mentor_id: app_id.clone(),
                    changes,
                });
            }
        }
        if !self.apply() {
            return self.plan_dynamics_write(&snapshot, &meta, &outcome);
        }
        for id in &outcome.settled {
            info!(org = %self.org(), mentor = %app_id, "both sides now hold the same value: the held conflict closed by itself");
            self.svc.store.settle_conflict(id, self.now).await?;
        }
        // Resolutions needing no Dynamics write are done now; the others once their write succeeds.
        for id in &outcome.applied_with_app {
            self.svc.store.mark_conflict_applied(id).await?;
        }
        self.forget_closed(&app_id, &outcome);
        let key = outcome
            .agreed
            .get("member_number")
            .and_then(text)
            .or_else(|| snapshot.mentor.member_number.clone())
            .or_else(|| meta.key.clone())
            .unwrap_or_default();
        let writing = !outcome.to_dynamics.is_empty() && self.writes_enabled;
        let held_back = !outcome.to_dynamics.is_empty() && !self.writes_enabled;
        // What Dynamics may show meanwhile: what it shows now, what was agreed, and what a write may put there. The
        // time rule looks at this, so a contact whose write keeps failing is still hidden when it expires.
        let mut shown: Vec<&AppRecord> = vec![&outcome.agreed, &dynamics];
        if writing {
            shown.push(&outcome.after_write);
        }
        let (visible, expires_on) = may_show(&shown);
        let saved = Link {
            organisation_id: self.org().to_owned(),
            record_kind: MENTOR.to_owned(),
            app_id: app_id.clone(),
            dynamics_id: meta.id,
            alternate_key: key,
            etag: meta.etag.clone(),
            visible,
            expires_on,
            shadow: outcome.agreed.clone(),
            dynamics_modified_on: meta.modified_on,
            synced_at: self.now,
            pending: None,
            seen: outcome.seen.clone(),
            // Writes held back (schema drift) leave the app's change undecided: the next run must not skip it.
            app_changed_at: if held_back {
                link.as_ref().and_then(|l| l.app_changed_at)
            } else {
                Some(changed_at(&snapshot))
            },
        };
        let contact_changes = snapshot.mentor.dynamics_contact_id != Some(meta.id);
        if writing {
            self.pending.push(PendingWrite {
                dynamics_id: meta.id,
                etag: meta.etag,
                fields: outcome.to_dynamics,
                after_412,
                target: WriteTarget::Record(Box::new(RecordWrite {
                    link: saved,
                    after_write: outcome.after_write,
                    subject: Subject::of(&snapshot),
                    resolved: outcome.applied_with_write,
                    direction,
                    new: link.is_none(),
                    contact_changes,
                })),
            });
        } else {
            let unchanged = link.as_ref().is_some_and(|l| {
                l.shadow == saved.shadow
                    && l.etag == saved.etag
                    && l.dynamics_id == saved.dynamics_id
                    && l.alternate_key == saved.alternate_key
                    && l.seen == saved.seen
                    && l.visible == saved.visible
                    && l.app_changed_at == saved.app_changed_at
                    && l.pending.is_none()
                    && outcome.to_app.is_empty()
            });
            if link.is_none() {
                books.claimed.push(saved.dynamics_id);
            }
            if contact_changes {
                books.contacts.push((app_id.clone(), Some(meta.id)));
            }
            if !unchanged {
                // The cached status changes only with the shadow's certification fields (the run confirms the
                // others' freshness in one statement at its end).
                let cached = |l: &Link| {
                    self.cache_entry(l)
                        .map(|e| (e.status, e.expires_on, e.show_on_public_site))
                };
                if link.as_ref().is_none_or(|l| cached(l) != cached(&saved)) {
                    books.cache.extend(self.cache_entry(&saved));
                }
                books.links.push(saved);
            }
        }
        if !problems.is_empty() {
            // Part of the record could not sync: queued with the reason, and kept queued even when its write
            // succeeds.
            let reason = match problems.as_slice() {
                [only] if !only.starts_with("the app refused") => format!("the Dynamics row cannot be read: {only}"),
                _ if problems.iter().all(|p| p.starts_with("the app refused")) => problems.join("; "),
                _ => format!("the Dynamics row cannot be read in full: {}", problems.join("; ")),
            };
            self.partial.insert(app_id.clone());
            return self
                .queue_failure(&Subject::of(&snapshot), Direction::Pull, &reason, false)
                .await;
        }
        if !writing && !held_back {
            books.synced.push(app_id);
        }
        Ok(())
    }

    fn plan_dynamics_write(
        &mut self,
        snapshot: &MentorSnapshot,
        meta: &RowMeta,
        outcome: &RecordOutcome,
    ) -> Result<()> {
        if !outcome.to_dynamics.is_empty() && self.writes_enabled {
            let changes = outcome.to_dynamics.iter().map(|(f, v)| (f.clone(), show(v))).collect();
            self.plan.push(PlanItem::WriteDynamics {
                member_number: snapshot
                    .mentor
                    .member_number
                    .clone()
                    .or_else(|| meta.key.clone())
                    .unwrap_or_default(),
                changes,
            });
        }
        Ok(())
    }

    /// Drops closed conflicts from the run's view, so later decisions of this run see them closed.
    fn forget_closed(&mut self, app_id: &str, outcome: &RecordOutcome) {
        if let Some(fields) = self.conflicts.get_mut(app_id) {
            fields.retain(|_, pending| {
                let id = match pending {
                    crate::decide::Pending::Held { id } | crate::decide::Pending::Resolved { id, .. } => id,
                };
                !outcome.settled.contains(id) && !outcome.applied_with_app.contains(id)
            });
        }
    }

    pub(super) fn cache_entry(&self, link: &Link) -> Option<CacheEntry> {
        let status = match link.shadow.get("certification_status") {
            Some(AppValue::Choice(s)) => s.clone(),
            _ => return None,
        };
        Some(CacheEntry {
            organisation_id: self.org().to_owned(),
            mentor_id: link.app_id.clone(),
            member_number: Some(link.alternate_key.clone()),
            status,
            expires_on: shadow_expiry(&link.shadow),
            show_on_public_site: link.shadow.get("show_on_public_site") == Some(&AppValue::Bool(true)),
            as_of: self.now,
        })
    }

    async fn hold_conflict(&mut self, snapshot: &MentorSnapshot, held: &HeldField) -> Result<()> {
        if !self.apply() {
            if !held.already_held {
                self.plan.push(PlanItem::Conflict {
                    mentor_id: snapshot.mentor.id.clone(),
                    field: held.field.clone(),
                });
            }
            return Ok(());
        }
        let conflict = Conflict {
            id: String::new(),
            organisation_id: self.org().to_owned(),
            record_kind: MENTOR.to_owned(),
            app_id: snapshot.mentor.id.clone(),
            field: held.field.clone(),
            shadow_value: held.shadow.clone(),
            app_value: held.app.clone(),
            dynamics_value: held.dynamics.clone(),
            app_changed_at: held.times.app,
            dynamics_changed_at: held.times.dynamics,
            detected_at: self.now,
            state: ConflictState::Open,
            resolved_by: None,
        };
        // Opens it, or brings the held one's values up to date with both sides.
        let id = self.svc.store.open_conflict(&conflict).await?;
        self.conflicts
            .entry(snapshot.mentor.id.clone())
            .or_default()
            .insert(held.field.clone(), crate::decide::Pending::Held { id: id.clone() });
        if !held.already_held
            && let Some(coordinator) = &snapshot.mentor.coordinator_email
        {
            let message = notify::conflict(
                self.svc.organisation.language,
                snapshot.mentor.member_number.as_deref(),
                &snapshot.mentor.id,
                &held.field,
            );
            self.enqueue(format!("conflict:{id}"), coordinator, message).await?;
        }
        Ok(())
    }

    // ----- links that end -----

    /// Re-reads a linked or unlinked mentor's contact and decides it (retries, resolutions, a sync of one mentor).
    pub(super) async fn recheck(&mut self, snapshot: MentorSnapshot, link: Option<Link>) -> Result<()> {
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
        // Read with the rest of the page, in bulk.
        self.needs.push(super::lookup::Need::Reread(snapshot, Box::new(link)));
        Ok(())
    }

    /// Decides a linked mentor against a row read just now: the contact may have left the sync's scope.
    pub(super) async fn with_row(
        &mut self,
        snapshot: MentorSnapshot,
        link: Link,
        row: &dynamics_client::Row,
        direction: Direction,
        matches_filter: Option<bool>,
        after_412: bool,
    ) -> Result<()> {
        let read = match self.read(row) {
            Ok(read) => read,
            Err(reason) => {
                return self
                    .queue_failure(&Subject::of(&snapshot), Direction::Pull, &reason, false)
                    .await;
            }
        };
        if !in_scope(&self.svc.mapping, &read.values, matches_filter) {
            return self.left_scope(snapshot, link, read).await;
        }
        self.decide(snapshot, Some(link), Some(read), direction, after_412)
            .await
    }

    /// A linked contact left the sync (deactivated, or no longer matching the organisation's filter): its last
    /// values reach the app, the membership ends as for a deletion (`on_delete`), and the contact is released
    /// (hidden from the public site) and unlinked. If it comes back, the pull links it again.
    pub(super) async fn left_scope(&mut self, snapshot: MentorSnapshot, link: Link, read: Read) -> Result<()> {
        let app_id = snapshot.mentor.id.clone();
        self.reread.remove(&app_id);
        let mapping = &self.svc.mapping;
        let shadow = effective_shadow(mapping, &link, Some(&read.values));
        let app = app_record(mapping, &snapshot, self.today, Some(&shadow));
        let default_times = |field: &str| FieldTimes {
            app: Some(field_changed_at(&snapshot, field)),
            dynamics: read.meta.modified_on,
        };
        let outcome = decide_record(RecordInput {
            mapping,
            policy: &self.svc.conflicts,
            shadow: Some(&shadow),
            app: &app,
            dynamics: &read.values,
            seen: &link.seen,
            default_times: &default_times,
            pending: &BTreeMap::new(),
            unreadable: &read.unreadable,
        });
        let mut update = pull_update(&outcome.to_app, read.meta.modified_on);
        if mapping.on_delete() == OnDelete::EndMembership {
            update.membership_status = Some(Some("ended".to_owned()));
            update.source_modified_on = read.meta.modified_on.or(Some(self.now));
        }
        update.if_updated_at = Some(snapshot.mentor.updated_at);
        if !self.apply() {
            self.plan.push(PlanItem::Deletion { mentor_id: app_id });
            return Ok(());
        }
        info!(org = %self.org(), mentor = %app_id, contact = %link.dynamics_id, "the contact left the sync (deactivated or outside the contact filter); ending the membership and unlinking");
        match self.svc.app.apply_pull(self.org(), &app_id, &update).await {
            Ok(PullOutcome::Applied) => self.metrics.pull.written += 1,
            Ok(PullOutcome::Stale) => {
                self.touched.undecide(&app_id);
                self.reread.insert(app_id);
                return Ok(());
            }
            // The contact leaves the sync whatever the app makes of its last values: it is hidden regardless.
            Err(e) if e.is_record_level() => {
                warn!(org = %self.org(), mentor = %app_id, "the app refused the last values of a contact that left the sync");
            }
            Err(e) => return Err(e.into()),
        }
        self.release(&link, read.meta.etag.clone(), Why::LeftScope).await?;
        // Looked up once more by the retry phase: without a contact in scope, the mentor is queued.
        self.relink.insert(app_id);
        Ok(())
    }

    /// A linked contact was deleted in Dynamics: end the membership or only unlink, as the mapping says. The app row
    /// is never deleted; a mentor already gone from the app only loses the link.
    pub(super) async fn deleted(&mut self, link: Link) -> Result<()> {
        // The mentor is not marked decided: a contact re-created with its number (in this very page, perhaps) is
        // linked in this run; otherwise the retry phase looks it up once and queues it.
        if !self.apply() {
            self.plan.push(PlanItem::Deletion { mentor_id: link.app_id });
            return Ok(());
        }
        info!(org = %self.org(), mentor = %link.app_id, contact = %link.dynamics_id, "contact deleted in Dynamics; unlinking the mentor");
        let present = !self
            .svc
            .app
            .existing_mentors(self.org(), std::slice::from_ref(&link.app_id))
            .await?
            .is_empty();
        // The link goes first: whatever the app says below, the contact is gone.
        self.svc
            .store
            .delete_link_to(self.org(), MENTOR, &link.app_id, link.dynamics_id)
            .await?;
        self.cancel_release(link.dynamics_id).await?;
        self.forget(&link.app_id).await?;
        if present {
            self.relink.insert(link.app_id.clone());
            self.svc
                .app
                .set_dynamics_contact(self.org(), &link.app_id, None)
                .await?;
            if self.svc.mapping.on_delete() == OnDelete::EndMembership {
                let update = PullUpdate {
                    membership_status: Some(Some("ended".to_owned())),
                    source_modified_on: Some(self.now),
                    ..PullUpdate::default()
                };
                self.svc.app.apply_pull(self.org(), &link.app_id, &update).await?;
            }
            self.metrics.pull.written += 1;
        }
        Ok(())
    }

    /// A linked mentor is no longer in the app: the contact is released (hidden from the public site) and what the
    /// sync state held about the mentor is forgotten.
    pub(super) async fn mentor_gone(&mut self, link: Link) -> Result<()> {
        if self.touched.decide(&link.app_id, self.now) && !self.apply() {
            // Planned once already.
            return Ok(());
        }
        let etag = link.etag.clone();
        self.release(&link, etag, Why::MentorGone).await
    }

    /// Ends a link whose contact no mentor claims any more and records the contact to be hidden from the public
    /// site (by the time rule of this run and, until that succeeds, of every later run). What the sync state held
    /// about the mentor and that contact (failures, conflicts, cached status) is forgotten. Nothing happens when
    /// another mentor has taken the contact meanwhile.
    pub(super) async fn release(&mut self, link: &Link, etag: Option<String>, why: Why) -> Result<()> {
        if !self.apply() {
            self.plan.push(PlanItem::WriteDynamics {
                member_number: link.alternate_key.clone(),
                changes: self.hide_fields().iter().map(|(f, v)| (f.clone(), show(v))).collect(),
            });
            return Ok(());
        }
        let holder = self
            .svc
            .store
            .link_by_dynamics_id(self.org(), MENTOR, link.dynamics_id)
            .await?;
        let taken = holder.as_ref().is_some_and(|h| h.app_id != link.app_id);
        if !taken {
            info!(org = %self.org(), mentor = %link.app_id, contact = %link.dynamics_id, reason = why.text(), "releasing the contact: it is hidden from the public site and unlinked");
            self.svc
                .store
                .add_release(&Release {
                    organisation_id: self.org().to_owned(),
                    record_kind: MENTOR.to_owned(),
                    dynamics_id: link.dynamics_id,
                    app_id: link.app_id.clone(),
                    etag,
                    reason: why.text().to_owned(),
                    since: self.now,
                    attempts: 0,
                    last_error: None,
                })
                .await?;
            self.released.insert(link.dynamics_id);
        }
        // Only this link: the mentor may already have been linked to another contact.
        self.svc
            .store
            .delete_link_to(self.org(), MENTOR, &link.app_id, link.dynamics_id)
            .await?;
        self.forget(&link.app_id).await?;
        if !matches!(why, Why::MentorGone) {
            self.svc
                .app
                .set_dynamics_contact(self.org(), &link.app_id, None)
                .await?;
        }
        Ok(())
    }

    /// Forgets the failures, conflicts and cached status of a mentor whose link ended.
    async fn forget(&mut self, app_id: &str) -> Result<()> {
        self.svc.store.forget_record(self.org(), MENTOR, app_id).await?;
        self.failing.remove(app_id);
        self.conflicts.remove(app_id);
        Ok(())
    }

    /// The app-owned values that hide a contact no mentor claims: not on the public site, no certification.
    pub(super) fn hide_fields(&self) -> Vec<(String, AppValue)> {
        let mapping = &self.svc.mapping;
        let mut fields = Vec::new();
        if mapping.field("show_on_public_site").is_some() {
            fields.push(("show_on_public_site".to_owned(), AppValue::Bool(false)));
        }
        if mapping.field("certification_status").is_some() {
            fields.push(("certification_status".to_owned(), AppValue::Choice("none".to_owned())));
        }
        fields
    }

    /// Whether a Dynamics row already shows the hiding values (read column by column, so a row whose other
    /// columns do not decode can still be judged).
    pub(super) fn row_hidden(&self, row: &dynamics_client::Row) -> bool {
        self.hide_fields().iter().all(|(field, value)| {
            self.svc
                .mapping
                .field(field)
                .and_then(|spec| {
                    spec.from_dataverse(row)
                        .ok()
                        .map(|v| spec.normalise(&v) == spec.normalise(value))
                })
                .unwrap_or(false)
        })
    }
}

fn text(value: &AppValue) -> Option<String> {
    match value {
        AppValue::Text(t) | AppValue::Choice(t) => Some(t.clone()),
        _ => None,
    }
}
