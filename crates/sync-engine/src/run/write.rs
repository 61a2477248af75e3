//! Writing to Dynamics: queued writes go out in adaptive `$batch`es. Before a batch is sent, each record's intent
//! (the values it writes, with the run's sync stamp as its receipt) is saved on its link, so a worker killed before
//! the answer is recorded, or an answer that never arrives, leaves a state the next run reads correctly. A 412
//! re-reads the row and decides again; a released contact is hidden against the fresh etag.

use std::collections::BTreeSet;
use std::time::Instant;

use dynamics_client::{BatchMode, Row, Written};
use field_mapping::{AppRecord, AppValue};
use sync_store::{Direction, Link};
use tracing::{info, warn};
use uuid::Uuid;

use super::{Run, Subject};
use crate::decide::forget_settled;
use crate::error::Result;
use crate::plan::{PlanItem, show};
use crate::record::{SYNC_STAMP, shadow_expiry, shows_as_visible};
use crate::service::MENTOR;

/// A write to one Dynamics row, waiting for its batch.
#[derive(Debug, Clone)]
pub(crate) struct PendingWrite {
    pub(super) dynamics_id: Uuid,
    /// The etag the decision saw (`If-Match`); `None` writes whatever the version (`If-Match: *`).
    pub(super) etag: Option<String>,
    pub(super) fields: Vec<(String, AppValue)>,
    /// A second 412 on the same record waits for the next run rather than loop.
    pub(super) after_412: bool,
    pub(super) target: WriteTarget,
}

/// What a write is for.
#[derive(Debug, Clone)]
pub(super) enum WriteTarget {
    /// A mentor's decided values.
    Record(Box<RecordWrite>),
    /// Hiding a contact no mentor claims.
    Release {
        /// The mentor that held it, for the log.
        app_id: String,
    },
}

/// A mentor's write and the bookkeeping that follows it.
#[derive(Debug, Clone)]
pub(super) struct RecordWrite {
    /// The link as agreed before the write (saved, with the write's intent, before the batch is sent).
    pub(super) link: Link,
    /// The shadow once the write succeeds.
    pub(super) after_write: AppRecord,
    pub(super) subject: Subject,
    /// Admin resolutions this write carries out.
    pub(super) resolved: Vec<String>,
    pub(super) direction: Direction,
    /// Whether the link is new (the mentor takes the contact now).
    pub(super) new: bool,
    /// Whether the app's record of the mentor's contact changes with this link.
    pub(super) contact_changes: bool,
}

impl Run<'_> {
    /// Carries out the pending decisions and writes the queued Dynamics changes in batches, until nothing is left
    /// (a 412 decides a record again and may queue another write).
    pub(super) async fn flush(&mut self) -> Result<()> {
        loop {
            self.resolve_needs().await?;
            self.settle().await?;
            if self.pending.is_empty() {
                return Ok(());
            }
            if !self.apply() {
                for write in self.pending.drain(..) {
                    let member_number = match &write.target {
                        WriteTarget::Record(record) => record.link.alternate_key.clone(),
                        WriteTarget::Release { app_id } => app_id.clone(),
                    };
                    let changes = write.fields.iter().map(|(f, v)| (f.clone(), show(v))).collect();
                    self.plan.push(PlanItem::WriteDynamics { member_number, changes });
                }
                continue;
            }
            let take = self.sizer.size().min(self.pending.len());
            let chunk: Vec<PendingWrite> = self.pending.drain(..take).collect();
            self.write_batch(chunk).await?;
            self.keep_lock().await?;
        }
    }

    async fn write_batch(&mut self, chunk: Vec<PendingWrite>) -> Result<()> {
        let writer = self.svc.client.writer(&self.svc.mapping);
        let stamped = self.svc.mapping.field(SYNC_STAMP).is_some();
        // Each write's values, with its own sync stamp: the run's time, one second later for each earlier write of
        // the same mentor in this run, so the stamp Dynamics holds tells which write landed.
        let mut prepared: Vec<(PendingWrite, Row)> = Vec::with_capacity(chunk.len());
        for mut write in chunk {
            let mut values: AppRecord = write.fields.iter().cloned().collect();
            if stamped {
                let stamp = match &write.target {
                    WriteTarget::Record(record) => {
                        let before = self.touched.count_write(&record.link.app_id);
                        self.stamp_at(before)
                    }
                    WriteTarget::Release { .. } => self.stamp.clone(),
                };
                values.insert(SYNC_STAMP.to_owned(), stamp);
            }
            let body = self
                .svc
                .mapping
                .to_dataverse(&values)
                .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "));
            match body {
                Ok(body) => {
                    if let WriteTarget::Record(record) = &mut write.target {
                        record.link.pending = Some(values);
                    }
                    prepared.push((write, body));
                }
                Err(reason) => self.write_failed(&write, &reason).await?,
            }
        }
        // The intent is on record before anything is sent; a write whose intent could not be recorded is not sent.
        let unsaved = self.save_intents(&prepared).await?;
        let mut operations = Vec::with_capacity(prepared.len());
        let mut sent: Vec<PendingWrite> = Vec::with_capacity(prepared.len());
        for (write, body) in prepared {
            if let WriteTarget::Record(record) = &write.target
                && unsaved.contains(&record.link.app_id)
            {
                self.write_failed(&write, "the sync state could not record the write before sending it")
                    .await?;
                continue;
            }
            match writer.update_operation(write.dynamics_id, &body, write.etag.as_deref().unwrap_or("*")) {
                Ok(operation) => {
                    operations.push(operation);
                    sent.push(write);
                }
                Err(e) => self.write_failed(&write, &e.to_string()).await?,
            }
        }
        if operations.is_empty() {
            return Ok(());
        }
        let throttled_before = self.svc.client.metrics().throttled;
        let started = Instant::now();
        let answered = self
            .svc
            .client
            .execute_batch(&operations, BatchMode::ContinueOnError)
            .await;
        self.sizer.record(
            self.svc.client.metrics().throttled > throttled_before,
            started.elapsed(),
        );
        let parts = match answered {
            Ok(parts) => parts,
            // Sent, but no answer: Dynamics may have carried out any part of it. The contacts are read again and each
            // record decided afresh against what Dynamics holds (its saved intent tells whether its write landed). A
            // second loss in a row ends the run, the intents still on record for the next one.
            Err(dynamics_client::Error::OutcomeUnknown { .. }) if sent.iter().all(|w| !w.after_412) => {
                return self.confirm_unknown(sent).await;
            }
            // A batch refused or unreadable as a whole says nothing about its records: the run fails, the intents
            // stay on record for the next run to check, and no record is blamed (nor any coordinator mailed) for it.
            Err(e) => return Err(self.dynamics(e)),
        };
        let mut succeeded = Vec::new();
        // A failure about the run (throttling beyond the retries, for one) ends it once the parts that did succeed
        // are booked; the records it touched keep their intents for the next run and are never blamed for it.
        let mut run_failure = None;
        for (write, part) in sent.into_iter().zip(parts) {
            if part.not_applied() && !write.after_412 {
                // It did not run (or was undone): sent again with the next batch.
                self.pending.push(PendingWrite {
                    after_412: true,
                    ..write
                });
                continue;
            }
            match writer.written_from_part(&part) {
                Ok(written) => succeeded.push((write, written)),
                Err(dynamics_client::Error::Concurrency) if !write.after_412 => self.after_412(write).await?,
                Err(dynamics_client::Error::Concurrency) => {
                    let reason =
                        "the contact changed in Dynamics again while it was being written; retried on the next run";
                    self.write_failed(&write, reason).await?;
                }
                Err(dynamics_client::Error::NotFound { .. }) => {
                    let subject = match &write.target {
                        WriteTarget::Record(record) => record.subject.clone(),
                        WriteTarget::Release { app_id } => Subject {
                            app_id: app_id.clone(),
                            member_number: None,
                            coordinator: None,
                        },
                    };
                    let outcome = self.write_missed_row(write).await;
                    self.isolate(&subject, Direction::Pull, false, outcome).await?;
                }
                Err(e) if e.is_run_level() => {
                    run_failure.get_or_insert(e);
                }
                Err(e) => self.write_failed(&write, &e.to_string()).await?,
            }
        }
        self.writes_succeeded(succeeded).await?;
        self.report_progress();
        match run_failure {
            Some(e) => Err(self.dynamics(e)),
            None => Ok(()),
        }
    }

    /// A batch went unanswered: reads its contacts in bulk and decides each of its writes again against them.
    async fn confirm_unknown(&mut self, sent: Vec<PendingWrite>) -> Result<()> {
        warn!(org = %self.org(), writes = sent.len(), "no answer to a batch of writes; reading the contacts again to learn which landed");
        let ids: Vec<Uuid> = sent.iter().map(|w| w.dynamics_id).collect();
        let mut rows = self.rows_by_id(&ids, &self.select()).await?;
        for write in sent {
            let row = rows.remove(&write.dynamics_id);
            self.decide_again(write, row).await?;
        }
        Ok(())
    }

    /// The sync stamp of a mentor's `n`-th write this run.
    fn stamp_at(&self, n: u32) -> AppValue {
        match &self.stamp {
            AppValue::DateTime(at) => AppValue::DateTime(*at + chrono::Duration::seconds(i64::from(n))),
            other => other.clone(),
        }
    }

    /// Saves the links of a batch's record writes with their intents, in one transaction (or one by one if the
    /// store refuses the batch, so only the refused record fails); a mentor taking a contact cancels its release
    /// and records the contact in the app. Answers the mentors whose intent could not be saved.
    async fn save_intents(&mut self, prepared: &[(PendingWrite, Row)]) -> Result<BTreeSet<String>> {
        let records: Vec<&RecordWrite> = prepared
            .iter()
            .filter_map(|(write, _)| match &write.target {
                WriteTarget::Record(record) => Some(record.as_ref()),
                WriteTarget::Release { .. } => None,
            })
            .collect();
        let links: Vec<Link> = records.iter().map(|r| r.link.clone()).collect();
        let unsaved = self.save_links_isolated(&links).await?;
        let mut contacts = Vec::new();
        let mut claimed = Vec::new();
        for record in records.iter().filter(|r| !unsaved.contains(&r.link.app_id)) {
            if record.new {
                claimed.push(record.link.dynamics_id);
            }
            if record.contact_changes {
                contacts.push((record.link.app_id.clone(), Some(record.link.dynamics_id)));
            }
        }
        for id in claimed {
            self.cancel_release(id).await?;
        }
        self.svc.app.set_dynamics_contacts(self.org(), &contacts).await?;
        Ok(unsaved)
    }

    /// Saves links in one transaction; if the store refuses that for one record's sake, saves them one by one and
    /// answers the app ids it could not save.
    pub(super) async fn save_links_isolated(&self, links: &[Link]) -> Result<BTreeSet<String>> {
        match self.svc.store.save_links(links).await {
            Ok(()) => Ok(BTreeSet::new()),
            Err(e) if e.is_record_level() => {
                let mut unsaved = BTreeSet::new();
                for link in links {
                    match self.svc.store.save_link(link).await {
                        Ok(()) => {}
                        Err(e) if e.is_record_level() => {
                            warn!(org = %self.org(), mentor = %link.app_id, contact = %link.dynamics_id, "the sync state refused a link");
                            unsaved.insert(link.app_id.clone());
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(unsaved)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn writes_succeeded(&mut self, succeeded: Vec<(PendingWrite, Written)>) -> Result<()> {
        let mut links = Vec::new();
        let mut entries = Vec::new();
        let mut done = Vec::new();
        for (write, written) in succeeded {
            self.metrics.push.written += 1;
            match write.target {
                WriteTarget::Release { app_id } => {
                    info!(org = %self.org(), mentor = %app_id, contact = %write.dynamics_id, "released contact hidden from the public site");
                    self.cancel_release(write.dynamics_id).await?;
                }
                WriteTarget::Record(record) => {
                    let RecordWrite {
                        mut link,
                        mut after_write,
                        resolved,
                        ..
                    } = *record;
                    if let Some(stamp) = link.pending.as_ref().and_then(|p| p.get(SYNC_STAMP)) {
                        after_write.insert(SYNC_STAMP.to_owned(), stamp.clone());
                    }
                    link.seen = forget_settled(&link.seen, &after_write);
                    link.visible = shows_as_visible(&after_write);
                    link.expires_on = shadow_expiry(&after_write);
                    link.shadow = after_write;
                    link.pending = None;
                    link.dynamics_id = written.id.unwrap_or(link.dynamics_id);
                    link.etag = written.etag.or(link.etag);
                    if let Some(entry) = self.cache_entry(&link) {
                        entries.push(entry);
                    }
                    done.push((link.app_id.clone(), resolved));
                    links.push(link);
                }
            }
        }
        // A link the store refuses keeps its intent on record: the next run reads the row and learns the write landed.
        let unsaved = self.save_links_isolated(&links).await?;
        done.retain(|(app_id, _)| !unsaved.contains(app_id));
        self.svc.store.save_cache_entries(&entries).await?;
        for (app_id, resolved) in done {
            self.clear_failures(&app_id).await?;
            for id in &resolved {
                self.svc.store.mark_conflict_applied(id).await?;
            }
            if let Some(fields) = self.conflicts.get_mut(&app_id) {
                fields.retain(|_, pending| match pending {
                    crate::decide::Pending::Resolved { id, .. } => !resolved.contains(id),
                    crate::decide::Pending::Held { .. } => true,
                });
            }
        }
        Ok(())
    }

    /// Someone wrote the row between our read and our write: read it again and decide again, never overwrite. A
    /// released contact is hidden against the fresh etag (only app-owned columns are written).
    async fn after_412(&mut self, write: PendingWrite) -> Result<()> {
        info!(org = %self.org(), contact = %write.dynamics_id, "contact changed in Dynamics during the run (412); deciding again");
        let writer = self.svc.client.writer(&self.svc.mapping);
        let row = match writer.read(write.dynamics_id, &self.select()).await {
            Ok(row) => row,
            Err(e) if e.is_run_level() => return Err(self.dynamics(e)),
            Err(e) => return self.write_failed(&write, &e.to_string()).await,
        };
        self.decide_again(write, row).await
    }

    /// Decides a write again against the row as Dynamics holds it now (`None`: deleted). A write decided again that
    /// fails the same way waits for the next run.
    async fn decide_again(&mut self, write: PendingWrite, row: Option<Row>) -> Result<()> {
        let Some(row) = row else {
            return self.write_missed_row(write).await;
        };
        match write.target {
            WriteTarget::Release { app_id } => {
                // Only the identity and the hiding columns matter here: a row whose other columns do not decode is
                // still hidden.
                let meta = match self.meta(&row) {
                    Ok(meta) => meta,
                    Err(reason) => {
                        return self
                            .write_failed(
                                &PendingWrite {
                                    target: WriteTarget::Release { app_id },
                                    ..write
                                },
                                &reason,
                            )
                            .await;
                    }
                };
                let claimed = self
                    .svc
                    .store
                    .link_by_dynamics_id(self.org(), MENTOR, write.dynamics_id)
                    .await?
                    .is_some();
                if claimed || self.row_hidden(&row) {
                    return self.cancel_release(write.dynamics_id).await;
                }
                self.pending.push(PendingWrite {
                    dynamics_id: write.dynamics_id,
                    etag: meta.etag,
                    fields: write.fields,
                    after_412: true,
                    target: WriteTarget::Release { app_id },
                });
                Ok(())
            }
            WriteTarget::Record(record) => {
                let app_id = record.link.app_id.clone();
                let snapshot = self
                    .svc
                    .app
                    .mentors(self.org(), std::slice::from_ref(&app_id))
                    .await?
                    .into_iter()
                    .next();
                let link = self.link_of(&app_id).await?;
                let (Some(snapshot), Some(link)) = (snapshot, link) else {
                    // The mentor left the app during the run: the next run's time rule releases the contact.
                    return Ok(());
                };
                self.touched.undecide(&app_id);
                // The admin resolutions this write carried still apply to the new decision (they are still in the
                // run's view of conflicts, as they were not carried out).
                let outcome = self
                    .with_row(snapshot.clone(), link, &row, record.direction, None, true)
                    .await;
                self.isolate(&Subject::of(&snapshot), record.direction, false, outcome)
                    .await
            }
        }
    }

    /// The row is gone (404 on its write): a linked contact was deleted; a released one needs no hiding.
    async fn write_missed_row(&mut self, write: PendingWrite) -> Result<()> {
        match write.target {
            WriteTarget::Release { .. } => self.cancel_release(write.dynamics_id).await,
            WriteTarget::Record(record) => {
                if record.new {
                    // The contact it was about to take is gone: nothing stays linked, and the mentor is looked up
                    // again.
                    self.svc
                        .store
                        .delete_link_to(self.org(), MENTOR, &record.link.app_id, record.link.dynamics_id)
                        .await?;
                    self.svc
                        .app
                        .set_dynamics_contact(self.org(), &record.link.app_id, None)
                        .await?;
                    self.relink.insert(record.link.app_id);
                    return Ok(());
                }
                self.deleted(record.link).await
            }
        }
    }

    async fn write_failed(&mut self, write: &PendingWrite, reason: &str) -> Result<()> {
        match &write.target {
            WriteTarget::Release { app_id } => {
                self.metrics.push.failed += 1;
                warn!(org = %self.org(), mentor = %app_id, contact = %write.dynamics_id, reason = %reason, "a released contact could not be hidden from the public site; tried again next run");
                self.svc
                    .store
                    .release_failed(self.org(), MENTOR, write.dynamics_id, write.etag.as_deref(), reason)
                    .await?;
                Ok(())
            }
            WriteTarget::Record(record) => {
                let certification = write
                    .fields
                    .iter()
                    .any(|(f, _)| crate::record::CERTIFICATION_FIELDS.contains(&f.as_str()));
                let subject = record.subject.clone();
                // A write to Dynamics counts as app -> Dynamics whichever phase decided it, like its successes.
                self.queue_failure(&subject, Direction::Push, reason, certification)
                    .await
            }
        }
    }
}
