//! One run: check the schema, pull what changed in Dynamics, push what changed in the app (and what expired by the
//! passing of time), and write both sides in batches, committing each piece of progress only after its data.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};
use dynamics_client::{
    AlternateKey, BatchMode, BatchSizer, Change, ChangeRead, ClientMetrics, Filter, Literal, Order, Query, Row,
    UpsertMode, Written,
};
use field_mapping::{AppRecord, AppValue, ConflictStrategy, Decision, Drift, OnDelete};
use futures::StreamExt;
use sync_store::{
    CacheEntry, Conflict, ConflictState, Direction, FailureState, Link, MentorSnapshot, Notification, PullUpdate,
    RunLock, RunMetrics, Severity, Side, Watermark,
};
use tracing::{error, info, warn};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::notify;
use crate::plan::{Plan, PlanItem, show};
use crate::record::{
    CERTIFICATION_FIELDS, SYNC_STAMP, app_record, changed_at, local_today, pull_update, shadow_expiry, shows_as_visible,
};
use crate::service::{MENTOR, NOTE_PULL_COMPLETED, Progress, SyncService};

/// Whether a run changes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A real run.
    Apply,
    /// A dry run: decide everything, write nothing.
    Plan,
}

/// Mentors read from the app per page.
const APP_PAGE: u32 = 500;

pub(crate) struct Run<'s> {
    svc: &'s SyncService,
    mode: Mode,
    lock: Option<&'s RunLock>,
    now: DateTime<Utc>,
    today: NaiveDate,
    metrics: RunMetrics,
    client_start: ClientMetrics,
    pub(crate) drift: Vec<String>,
    unreadable: BTreeSet<String>,
    writes_enabled: bool,
    change_tracking: bool,
    resolutions: BTreeMap<(String, String), (String, Side)>,
    /// Conflicts waiting for an admin: neither side of these fields is written until they are resolved.
    open_conflicts: BTreeSet<(String, String)>,
    /// App ids with a failed record, so a success clears it without a query per record.
    failing: BTreeSet<String>,
    pending: Vec<PendingWrite>,
    sizer: BatchSizer,
    plan: Vec<PlanItem>,
    /// Mentors decided this run, with the app change time each decision saw: a later app change is decided again.
    processed: BTreeMap<String, DateTime<Utc>>,
}

/// A write to one Dynamics contact, waiting for its batch.
#[derive(Debug, Clone)]
struct PendingWrite {
    app_id: String,
    member_number: Option<String>,
    coordinator: Option<String>,
    dynamics_id: Option<Uuid>,
    etag: Option<String>,
    fields: Vec<(String, AppValue)>,
    shadow_after: AppRecord,
    dynamics_modified_on: Option<DateTime<Utc>>,
    resolved: Vec<String>,
    direction: Direction,
    after_412: bool,
}

/// What the three-way comparison decided for one record.
struct Decided {
    to_app: Vec<(String, AppValue)>,
    to_dynamics: Vec<(String, AppValue)>,
    /// The values both sides hold once the app writes are done (pending Dynamics writes not included).
    agreed: AppRecord,
    /// `agreed` plus the Dynamics writes, once they succeed.
    after_write: AppRecord,
    resolved_app: Vec<String>,
    resolved_dynamics: Vec<String>,
}

/// A Dynamics row's identity and version.
struct RowMeta {
    id: Uuid,
    etag: Option<String>,
    modified_on: Option<DateTime<Utc>>,
    key: Option<String>,
}

impl<'s> Run<'s> {
    pub(crate) fn new(svc: &'s SyncService, mode: Mode, lock: Option<&'s RunLock>) -> Self {
        let now = svc.clock.now();
        Run {
            svc,
            mode,
            lock,
            now,
            today: local_today(now, svc.organisation.time_zone),
            metrics: RunMetrics::default(),
            client_start: svc.client.metrics(),
            drift: Vec::new(),
            unreadable: BTreeSet::new(),
            writes_enabled: true,
            change_tracking: false,
            resolutions: BTreeMap::new(),
            open_conflicts: BTreeSet::new(),
            failing: BTreeSet::new(),
            pending: Vec::new(),
            sizer: BatchSizer::new(
                usize::try_from(svc.sync.batch_size_initial).unwrap_or(50),
                usize::try_from(svc.sync.batch_size_max).unwrap_or(1000),
            ),
            plan: Vec::new(),
            processed: BTreeMap::new(),
        }
    }

    fn org(&self) -> &str {
        &self.svc.organisation.id
    }

    fn apply(&self) -> bool {
        self.mode == Mode::Apply
    }

    fn dynamics(&self, source: dynamics_client::Error) -> Error {
        Error::Dynamics {
            organisation: self.org().to_owned(),
            source,
        }
    }

    /// The run's metrics with the client's counters added.
    pub(crate) fn finish_metrics(&self) -> RunMetrics {
        let mut metrics = self.metrics.clone();
        let client = self.svc.client.metrics();
        metrics.requests = client.requests - self.client_start.requests;
        metrics.throttled = client.throttled - self.client_start.throttled;
        metrics.retried = client.retried - self.client_start.retried;
        metrics.waited_ms = u64::try_from((client.waited - self.client_start.waited).as_millis()).unwrap_or(u64::MAX);
        metrics
    }

    pub(crate) fn into_plan(self) -> Plan {
        Plan { items: self.plan }
    }

    // ----- the run -----

    pub(crate) async fn sync(&mut self) -> Result<()> {
        self.prepare().await?;
        self.pull().await?;
        // The health monitor reports the last successful sync per direction from this note.
        self.metrics
            .notes
            .insert(NOTE_PULL_COMPLETED.to_owned(), "true".to_owned());
        self.push().await?;
        self.flush().await?;
        // With schema drift nothing was written, so nothing can be confirmed.
        if self.apply() && self.writes_enabled {
            self.svc.store.confirm_cache(self.org(), self.now).await?;
        }
        Ok(())
    }

    pub(crate) async fn sync_one(&mut self, mentor_id: &str) -> Result<()> {
        self.prepare().await?;
        let snapshots = self.svc.app.mentors(self.org(), &[mentor_id.to_owned()]).await?;
        let Some(snapshot) = snapshots.into_iter().next() else {
            return Err(Error::NotFound(format!("mentor {mentor_id}")));
        };
        let link = self.link_of(mentor_id).await?;
        match link {
            Some(link) => {
                let writer = self.svc.client.writer(&self.svc.mapping);
                let row = writer
                    .read(link.dynamics_id, &self.select())
                    .await
                    .map_err(|e| self.dynamics(e))?;
                match row {
                    Some(row) => self.with_row(snapshot, Some(link), &row, Direction::Push).await?,
                    None => self.deleted(link).await?,
                }
            }
            None => self.unlinked(snapshot).await?,
        }
        self.flush().await
    }

    /// Connectivity, then the schema-drift guard, then pending conflict resolutions.
    async fn prepare(&mut self) -> Result<()> {
        // Reading the metadata also proves the token and the application user work, so no WhoAmI is spent.
        let client = &self.svc.client;
        let mapped: Vec<String> = self.svc.mapping.fields().iter().map(|f| f.column.clone()).collect();
        let table = client
            .table_metadata_for(self.svc.mapping.table(), &mapped)
            .await
            .map_err(|e| self.dynamics(e))?;
        self.change_tracking = table.change_tracking;
        let drift = self.svc.mapping.check_schema(&table);
        let cause = format!("schema-drift:{}", self.svc.mapping.table());
        if drift.is_empty() {
            if self.apply() {
                self.svc.store.resolve_alert(self.org(), &cause, self.now).await?;
            }
        } else {
            self.writes_enabled = false;
            for item in &drift {
                if let Drift::MissingColumn { field, .. } | Drift::WrongType { field, .. } = item {
                    self.unreadable.insert(field.clone());
                }
            }
            self.drift = drift.iter().map(ToString::to_string).collect();
            error!(org = %self.org(), drift = %self.drift.join("; "), "schema drift: nothing is written to Dynamics this run");
            if self.apply() {
                let message = format!(
                    "The Dynamics table `{}` no longer matches the field mapping, so the sync writes nothing to Dynamics until it is fixed: {}",
                    self.svc.mapping.table(),
                    self.drift.join("; ")
                );
                self.svc
                    .store
                    .raise_alert(
                        self.org(),
                        &cause,
                        "schema-drift",
                        Severity::Critical,
                        &message,
                        self.now,
                    )
                    .await?;
            }
        }
        for state in [FailureState::Retrying, FailureState::Dead, FailureState::Dismissed] {
            // The queue also holds other record kinds (postings of the accounting export); only mentors are ours.
            for failure in self.svc.store.failures(self.org(), state).await? {
                if failure.record_kind == MENTOR {
                    self.failing.insert(failure.record_key);
                }
            }
        }
        for conflict in self.svc.store.pending_conflicts(self.org()).await? {
            match conflict.state {
                ConflictState::Resolved(side) => {
                    self.resolutions
                        .insert((conflict.app_id, conflict.field), (conflict.id, side));
                }
                ConflictState::Open => {
                    self.open_conflicts.insert((conflict.app_id, conflict.field));
                }
                ConflictState::Applied => {}
            }
        }
        Ok(())
    }

    /// The columns to read: the mapping's, less those drift made unreadable.
    fn select(&self) -> Vec<String> {
        let mapping = &self.svc.mapping;
        let mut columns = vec![mapping.primary_id().to_owned(), mapping.modified_on().to_owned()];
        for spec in mapping.fields() {
            let key = spec.read_key();
            if !self.unreadable.contains(&spec.field) && !columns.contains(&key) {
                columns.push(key);
            }
        }
        columns
    }

    // ----- pull: Dynamics to app -----

    async fn pull(&mut self) -> Result<()> {
        let mapping = &self.svc.mapping;
        let table = mapping.table().to_owned();
        let filter = self.svc.organisation.filters.get(&table).cloned();
        let watermark = self.svc.store.watermark(self.org(), Direction::Pull, &table).await?;
        let select = self.select();
        if self.svc.sync.change_tracking && self.change_tracking && filter.is_none() {
            let query = Query::new(mapping.entity_set()).select(&select);
            let client = self.svc.client.clone();
            // A delta link from another instance (the instance URL changed) cannot be followed: start over.
            let api_base = client.api_base().as_str().to_owned();
            // A delta link keeps the columns it was made with: after a mapping change or under schema drift it
            // would read the wrong ones, so it is followed only when its columns are the ones read now.
            let delta_link = watermark.delta_link.as_deref().filter(|link| {
                let ours = link.starts_with(&api_base);
                if !ours {
                    warn!(org = %self.org(), "the stored delta link is for another Dynamics instance; reading every contact again");
                }
                let same_columns = selected_columns(link) == select.iter().cloned().collect::<BTreeSet<_>>();
                if ours && !same_columns {
                    warn!(org = %self.org(), "the columns read changed since the delta link was made; reading every contact again");
                }
                ours && same_columns
            });
            let mut stream = match delta_link {
                Some(link) => match client.changes_since(link).await.map_err(|e| self.dynamics(e))? {
                    ChangeRead::Changes(stream) => stream,
                    ChangeRead::FullResyncNeeded => {
                        warn!(org = %self.org(), "the change-tracking token expired; reading every contact again (full resync)");
                        self.metrics.full_resyncs += 1;
                        client.track_changes(&query).map_err(|e| self.dynamics(e))?
                    }
                },
                None => client.track_changes(&query).map_err(|e| self.dynamics(e))?,
            };
            while let Some(page) = stream.next().await {
                let page = page.map_err(|e| self.dynamics(e))?;
                self.keep_lock().await?;
                let mut rows = Vec::new();
                for change in page.changes {
                    match change {
                        Change::Upsert(row) => rows.push(row),
                        Change::Deleted(id) => self.pull_deletion(id).await?,
                    }
                }
                self.pull_rows(rows).await?;
                // Writes gather across pages into full batches; the delta link (on the last page) is saved only
                // once every write before it is done.
                if self.pending.len() >= self.sizer.size() || page.delta_link.is_some() {
                    self.flush().await?;
                }
                // Under schema drift nothing is written, so the delta link stays where it was: the changes it
                // would skip are read again once the drift is fixed.
                if let Some(link) = page.delta_link {
                    let mark = Watermark {
                        delta_link: Some(link),
                        ..Watermark::default()
                    };
                    self.save_watermark(Direction::Pull, &table, mark).await?;
                }
            }
        } else {
            let mut query = Query::new(mapping.entity_set())
                .select(&select)
                .order_by(mapping.modified_on(), Order::Asc)
                .order_by(mapping.primary_id(), Order::Asc);
            if let Some(filter) = filter {
                query = query.filter(Filter::raw(filter));
            }
            if let Some(at) = watermark.at {
                let since = at - chrono::Duration::from_std(self.svc.sync.overlap).unwrap_or_default();
                query = query.filter(Filter::ge(mapping.modified_on(), Literal::DateTime(since)));
            }
            let mut pages = Box::pin(self.svc.client.pages::<Row>(&query));
            let mut mark = watermark.at;
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| self.dynamics(e))?;
                self.keep_lock().await?;
                let newest = page.rows.iter().filter_map(|r| self.meta(r).ok()?.modified_on).max();
                self.pull_rows(page.rows).await?;
                mark = mark.max(newest);
                if self.pending.len() >= self.sizer.size() {
                    self.flush().await?;
                }
                // The watermark moves only when every write of the pages it covers is done.
                if self.pending.is_empty() {
                    self.save_watermark(
                        Direction::Pull,
                        &table,
                        Watermark {
                            at: mark,
                            ..Watermark::default()
                        },
                    )
                    .await?;
                }
            }
            self.flush().await?;
            self.save_watermark(
                Direction::Pull,
                &table,
                Watermark {
                    at: mark,
                    ..Watermark::default()
                },
            )
            .await?;
        }
        self.retry_pull_failures().await
    }

    fn meta(&self, row: &Row) -> std::result::Result<RowMeta, String> {
        let mapping = &self.svc.mapping;
        let id = row
            .get(mapping.primary_id())
            .and_then(|v| v.as_str())
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| format!("a {} row has no valid {}", mapping.table(), mapping.primary_id()))?;
        Ok(RowMeta {
            id,
            etag: row.get("@odata.etag").and_then(|v| v.as_str()).map(str::to_owned),
            modified_on: row
                .get(mapping.modified_on())
                .and_then(|v| v.as_str())
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.with_timezone(&Utc)),
            key: row
                .get(&mapping.alternate_key().read_key())
                .and_then(|v| v.as_str())
                .map(str::to_owned),
        })
    }

    /// Reads the readable mapped fields of a row; every failure is reported together.
    fn decode(&self, row: &Row) -> std::result::Result<AppRecord, String> {
        let mut record = AppRecord::new();
        let mut errors = Vec::new();
        for spec in self.svc.mapping.fields() {
            if self.unreadable.contains(&spec.field) {
                continue;
            }
            match spec.from_dataverse(row) {
                Ok(value) => {
                    record.insert(spec.field.clone(), value);
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        if errors.is_empty() {
            Ok(record)
        } else {
            Err(errors.join("; "))
        }
    }

    /// Applies a page of changed contacts: links new ones by member number, then decides each record.
    async fn pull_rows(&mut self, rows: Vec<Row>) -> Result<()> {
        let mut metas = Vec::with_capacity(rows.len());
        for row in rows {
            self.metrics.pull.read += 1;
            match self.meta(&row) {
                Ok(meta) => metas.push((meta, row)),
                Err(reason) => warn!(org = %self.org(), reason = %reason, "skipping a malformed row"),
            }
        }
        let ids: Vec<Uuid> = metas.iter().map(|(m, _)| m.id).collect();
        let links: BTreeMap<Uuid, Link> = self
            .svc
            .store
            .links_by_dynamics_ids(self.org(), MENTOR, &ids)
            .await?
            .into_iter()
            .map(|l| (l.dynamics_id, l))
            .collect();
        let linked_ids: Vec<String> = links.values().map(|l| l.app_id.clone()).collect();
        let mut by_app_id: BTreeMap<String, MentorSnapshot> = self
            .svc
            .app
            .mentors(self.org(), &linked_ids)
            .await?
            .into_iter()
            .map(|s| (s.mentor.id.clone(), s))
            .collect();
        let keys: Vec<String> = metas
            .iter()
            .filter(|(m, _)| !links.contains_key(&m.id))
            .filter_map(|(m, _)| m.key.clone())
            .collect();
        let mut by_key: BTreeMap<String, MentorSnapshot> = self
            .svc
            .app
            .mentors_by_member_numbers(self.org(), &keys)
            .await?
            .into_iter()
            .filter_map(|s| Some((s.mentor.member_number.clone()?, s)))
            .collect();
        for (meta, row) in metas {
            let link = links.get(&meta.id).cloned();
            let snapshot = match &link {
                Some(link) => by_app_id.remove(&link.app_id),
                None => meta.key.as_ref().and_then(|k| by_key.remove(k)),
            };
            let Some(snapshot) = snapshot else {
                // A contact that is not a mentor of this organisation: none of the sync's business.
                self.metrics.pull.skipped += 1;
                continue;
            };
            if self.processed.contains_key(&snapshot.mentor.id) {
                continue;
            }
            if let Some(link) = &link
                && link.etag.is_some()
                && link.etag == meta.etag
                && changed_at(&snapshot) <= link.synced_at
            {
                // Seen before (the overlap window reads some rows twice) and unchanged on both sides.
                self.metrics.pull.skipped += 1;
                continue;
            }
            self.with_row(snapshot, link, &row, Direction::Pull).await?;
        }
        self.report_progress();
        Ok(())
    }

    /// Tells the service's progress observer (a progress bar on a terminal) how far the run is.
    fn report_progress(&self) {
        if let Some(observe) = &self.svc.progress {
            observe(&Progress {
                organisation: self.org(),
                pulled: self.metrics.pull.read,
                pushed: self.metrics.push.written + self.metrics.push.failed,
            });
        }
    }

    /// Decides a record against a freshly read Dynamics row.
    async fn with_row(
        &mut self,
        snapshot: MentorSnapshot,
        link: Option<Link>,
        row: &Row,
        direction: Direction,
    ) -> Result<()> {
        let meta = match self.meta(row) {
            Ok(meta) => meta,
            Err(reason) => return self.record_failure(&snapshot, direction, &reason, false).await,
        };
        let dynamics = match self.decode(row) {
            Ok(record) => record,
            Err(reason) => {
                let reason = format!("the Dynamics row cannot be read: {reason}");
                return self.record_failure(&snapshot, direction, &reason, false).await;
            }
        };
        self.reconcile(snapshot, link, Some(dynamics), Some(meta), direction, false)
            .await
    }

    async fn pull_deletion(&mut self, id: Uuid) -> Result<()> {
        if let Some(link) = self.svc.store.link_by_dynamics_id(self.org(), MENTOR, id).await? {
            self.deleted(link).await?;
        }
        Ok(())
    }

    /// A linked contact was deleted in Dynamics: end the membership or only unlink, as the mapping says. The app row
    /// is never deleted.
    async fn deleted(&mut self, link: Link) -> Result<()> {
        self.processed.insert(link.app_id.clone(), self.now);
        if !self.apply() {
            self.plan.push(PlanItem::Deletion { mentor_id: link.app_id });
            return Ok(());
        }
        info!(org = %self.org(), mentor = %link.app_id, "contact deleted in Dynamics; unlinking the mentor");
        if self.svc.mapping.on_delete() == OnDelete::EndMembership {
            let update = PullUpdate {
                membership_status: Some(Some("ended".to_owned())),
                source_modified_on: Some(self.now),
                ..PullUpdate::default()
            };
            self.svc.app.apply_pull(self.org(), &link.app_id, &update).await?;
        }
        self.svc
            .app
            .set_dynamics_contact(self.org(), &link.app_id, None)
            .await?;
        self.svc.store.delete_link(self.org(), MENTOR, &link.app_id).await?;
        self.svc.store.delete_cache_entry(self.org(), &link.app_id).await?;
        self.metrics.pull.written += 1;
        Ok(())
    }

    async fn retry_pull_failures(&mut self) -> Result<()> {
        let failures = self.svc.store.failures(self.org(), FailureState::Retrying).await?;
        let writer = self.svc.client.writer(&self.svc.mapping);
        for failure in failures.into_iter().filter(|f| f.direction == Direction::Pull) {
            let snapshots = self
                .svc
                .app
                .mentors(self.org(), std::slice::from_ref(&failure.record_key))
                .await?;
            let Some(snapshot) = snapshots.into_iter().next() else {
                continue;
            };
            if self.processed.contains_key(&snapshot.mentor.id) {
                continue;
            }
            let link = self.link_of(&snapshot.mentor.id).await?;
            let row = match &link {
                Some(link) => writer
                    .read(link.dynamics_id, &self.select())
                    .await
                    .map_err(|e| self.dynamics(e))?,
                None => None,
            };
            match (row, link) {
                (Some(row), link) => self.with_row(snapshot, link, &row, Direction::Pull).await?,
                (None, Some(link)) => self.deleted(link).await?,
                (None, None) => self.unlinked(snapshot).await?,
            }
        }
        Ok(())
    }

    // ----- push: app to Dynamics -----

    async fn push(&mut self) -> Result<()> {
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
        self.flush_push(&table, cursor.as_ref()).await?;
        self.push_expired().await?;
        self.push_retries_and_resolutions().await
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

    /// Moves a watermark or the delta link. Not in a dry run, and not under schema drift: nothing was written then,
    /// so the changes it would pass over must be read again once writes are possible.
    async fn save_watermark(&self, direction: Direction, table: &str, mark: Watermark) -> Result<()> {
        if !self.apply() || !self.writes_enabled {
            return Ok(());
        }
        Ok(self
            .svc
            .store
            .set_watermark(self.org(), direction, table, &mark, self.now)
            .await?)
    }

    /// The time rule: certifications that expired by the passing of time change no app row, so every run asks for
    /// mentors Dynamics still shows as visible whose expiry date has passed.
    async fn push_expired(&mut self) -> Result<()> {
        // Paged by app id, so mentors whose writes keep failing cannot hide the ones after them.
        let mut after: Option<String> = None;
        loop {
            let due = self
                .svc
                .store
                .visible_but_expired(self.org(), MENTOR, self.today, after.as_deref(), APP_PAGE)
                .await?;
            let Some(last) = due.last().cloned() else { return Ok(()) };
            let snapshots = self.svc.app.mentors(self.org(), &due).await?;
            let found: BTreeSet<String> = snapshots.iter().map(|s| s.mentor.id.clone()).collect();
            let gone: Vec<String> = due.iter().filter(|id| !found.contains(*id)).cloned().collect();
            self.push_snapshots(snapshots).await?;
            self.hide_gone(&gone).await?;
            self.flush().await?;
            if due.len() < APP_PAGE as usize {
                return Ok(());
            }
            after = Some(last);
        }
    }

    /// Linked mentors no longer in the app (deleted, or moved to another organisation) cannot be decided from app
    /// data, but Dynamics must not keep showing them: they are hidden from the public site from the link alone.
    async fn hide_gone(&mut self, app_ids: &[String]) -> Result<()> {
        if app_ids.is_empty() || !self.writes_enabled {
            return Ok(());
        }
        let mapping = &self.svc.mapping;
        let mut fields = Vec::new();
        if mapping.field("show_on_public_site").is_some() {
            fields.push(("show_on_public_site".to_owned(), AppValue::Bool(false)));
        }
        if mapping.field("certification_status").is_some() {
            fields.push(("certification_status".to_owned(), AppValue::Choice("none".to_owned())));
        }
        for link in self.svc.store.links(self.org(), MENTOR, app_ids).await? {
            warn!(org = %self.org(), mentor = %link.app_id, "the mentor is no longer in the app; hiding the contact from the public site");
            let mut shadow_after = link.shadow.clone();
            for (field, value) in &fields {
                shadow_after.insert(field.clone(), value.clone());
            }
            self.processed.insert(link.app_id.clone(), self.now);
            self.pending.push(PendingWrite {
                app_id: link.app_id,
                member_number: Some(link.alternate_key),
                coordinator: None,
                dynamics_id: Some(link.dynamics_id),
                etag: link.etag,
                fields: fields.clone(),
                shadow_after,
                dynamics_modified_on: link.dynamics_modified_on,
                resolved: Vec::new(),
                direction: Direction::Push,
                after_412: false,
            });
        }
        Ok(())
    }

    async fn push_retries_and_resolutions(&mut self) -> Result<()> {
        let mut ids: Vec<String> = self
            .svc
            .store
            .failures(self.org(), FailureState::Retrying)
            .await?
            .into_iter()
            .filter(|f| f.direction == Direction::Push && f.record_kind == MENTOR)
            .map(|f| f.record_key)
            .collect();
        ids.extend(self.resolutions.keys().map(|(app_id, _)| app_id.clone()));
        ids.retain(|id| !self.processed.contains_key(id));
        ids.sort();
        ids.dedup();
        for chunk in ids.chunks(APP_PAGE as usize) {
            let snapshots = self.svc.app.mentors(self.org(), chunk).await?;
            let links: BTreeMap<String, Link> = self
                .svc
                .store
                .links(self.org(), MENTOR, chunk)
                .await?
                .into_iter()
                .map(|l| (l.app_id.clone(), l))
                .collect();
            let writer = self.svc.client.writer(&self.svc.mapping);
            for snapshot in snapshots {
                // A retried or resolved record is compared with Dynamics as it is now, not with the shadow.
                match links.get(&snapshot.mentor.id).cloned() {
                    Some(link) => {
                        match writer
                            .read(link.dynamics_id, &self.select())
                            .await
                            .map_err(|e| self.dynamics(e))?
                        {
                            Some(row) => self.with_row(snapshot, Some(link), &row, Direction::Push).await?,
                            None => self.deleted(link).await?,
                        }
                    }
                    None => self.unlinked(snapshot).await?,
                }
            }
            self.flush().await?;
        }
        Ok(())
    }

    /// Decides app-changed mentors against their shadows (what Dynamics held when both last agreed); the etag
    /// guards each write, so a concurrent change in Dynamics is caught rather than overwritten.
    async fn push_snapshots(&mut self, snapshots: Vec<MentorSnapshot>) -> Result<()> {
        // A mentor the pull decided earlier in this run but whose app row changed since is decided again; its
        // pending write (if any) goes out first so the new decision starts from the link it leaves.
        let changed_since = snapshots.iter().any(|s| {
            self.processed
                .get(&s.mentor.id)
                .is_some_and(|seen| changed_at(s) > *seen)
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
            let decided_already = self
                .processed
                .get(&snapshot.mentor.id)
                .is_some_and(|seen| changed_at(&snapshot) <= *seen);
            if decided_already || self.has_resolution(&snapshot.mentor.id) {
                // Resolved conflicts are applied against Dynamics as it is now, later in the run.
                continue;
            }
            self.metrics.push.read += 1;
            match links.get(&snapshot.mentor.id).cloned() {
                // A shadow missing a mapped field (a field added to the mapping, or lost while the schema
                // drifted) cannot stand in for Dynamics: read the row.
                Some(link)
                    if self
                        .svc
                        .mapping
                        .fields()
                        .iter()
                        .any(|f| !link.shadow.contains_key(&f.field)) =>
                {
                    let writer = self.svc.client.writer(&self.svc.mapping);
                    match writer
                        .read(link.dynamics_id, &self.select())
                        .await
                        .map_err(|e| self.dynamics(e))?
                    {
                        Some(row) => self.with_row(snapshot, Some(link), &row, Direction::Push).await?,
                        None => self.deleted(link).await?,
                    }
                }
                Some(link) => {
                    let meta = RowMeta {
                        id: link.dynamics_id,
                        etag: link.etag.clone(),
                        modified_on: link.dynamics_modified_on,
                        key: Some(link.alternate_key.clone()),
                    };
                    self.reconcile(snapshot, Some(link), None, Some(meta), Direction::Push, false)
                        .await?;
                }
                None => self.unlinked(snapshot).await?,
            }
        }
        Ok(())
    }

    /// A mentor with no link yet: find the contact by member number.
    async fn unlinked(&mut self, snapshot: MentorSnapshot) -> Result<()> {
        let Some(number) = snapshot.mentor.member_number.clone() else {
            self.processed.insert(snapshot.mentor.id.clone(), changed_at(&snapshot));
            return self
                .record_failure(
                    &snapshot,
                    Direction::Push,
                    "the mentor has no member number, so no Dynamics contact can be found",
                    true,
                )
                .await;
        };
        let key = match AlternateKey::new(&self.svc.mapping.alternate_key().column, &number) {
            Ok(key) => key,
            Err(e) => {
                self.processed.insert(snapshot.mentor.id.clone(), changed_at(&snapshot));
                return self
                    .record_failure(&snapshot, Direction::Push, &e.to_string(), true)
                    .await;
            }
        };
        let row = self
            .svc
            .client
            .read_by_key(self.svc.mapping.entity_set(), &key, &self.select())
            .await
            .map_err(|e| self.dynamics(e))?;
        match row {
            Some(row) => self.with_row(snapshot, None, &row, Direction::Push).await,
            None => {
                self.processed.insert(snapshot.mentor.id.clone(), changed_at(&snapshot));
                let reason = format!(
                    "no contact with member number {number} in Dynamics; check the member number or register the member in Dynamics"
                );
                self.record_failure(&snapshot, Direction::Push, &reason, true).await
            }
        }
    }

    // ----- deciding one record -----

    /// The three-way decision for one record, and its effects: app writes now, Dynamics writes queued, the shadow
    /// saved when nothing is left to write.
    async fn reconcile(
        &mut self,
        snapshot: MentorSnapshot,
        link: Option<Link>,
        dynamics: Option<AppRecord>,
        meta: Option<RowMeta>,
        direction: Direction,
        after_412: bool,
    ) -> Result<()> {
        let app_id = snapshot.mentor.id.clone();
        self.processed.insert(app_id.clone(), changed_at(&snapshot));
        let shadow = link.as_ref().map(|l| l.shadow.clone());
        let app = app_record(&self.svc.mapping, &snapshot, self.today, shadow.as_ref());
        let dynamics = dynamics.or_else(|| shadow.clone()).unwrap_or_default();
        let modified_on = meta.as_ref().and_then(|m| m.modified_on);
        let decided = self
            .decide(&snapshot, shadow.as_ref(), &app, &dynamics, modified_on, direction)
            .await?;
        let counts = match direction {
            Direction::Pull => &mut self.metrics.pull,
            Direction::Push => &mut self.metrics.push,
        };
        if decided.to_app.is_empty() && decided.to_dynamics.is_empty() {
            counts.skipped += 1;
        }

        if !decided.to_app.is_empty() {
            if self.apply() {
                let update = pull_update(&decided.to_app, modified_on);
                self.svc.app.apply_pull(self.org(), &app_id, &update).await?;
                self.metrics.pull.written += 1;
            } else {
                let changes = decided.to_app.iter().map(|(f, v)| (f.clone(), show(v))).collect();
                self.plan.push(PlanItem::WriteApp {
                    mentor_id: app_id.clone(),
                    changes,
                });
            }
        }
        if let (Some(meta), true) = (&meta, self.apply())
            && snapshot.mentor.dynamics_contact_id != Some(meta.id)
        {
            self.svc
                .app
                .set_dynamics_contact(self.org(), &app_id, Some(meta.id))
                .await?;
        }
        // A resolution that needs no Dynamics write is done once the app side is written.
        let settled: Vec<String> = if decided.to_dynamics.is_empty() {
            decided
                .resolved_dynamics
                .iter()
                .chain(&decided.resolved_app)
                .cloned()
                .collect()
        } else {
            decided.resolved_dynamics.clone()
        };
        for field in settled {
            if let (Some((id, _)), true) = (self.resolutions.remove(&(app_id.clone(), field)), self.apply()) {
                self.svc.store.mark_conflict_applied(&id).await?;
            }
        }

        let Some(meta) = meta else { return Ok(()) };
        if !decided.to_dynamics.is_empty() && self.writes_enabled {
            let resolved = decided
                .resolved_app
                .iter()
                .filter_map(|f| self.resolutions.remove(&(app_id.clone(), f.clone())).map(|(id, _)| id))
                .collect();
            self.pending.push(PendingWrite {
                app_id,
                member_number: snapshot.mentor.member_number.clone().or(meta.key.clone()),
                coordinator: snapshot.mentor.coordinator_email.clone(),
                dynamics_id: Some(meta.id),
                etag: meta.etag.clone(),
                fields: decided.to_dynamics,
                shadow_after: decided.after_write,
                dynamics_modified_on: meta.modified_on,
                resolved,
                direction,
                after_412,
            });
            return Ok(());
        }
        let unchanged = decided.to_dynamics.is_empty()
            && link.as_ref().is_some_and(|l| {
                l.shadow == decided.agreed
                    && l.etag == meta.etag
                    && l.dynamics_id == meta.id
                    && decided.to_app.is_empty()
            });
        if unchanged {
            // Nothing new to record: the link already says this. Its cache entry is refreshed in bulk at the end.
            return self.clear_failures(&app_id).await;
        }
        if self.apply() {
            self.save_agreed(
                &app_id,
                meta.id,
                snapshot.mentor.member_number.clone().or(meta.key).unwrap_or_default(),
                meta.etag,
                decided.agreed,
                meta.modified_on,
            )
            .await?;
            if decided.to_dynamics.is_empty() {
                self.clear_failures(&app_id).await?;
            }
        }
        Ok(())
    }

    async fn decide(
        &mut self,
        snapshot: &MentorSnapshot,
        shadow: Option<&AppRecord>,
        app: &AppRecord,
        dynamics: &AppRecord,
        dynamics_modified_on: Option<DateTime<Utc>>,
        direction: Direction,
    ) -> Result<Decided> {
        let app_id = &snapshot.mentor.id;
        let mut decided = Decided {
            to_app: Vec::new(),
            to_dynamics: Vec::new(),
            agreed: AppRecord::new(),
            after_write: AppRecord::new(),
            resolved_app: Vec::new(),
            resolved_dynamics: Vec::new(),
        };
        let keep_shadow = |field: &str, decided: &mut Decided| {
            if let Some(old) = shadow.and_then(|s| s.get(field)) {
                decided.agreed.insert(field.to_owned(), old.clone());
                decided.after_write.insert(field.to_owned(), old.clone());
            }
        };
        let diffs = self.svc.mapping.diff(shadow, app, dynamics);
        for diff in diffs {
            let field = diff.spec.field.clone();
            if field == SYNC_STAMP {
                // The stamp records when the app last wrote; it never drives a write.
                let value = dynamics.get(SYNC_STAMP).cloned().unwrap_or(AppValue::Null);
                decided.agreed.insert(field.clone(), value.clone());
                decided.after_write.insert(field, value);
                continue;
            }
            if self.open_conflicts.contains(&(app_id.clone(), field.clone())) {
                // Held for an admin: neither side is written, and the shadow stays as it was.
                keep_shadow(&field, &mut decided);
                continue;
            }
            // An admin's resolution decides the field whatever the comparison says now.
            if let Some((_, side)) = self.resolutions.get(&(app_id.clone(), field.clone())).cloned() {
                let (app_value, dynamics_value) = (
                    app.get(&field).cloned().unwrap_or(AppValue::Null),
                    dynamics.get(&field).cloned().unwrap_or(AppValue::Null),
                );
                let differs = diff.spec.normalise(&app_value) != diff.spec.normalise(&dynamics_value);
                match side {
                    Side::App => {
                        decided.resolved_app.push(field.clone());
                        if differs {
                            keep_shadow(&field, &mut decided);
                            decided.after_write.insert(field.clone(), app_value.clone());
                            decided.to_dynamics.push((field, app_value));
                            continue;
                        }
                    }
                    Side::Dynamics => {
                        decided.resolved_dynamics.push(field.clone());
                        if differs {
                            decided.agreed.insert(field.clone(), dynamics_value.clone());
                            decided.after_write.insert(field.clone(), dynamics_value.clone());
                            decided.to_app.push((field, dynamics_value));
                            continue;
                        }
                    }
                }
                decided.agreed.insert(field.clone(), app_value.clone());
                decided.after_write.insert(field, app_value);
                continue;
            }
            let (to_app, to_dynamics) = match diff.decision {
                Decision::InSync(value) => {
                    decided.agreed.insert(field.clone(), value.clone());
                    decided.after_write.insert(field, value);
                    continue;
                }
                Decision::WriteApp(value) => (Some(value), None),
                Decision::WriteDynamics(value) => (None, Some(value)),
                Decision::Conflict {
                    shadow: _,
                    app: app_value,
                    dynamics: dynamics_value,
                } => {
                    match direction {
                        Direction::Pull => self.metrics.pull.conflicts += 1,
                        Direction::Push => self.metrics.push.conflicts += 1,
                    }
                    let side = match self.svc.conflicts.strategy_for(&field) {
                        ConflictStrategy::AppWins => Some(Side::App),
                        ConflictStrategy::DynamicsWins => Some(Side::Dynamics),
                        ConflictStrategy::NewestWins => {
                            // Dynamics is the system of record, so it wins a tie.
                            let app_newer = dynamics_modified_on.is_none_or(|d| changed_at(snapshot) > d);
                            Some(if app_newer { Side::App } else { Side::Dynamics })
                        }
                        ConflictStrategy::Manual => None,
                    };
                    match side {
                        Some(Side::App) => (None, Some(app_value)),
                        Some(Side::Dynamics) => (Some(dynamics_value), None),
                        None => {
                            self.hold_conflict(
                                snapshot,
                                &field,
                                shadow,
                                app_value,
                                dynamics_value,
                                dynamics_modified_on,
                            )
                            .await?;
                            keep_shadow(&field, &mut decided);
                            continue;
                        }
                    }
                }
            };
            if let Some(value) = to_app {
                decided.agreed.insert(field.clone(), value.clone());
                decided.after_write.insert(field.clone(), value.clone());
                decided.to_app.push((field, value));
            } else if let Some(value) = to_dynamics {
                keep_shadow(&field, &mut decided);
                decided.after_write.insert(field.clone(), value.clone());
                decided.to_dynamics.push((field, value));
            }
        }
        // Fields not compared this time (unreadable under schema drift, or missing from one side) keep what the
        // shadow knew, so a shadow never silently loses a field.
        if let Some(shadow) = shadow {
            for (field, value) in shadow {
                decided.agreed.entry(field.clone()).or_insert_with(|| value.clone());
                decided
                    .after_write
                    .entry(field.clone())
                    .or_insert_with(|| value.clone());
            }
        }
        Ok(decided)
    }

    fn has_resolution(&self, app_id: &str) -> bool {
        self.resolutions.keys().any(|(id, _)| id == app_id)
    }

    async fn hold_conflict(
        &mut self,
        snapshot: &MentorSnapshot,
        field: &str,
        shadow: Option<&AppRecord>,
        app_value: AppValue,
        dynamics_value: AppValue,
        dynamics_modified_on: Option<DateTime<Utc>>,
    ) -> Result<()> {
        if !self.apply() {
            self.plan.push(PlanItem::Conflict {
                mentor_id: snapshot.mentor.id.clone(),
                field: field.to_owned(),
            });
            return Ok(());
        }
        let conflict = Conflict {
            id: String::new(),
            organisation_id: self.org().to_owned(),
            record_kind: MENTOR.to_owned(),
            app_id: snapshot.mentor.id.clone(),
            field: field.to_owned(),
            shadow_value: shadow.and_then(|s| s.get(field)).cloned(),
            app_value,
            dynamics_value,
            app_changed_at: Some(changed_at(snapshot)),
            dynamics_changed_at: dynamics_modified_on,
            detected_at: self.now,
            state: ConflictState::Open,
            resolved_by: None,
        };
        let id = self.svc.store.open_conflict(&conflict).await?;
        if let Some(coordinator) = &snapshot.mentor.coordinator_email {
            let message = notify::conflict(
                self.svc.organisation.language,
                snapshot.mentor.member_number.as_deref(),
                field,
            );
            self.enqueue(format!("conflict:{id}"), coordinator, message).await?;
        }
        Ok(())
    }

    // ----- writing to Dynamics -----

    /// Writes the queued Dynamics changes in batches. Each success saves its link and shadow; each failure goes to
    /// the failed-record queue; a 412 re-reads the row and decides again.
    async fn flush(&mut self) -> Result<()> {
        while !self.pending.is_empty() {
            if !self.apply() {
                for write in self.pending.drain(..) {
                    let changes = write.fields.iter().map(|(f, v)| (f.clone(), show(v))).collect();
                    self.plan.push(PlanItem::WriteDynamics {
                        member_number: write.member_number.unwrap_or_default(),
                        changes,
                    });
                }
                return Ok(());
            }
            let take = self.sizer.size().min(self.pending.len());
            let chunk: Vec<PendingWrite> = self.pending.drain(..take).collect();
            self.write_batch(chunk).await?;
            self.keep_lock().await?;
        }
        Ok(())
    }

    async fn write_batch(&mut self, chunk: Vec<PendingWrite>) -> Result<()> {
        let writer = self.svc.client.writer(&self.svc.mapping);
        let stamp = AppValue::DateTime(self.now);
        let mut operations = Vec::with_capacity(chunk.len());
        let mut sent = Vec::with_capacity(chunk.len());
        for mut write in chunk {
            let mut values: AppRecord = write.fields.iter().cloned().collect();
            if self.svc.mapping.field(SYNC_STAMP).is_some() {
                values.insert(SYNC_STAMP.to_owned(), stamp.clone());
                write.shadow_after.insert(SYNC_STAMP.to_owned(), stamp.clone());
            }
            let body = match self.svc.mapping.to_dataverse(&values) {
                Ok(body) => body,
                Err(errors) => {
                    let reason = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
                    self.write_failed(&write, &reason).await?;
                    continue;
                }
            };
            let operation = match (write.dynamics_id, write.etag.as_deref()) {
                (Some(id), Some(etag)) => writer.update_operation(id, &body, etag),
                _ => match write
                    .member_number
                    .as_deref()
                    .map(|n| AlternateKey::new(self.svc.mapping.alternate_key().column.as_str(), n))
                {
                    Some(Ok(key)) => writer.upsert_operation(&key, &body, UpsertMode::UpdateOnly),
                    Some(Err(e)) => Err(e),
                    None => Err(dynamics_client::Error::InvalidKey {
                        column: self.svc.mapping.alternate_key().column.clone(),
                    }),
                },
            };
            match operation {
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
        // A batch refused or unreadable as a whole says nothing about its records: the run fails, its writes are
        // decided again next run, and no record is blamed (nor any coordinator mailed) for it.
        let parts = answered.map_err(|e| self.dynamics(e))?;
        for (write, part) in sent.into_iter().zip(parts) {
            match writer.written_from_part(&part) {
                Ok(written) => self.write_succeeded(write, written).await?,
                Err(dynamics_client::Error::Concurrency) if !write.after_412 => self.after_412(write).await?,
                Err(dynamics_client::Error::Concurrency) => {
                    let reason =
                        "the contact changed in Dynamics again while it was being written; retried on the next run";
                    self.write_failed(&write, reason).await?;
                }
                Err(e) if e.is_run_level() => return Err(self.dynamics(e)),
                Err(e) => self.write_failed(&write, &e.to_string()).await?,
            }
        }
        self.report_progress();
        Ok(())
    }

    async fn write_succeeded(&mut self, write: PendingWrite, written: Written) -> Result<()> {
        self.metrics.push.written += 1;
        let Some(dynamics_id) = written.id.or(write.dynamics_id) else {
            return Ok(());
        };
        self.save_agreed(
            &write.app_id,
            dynamics_id,
            write.member_number.clone().unwrap_or_default(),
            written.etag,
            write.shadow_after,
            write.dynamics_modified_on,
        )
        .await?;
        self.clear_failures(&write.app_id).await?;
        for id in &write.resolved {
            self.svc.store.mark_conflict_applied(id).await?;
        }
        Ok(())
    }

    /// Someone wrote the contact between our read and our write: read it again and decide again, never overwrite.
    async fn after_412(&mut self, write: PendingWrite) -> Result<()> {
        info!(org = %self.org(), mentor = %write.app_id, "contact changed in Dynamics during the run (412); deciding again");
        let Some(id) = write.dynamics_id else { return Ok(()) };
        let writer = self.svc.client.writer(&self.svc.mapping);
        let row = writer.read(id, &self.select()).await.map_err(|e| self.dynamics(e))?;
        let snapshots = self
            .svc
            .app
            .mentors(self.org(), std::slice::from_ref(&write.app_id))
            .await?;
        let (Some(row), Some(snapshot)) = (row, snapshots.into_iter().next()) else {
            return self
                .write_failed(&write, "the contact was deleted in Dynamics while it was being written")
                .await;
        };
        let link = self.link_of(&write.app_id).await?;
        let meta = match self.meta(&row) {
            Ok(meta) => meta,
            Err(reason) => return self.write_failed(&write, &reason).await,
        };
        let dynamics = match self.decode(&row) {
            Ok(record) => record,
            Err(reason) => return self.write_failed(&write, &reason).await,
        };
        self.processed.remove(&write.app_id);
        // The admin resolutions this write carried still apply to the new decision.
        for id in &write.resolved {
            if let Some(conflict) = self.svc.store.conflict(id).await?
                && let ConflictState::Resolved(side) = conflict.state
            {
                self.resolutions
                    .insert((conflict.app_id, conflict.field), (conflict.id, side));
            }
        }
        self.reconcile(snapshot, link, Some(dynamics), Some(meta), write.direction, true)
            .await
    }

    async fn write_failed(&mut self, write: &PendingWrite, reason: &str) -> Result<()> {
        // A write to Dynamics counts as app -> Dynamics whichever phase decided it, like its successes; a record
        // that could not be read or decided counts in the direction it was read in.
        match (write.direction, write.shadow_after.is_empty()) {
            (Direction::Pull, true) => self.metrics.pull.failed += 1,
            _ => self.metrics.push.failed += 1,
        }
        let certification = write
            .fields
            .iter()
            .any(|(f, _)| CERTIFICATION_FIELDS.contains(&f.as_str()));
        warn!(org = %self.org(), mentor = %write.app_id, reason = %reason, "a write to Dynamics failed; queued for the next run");
        self.failing.insert(write.app_id.clone());
        let failure = self
            .svc
            .store
            .record_failure(
                self.org(),
                MENTOR,
                &write.app_id,
                write.direction,
                reason,
                self.svc.retry.record_max_attempts,
                self.now,
            )
            .await?;
        if certification && let Some(coordinator) = &write.coordinator {
            let message =
                notify::certification_failed(self.svc.organisation.language, write.member_number.as_deref(), reason);
            let key = format!(
                "certification-sync-failed:{}:{}:{}",
                self.org(),
                write.app_id,
                failure.first_failed_at.timestamp_millis()
            );
            self.enqueue(key, coordinator, message).await?;
        }
        Ok(())
    }

    async fn record_failure(
        &mut self,
        snapshot: &MentorSnapshot,
        direction: Direction,
        reason: &str,
        certification: bool,
    ) -> Result<()> {
        if !self.apply() {
            return Ok(());
        }
        let write = PendingWrite {
            app_id: snapshot.mentor.id.clone(),
            member_number: snapshot.mentor.member_number.clone(),
            coordinator: snapshot.mentor.coordinator_email.clone(),
            dynamics_id: None,
            etag: None,
            fields: if certification {
                vec![("certification_status".to_owned(), AppValue::Null)]
            } else {
                Vec::new()
            },
            shadow_after: AppRecord::new(),
            dynamics_modified_on: None,
            resolved: Vec::new(),
            direction,
            after_412: false,
        };
        self.write_failed(&write, reason).await
    }

    async fn enqueue(&self, dedupe_key: String, recipient: &str, message: notify::Message) -> Result<()> {
        let notification = Notification {
            id: Uuid::new_v4().to_string(),
            organisation_id: self.org().to_owned(),
            dedupe_key,
            channel: "email".to_owned(),
            recipient: recipient.to_owned(),
            subject: message.subject,
            body: message.body,
            created_at: self.now,
            attempts: 0,
            next_attempt_at: self.now,
            sent_at: None,
            last_error: None,
        };
        self.svc.store.enqueue_notification(&notification).await?;
        Ok(())
    }

    /// Saves the link of a record both sides now agree on (its shadow), and the cached certification status.
    async fn save_agreed(
        &self,
        app_id: &str,
        dynamics_id: Uuid,
        alternate_key: String,
        etag: Option<String>,
        shadow: AppRecord,
        dynamics_modified_on: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let link = Link {
            organisation_id: self.org().to_owned(),
            record_kind: MENTOR.to_owned(),
            app_id: app_id.to_owned(),
            dynamics_id,
            alternate_key,
            etag,
            visible: shows_as_visible(&shadow),
            expires_on: shadow_expiry(&shadow),
            shadow,
            dynamics_modified_on,
            synced_at: self.now,
        };
        self.svc.store.save_link(&link).await?;
        self.save_cache(&link).await
    }

    async fn save_cache(&self, link: &Link) -> Result<()> {
        let status = match link.shadow.get("certification_status") {
            Some(AppValue::Choice(s)) => s.clone(),
            _ => return Ok(()),
        };
        let entry = CacheEntry {
            organisation_id: self.org().to_owned(),
            mentor_id: link.app_id.clone(),
            member_number: Some(link.alternate_key.clone()),
            status,
            expires_on: link.expires_on,
            show_on_public_site: link.shadow.get("show_on_public_site") == Some(&AppValue::Bool(true)),
            as_of: self.now,
        };
        Ok(self.svc.store.save_cache_entry(&entry).await?)
    }

    /// Renews the run lock; a lost lock stops the run rather than let it overlap another.
    async fn keep_lock(&self) -> Result<()> {
        // Called between pages: the natural place to honour a shutdown request.
        if self.svc.stop.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::Stopped);
        }
        if let Some(lock) = self.lock {
            lock.renew(std::time::Duration::from_secs(30 * 60), self.svc.clock.now())
                .await?;
        }
        Ok(())
    }

    /// A record that synced is no longer failing, whichever way it failed before.
    async fn clear_failures(&mut self, app_id: &str) -> Result<()> {
        if !self.apply() || !self.failing.remove(app_id) {
            return Ok(());
        }
        for direction in [Direction::Pull, Direction::Push] {
            self.svc
                .store
                .clear_failure(self.org(), MENTOR, app_id, direction)
                .await?;
        }
        Ok(())
    }

    async fn link_of(&self, app_id: &str) -> Result<Option<Link>> {
        Ok(self
            .svc
            .store
            .links(self.org(), MENTOR, &[app_id.to_owned()])
            .await?
            .into_iter()
            .next())
    }
}

/// The `$select` columns of a delta link.
fn selected_columns(link: &str) -> BTreeSet<String> {
    url::Url::parse(link)
        .ok()
        .and_then(|url| {
            url.query_pairs()
                .find(|(name, _)| name == "$select")
                .map(|(_, value)| value.split(',').map(str::to_owned).collect())
        })
        .unwrap_or_default()
}
