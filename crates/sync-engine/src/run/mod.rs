//! One run, phase by phase: check the schema, pull what changed in Dynamics (`pull.rs`), push what changed in the app
//! (`push.rs`), the time rule and the contacts no mentor claims any more (`expiry.rs`), failed records and admin
//! resolutions (`retry.rs`), each record decided by the pure core (`crate::decide`) and carried out by `record.rs`,
//! and Dynamics writes sent in batches, each recorded before it is sent (`write.rs`).
//!
//! Failure isolation: a problem tied to one record (a refused app write, a missing row, a 4xx on its write, a value
//! that does not decode) queues that record with its reason and the run goes on ([`Run::isolate`]). A phase fails
//! only for a run-wide cause; then the later phases still run unless the cause stops everything (credentials,
//! connectivity, throttling beyond the budget, the database, a lost lock, a shutdown), so the time rule runs in
//! every run that can reach Dynamics.

mod expiry;
mod lookup;
mod pull;
mod push;
mod record;
mod retry;
mod touched;
mod write;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use dynamics_client::{BatchSizer, ClientMetrics, Row};
use field_mapping::{AppRecord, AppValue, Drift};
use sync_store::{
    ConflictState, Direction, FailureState, Link, MentorSnapshot, Notification, RunLock, RunMetrics, Severity,
};
use tracing::{error, warn};
use uuid::Uuid;

use crate::decide::Pending;
use crate::error::{Error, Result};
use crate::notify;
use crate::plan::{Plan, PlanItem};
use crate::record::changed_at;
use crate::service::{MENTOR, NOTE_BATCH_SIZE, NOTE_PULL_COMPLETED, Progress, SyncService};

pub(crate) use write::PendingWrite;

/// Whether a run changes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A real run.
    Apply,
    /// A dry run: decide everything, write nothing.
    Plan,
}

/// Mentors read from the app, links and released contacts read from the store, per page.
const APP_PAGE: u32 = 500;

/// Mentors waiting for a look-up or a re-read gathered before they go out: twenty `In` queries of 250 values, in
/// one `$batch`.
const NEEDS_GATHERED: usize = 5000;

/// How long the run lock is held between renewals.
const LEASE: std::time::Duration = std::time::Duration::from_secs(30 * 60);

pub(crate) struct Run<'s> {
    svc: &'s SyncService,
    mode: Mode,
    lock: Option<&'s RunLock>,
    now: DateTime<Utc>,
    today: NaiveDate,
    /// The value every write of this run stamps into the sync-stamp column: the write's receipt.
    stamp: AppValue,
    metrics: RunMetrics,
    client_start: ClientMetrics,
    pub(crate) drift: Vec<String>,
    unreadable: BTreeSet<String>,
    writes_enabled: bool,
    change_tracking: bool,
    /// Open and resolved conflicts, by app id and field.
    conflicts: BTreeMap<String, BTreeMap<String, Pending>>,
    /// App ids with a failed record and its direction, so a success clears it without a query per record and a
    /// record failing again counts against the same entry.
    failing: BTreeMap<String, Direction>,
    pending: Vec<PendingWrite>,
    /// Decisions waiting to be carried out with the rest of their page.
    decisions: Vec<record::Decided>,
    /// Mentors whose contact is to be read or looked up, in bulk with the rest of their page.
    needs: Vec<lookup::Need>,
    /// Contacts released and not yet hidden (few), so taking a contact costs no query when none is released.
    released: BTreeSet<Uuid>,
    sizer: BatchSizer,
    plan: Vec<PlanItem>,
    /// Mentors decided this run, with the app change time each decision saw (a later app change is decided again),
    /// and the writes sent per mentor (each gets its own sync stamp, one second apart, so the stamp tells which of
    /// two writes of one run landed).
    touched: touched::Touched,
    /// Mentors whose contact was deleted or left the scope this run and that nothing has linked or queued since: the
    /// retry phase looks them up once, so a mentor left without a contact is queued (and its coordinator told).
    relink: BTreeSet<String>,
    /// Mentors whose app write was skipped because the app changed them meanwhile: decided again this run against
    /// Dynamics read afresh (the retry phase at the latest), so the Dynamics change is not lost.
    reread: BTreeSet<String>,
    /// Mentors with a problem queued this run although the rest of the record synced: a successful write must not
    /// clear that failure.
    partial: BTreeSet<String>,
    /// Time spent in the pure decisions (reading rows into values, deciding records), for the run's metrics.
    deciding: std::time::Duration,
}

/// A Dynamics row's identity and version.
#[derive(Debug, Clone)]
pub(crate) struct RowMeta {
    pub(crate) id: Uuid,
    pub(crate) etag: Option<String>,
    pub(crate) modified_on: Option<DateTime<Utc>>,
    pub(crate) key: Option<String>,
}

/// A Dynamics row as read: its identity, the mapped values that could be read, and what could not.
#[derive(Debug, Clone)]
pub(crate) struct Read {
    pub(crate) meta: RowMeta,
    pub(crate) values: AppRecord,
    /// Fields whose value could not be read (a value the mapping does not know, a text too long).
    pub(crate) unreadable: BTreeSet<String>,
    /// Why, one message per field, for the failed-record queue.
    pub(crate) problems: Vec<String>,
}

/// Who a record-level failure is about, for the queue and the coordinator's notification.
#[derive(Debug, Clone)]
pub(crate) struct Subject {
    pub(crate) app_id: String,
    pub(crate) member_number: Option<String>,
    pub(crate) coordinator: Option<String>,
}

impl Subject {
    pub(crate) fn of(snapshot: &MentorSnapshot) -> Self {
        Subject {
            app_id: snapshot.mentor.id.clone(),
            member_number: snapshot.mentor.member_number.clone(),
            coordinator: snapshot.mentor.coordinator_email.clone(),
        }
    }
}

/// Whether a failure is about one record (queued, the run goes on) rather than the run.
pub(crate) fn record_level(error: &Error) -> bool {
    match error {
        Error::Store(e) => e.is_record_level(),
        Error::Dynamics { source, .. } => {
            !source.is_run_level()
                && !matches!(
                    source,
                    dynamics_client::Error::UnknownColumn { .. } | dynamics_client::Error::DeltaTokenExpired
                )
        }
        _ => false,
    }
}

/// Whether a phase's failure ends the whole run: nothing after it could work (or must not run).
fn stops_run(error: &Error) -> bool {
    match error {
        Error::Dynamics { source, .. } => source.is_run_level(),
        // A record-level store error that escaped its record (one malformed stored row) does not stop the others.
        Error::Store(e) => !e.is_record_level(),
        Error::Stopped => true,
        _ => !record_level(error),
    }
}

/// A failure reason for the log: its leading phrase, without the details after the first colon, which may quote
/// values from Dynamics or the app (personal data stays in the failed-record queue, out of the logs).
fn loggable(reason: &str) -> &str {
    reason.split_once(": ").map_or(reason, |(head, _)| head)
}

impl<'s> Run<'s> {
    pub(crate) fn new(svc: &'s SyncService, mode: Mode, lock: Option<&'s RunLock>) -> Self {
        let now = svc.clock.now();
        Run {
            svc,
            mode,
            lock,
            now,
            today: crate::record::local_today(now, svc.organisation.time_zone),
            stamp: AppValue::DateTime(now.trunc_subsecs(0)),
            metrics: RunMetrics::default(),
            client_start: svc.client.metrics(),
            drift: Vec::new(),
            unreadable: BTreeSet::new(),
            writes_enabled: true,
            change_tracking: false,
            conflicts: BTreeMap::new(),
            failing: BTreeMap::new(),
            pending: Vec::new(),
            decisions: Vec::new(),
            needs: Vec::new(),
            released: BTreeSet::new(),
            sizer: BatchSizer::new(
                usize::try_from(svc.sync.batch_size_initial).unwrap_or(500),
                usize::try_from(svc.sync.batch_size_max).unwrap_or(1000),
            ),
            plan: Vec::new(),
            touched: touched::Touched::default(),
            relink: BTreeSet::new(),
            reread: BTreeSet::new(),
            partial: BTreeSet::new(),
            deciding: std::time::Duration::ZERO,
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
        metrics.decode_us =
            u64::try_from((client.decoding - self.client_start.decoding).as_micros()).unwrap_or(u64::MAX);
        metrics.decide_us = u64::try_from(self.deciding.as_micros()).unwrap_or(u64::MAX);
        metrics
            .notes
            .insert(NOTE_BATCH_SIZE.to_owned(), self.sizer.size().to_string());
        metrics
    }

    /// Starts the batch size where the last run that recorded one left it (see [`NOTE_BATCH_SIZE`]); the first run,
    /// or one whose history was cleared, starts at `sync.batch_size_initial`.
    async fn learn_batch_size(&mut self) -> Result<()> {
        let runs = self.svc.store.recent_runs(self.org(), 10).await?;
        let learned = runs
            .iter()
            .filter(|run| run.kind == sync_store::RunKind::Sync)
            .find_map(|run| run.metrics.notes.get(NOTE_BATCH_SIZE)?.parse::<usize>().ok());
        if let Some(size) = learned {
            self.sizer = BatchSizer::new(size, usize::try_from(self.svc.sync.batch_size_max).unwrap_or(1000));
        }
        Ok(())
    }

    pub(crate) fn into_plan(self) -> Plan {
        Plan {
            items: self.plan,
            drift: self.drift,
            show_values: false,
        }
    }

    // ----- the run -----

    /// The phases in order. Each one's failure is kept; later phases run unless it stops the run.
    pub(crate) async fn sync(&mut self) -> Result<()> {
        self.learn_batch_size().await?;
        self.prepare().await?;
        let mut failed: Option<Error> = None;
        let keep = |failed: &mut Option<Error>, outcome: Result<()>| {
            if let Err(e) = outcome {
                warn!(error = %crate::service::error_chain(&e), "a phase of the run failed");
                failed.get_or_insert(e);
            }
        };
        let going = |failed: &Option<Error>| failed.as_ref().is_none_or(|e| !stops_run(e));
        let pulled = self.pull().await;
        if pulled.is_ok() {
            // The health monitor reports the last successful sync per direction from this note.
            self.metrics
                .notes
                .insert(NOTE_PULL_COMPLETED.to_owned(), "true".to_owned());
        }
        keep(&mut failed, pulled);
        if going(&failed) {
            let outcome = self.push().await;
            keep(&mut failed, outcome);
        }
        // The time rule runs whatever happened to the pull and the push, as long as Dynamics can be reached.
        if going(&failed) {
            let outcome = self.time_rule().await;
            keep(&mut failed, outcome);
        }
        if going(&failed) {
            let outcome = self.retries().await;
            keep(&mut failed, outcome);
        }
        if going(&failed) {
            let outcome = self.flush().await;
            keep(&mut failed, outcome);
        }
        if let Some(e) = failed {
            return Err(e);
        }
        // With schema drift nothing was written, so nothing can be confirmed.
        if self.apply() && self.writes_enabled {
            self.svc.store.confirm_cache(self.org(), self.now).await?;
        }
        Ok(())
    }

    /// One mentor now, in both directions.
    pub(crate) async fn sync_one(&mut self, mentor_id: &str) -> Result<()> {
        self.prepare().await?;
        let snapshot = self
            .svc
            .app
            .mentors(self.org(), &[mentor_id.to_owned()])
            .await?
            .into_iter()
            .next();
        let link = self.link_of(mentor_id).await?;
        match (snapshot, link) {
            (Some(snapshot), link) => {
                let outcome = self.recheck(snapshot.clone(), link).await;
                self.isolate(&Subject::of(&snapshot), Direction::Push, false, outcome)
                    .await?;
            }
            (None, Some(link)) => self.mentor_gone(link).await?,
            (None, None) => return Err(Error::NotFound(format!("mentor {mentor_id}"))),
        }
        self.time_rule_releases().await?;
        self.flush().await
    }

    /// Connectivity, then the schema-drift guard, then the failed records and conflicts the run starts from.
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
                    self.failing.insert(failure.record_key, failure.direction);
                }
            }
        }
        let mut after = None;
        loop {
            let page = self.svc.store.releases(self.org(), MENTOR, after, APP_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.dynamics_id);
            let full = page.len() == APP_PAGE as usize;
            self.released.extend(page.into_iter().map(|r| r.dynamics_id));
            if !full {
                break;
            }
        }
        for conflict in self.svc.store.pending_conflicts(self.org()).await? {
            let pending = match conflict.state {
                ConflictState::Resolved(side) => Pending::Resolved { id: conflict.id, side },
                ConflictState::Open => Pending::Held { id: conflict.id },
                ConflictState::Applied | ConflictState::Settled => continue,
            };
            self.conflicts
                .entry(conflict.app_id)
                .or_default()
                .insert(conflict.field, pending);
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

    /// A row's id alone, for the set of ids a full read saw (every contact of the table): [`Run::meta`] reads the
    /// rest of the row's identity too, which only the rows decided need.
    fn row_id(&self, row: &Row) -> Option<Uuid> {
        row.get(self.svc.mapping.primary_id())
            .and_then(|v| v.as_str())
            .and_then(|s| Uuid::parse_str(s).ok())
    }

    fn meta(&self, row: &Row) -> std::result::Result<RowMeta, String> {
        let mapping = &self.svc.mapping;
        let id = self
            .row_id(row)
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

    /// Reads a row's identity and its mapped fields. A field whose value cannot be read is left out and named, so
    /// the rest of the record still syncs (the app's certification above all); only a row without a usable id is
    /// refused.
    fn read(&mut self, row: &Row) -> std::result::Result<Read, String> {
        let started = std::time::Instant::now();
        let read = self.read_untimed(row);
        self.deciding += started.elapsed();
        read
    }

    fn read_untimed(&self, row: &Row) -> std::result::Result<Read, String> {
        let meta = self.meta(row)?;
        let mut read = Read {
            meta,
            values: AppRecord::new(),
            unreadable: BTreeSet::new(),
            problems: Vec::new(),
        };
        for spec in self.svc.mapping.fields() {
            if self.unreadable.contains(&spec.field) {
                continue;
            }
            match spec.from_dataverse(row) {
                Ok(value) => {
                    read.values.insert(spec.field.clone(), value);
                }
                Err(e) => {
                    read.unreadable.insert(spec.field.clone());
                    read.problems.push(e.to_string());
                }
            }
        }
        Ok(read)
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

    // ----- failure isolation -----

    /// Turns a record-level error of one record's handling into a queued failure, so the run goes on; any other
    /// error is the run's.
    async fn isolate(
        &mut self,
        subject: &Subject,
        direction: Direction,
        notify: bool,
        outcome: Result<()>,
    ) -> Result<()> {
        match outcome {
            Err(e) if record_level(&e) => {
                let reason = crate::service::error_chain(&e);
                self.queue_failure(subject, direction, &reason, notify).await
            }
            other => other,
        }
    }

    /// Queues a record in the failed-record queue with a reason an admin can act on; a certification that could not
    /// be synced notifies the mentor's coordinator.
    async fn queue_failure(
        &mut self,
        subject: &Subject,
        direction: Direction,
        reason: &str,
        notify: bool,
    ) -> Result<()> {
        // Decided for this run: the retry phase does not try it a second time.
        self.touched.decide(&subject.app_id, DateTime::<Utc>::MAX_UTC);
        self.relink.remove(&subject.app_id);
        if !self.apply() {
            self.plan.push(PlanItem::Failure {
                mentor_id: subject.app_id.clone(),
                reason: reason.to_owned(),
            });
            return Ok(());
        }
        match direction {
            Direction::Pull => self.metrics.pull.failed += 1,
            Direction::Push => self.metrics.push.failed += 1,
        }
        warn!(org = %self.org(), mentor = %subject.app_id, reason = %loggable(reason), "a record could not be synced; queued for the next run (the failed-record queue has the details)");
        // One entry per record: a record failing again, whichever phase found it, counts against the same one.
        let direction = *self.failing.entry(subject.app_id.clone()).or_insert(direction);
        let failure = self
            .svc
            .store
            .record_failure(
                self.org(),
                MENTOR,
                &subject.app_id,
                direction,
                reason,
                self.svc.retry.record_max_attempts,
                self.now,
            )
            .await?;
        if notify && let Some(coordinator) = &subject.coordinator {
            let message = notify::certification_failed(
                self.svc.organisation.language,
                subject.member_number.as_deref(),
                &subject.app_id,
                reason,
            );
            let key = format!(
                "certification-sync-failed:{}:{}:{}",
                self.org(),
                subject.app_id,
                failure.first_failed_at.timestamp_millis()
            );
            self.enqueue(key, coordinator, message).await?;
        }
        Ok(())
    }

    /// A record that synced is no longer failing, whichever way it failed before (unless part of it failed this
    /// run).
    async fn clear_failures(&mut self, app_id: &str) -> Result<()> {
        if !self.apply() || self.partial.contains(app_id) || self.failing.remove(app_id).is_none() {
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

    // ----- the lock -----

    /// Renews the run lock (on PostgreSQL: checks its session is alive); a lost lock stops the run rather than let
    /// it overlap another. Called in every phase, between pages and batches: also where a shutdown is honoured.
    async fn keep_lock(&self) -> Result<()> {
        if self.svc.stop.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::Stopped);
        }
        if let Some(lock) = self.lock {
            lock.renew(LEASE, self.svc.clock.now()).await?;
        }
        Ok(())
    }

    // ----- small store helpers -----

    async fn link_of(&self, app_id: &str) -> Result<Option<Link>> {
        Ok(self
            .svc
            .store
            .links(self.org(), MENTOR, &[app_id.to_owned()])
            .await?
            .into_iter()
            .next())
    }

    /// Whether the mentor was already decided this run at (or after) its current app change.
    fn decided_already(&self, snapshot: &MentorSnapshot) -> bool {
        self.touched
            .decided_at(&snapshot.mentor.id)
            .is_some_and(|seen| changed_at(snapshot) <= seen)
    }

    fn has_resolution(&self, app_id: &str) -> bool {
        self.conflicts
            .get(app_id)
            .is_some_and(|fields| fields.values().any(|p| matches!(p, Pending::Resolved { .. })))
    }
}
