//! The records the store reads and writes.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use field_mapping::{AppRecord, Decimal};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A peer mentor as the app records them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mentor {
    /// The app's id.
    pub id: String,
    /// The organisation the mentor belongs to.
    pub organisation_id: String,
    /// The HLF member number: the alternate key of the Dynamics contact.
    pub member_number: Option<String>,
    /// Given name (Dynamics-owned by default).
    pub given_name: Option<String>,
    /// Family name (Dynamics-owned by default).
    pub family_name: Option<String>,
    /// Email (Dynamics-owned by default).
    pub email: Option<String>,
    /// Phone (Dynamics-owned by default).
    pub phone: Option<String>,
    /// The coordinator to notify when this mentor's certification cannot be synced.
    pub coordinator_email: Option<String>,
    /// The linked Dynamics contact.
    pub dynamics_contact_id: Option<Uuid>,
    /// When the app last changed the row.
    pub updated_at: DateTime<Utc>,
}

/// A certification held by a mentor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certification {
    /// The app's id.
    pub id: String,
    /// The mentor holding it.
    pub mentor_id: String,
    /// The kind of certification.
    pub kind: String,
    /// When it was issued.
    pub issued_on: NaiveDate,
    /// The last day it is valid (a calendar date in the organisation's time zone).
    pub expires_on: NaiveDate,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When the app last changed the row.
    pub updated_at: DateTime<Utc>,
}

/// Membership data, written by the sync from Dynamics.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Membership {
    /// Membership status (an app symbol of the mapping's options).
    pub status: Option<String>,
    /// Membership type.
    pub membership_type: Option<String>,
    /// Paid until.
    pub paid_until: Option<NaiveDate>,
    /// The contact's state in Dynamics (`active` / `inactive`).
    pub contact_state: Option<String>,
    /// Dynamics' `modifiedon` of the values.
    pub source_modified_on: Option<DateTime<Utc>>,
}

/// A mentor with everything the sync needs about them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MentorSnapshot {
    /// The mentor row.
    pub mentor: Mentor,
    /// Their certifications.
    pub certifications: Vec<Certification>,
    /// Their membership, once synced.
    pub membership: Option<Membership>,
}

/// Where a paged read of changed mentors continues: after this change time and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeCursor {
    /// The change time of the last mentor read.
    pub changed_at: DateTime<Utc>,
    /// Its id.
    pub id: String,
}

/// Values the sync writes into the app from Dynamics. `None` leaves a field as it is; `Some(None)` clears it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PullUpdate {
    /// Given name.
    pub given_name: Option<Option<String>>,
    /// Family name.
    pub family_name: Option<Option<String>>,
    /// Email.
    pub email: Option<Option<String>>,
    /// Phone.
    pub phone: Option<Option<String>>,
    /// Membership status.
    pub membership_status: Option<Option<String>>,
    /// Membership type.
    pub membership_type: Option<Option<String>>,
    /// Paid until.
    pub paid_until: Option<Option<NaiveDate>>,
    /// Contact state.
    pub contact_state: Option<Option<String>>,
    /// Dynamics' `modifiedon` of these values.
    pub source_modified_on: Option<DateTime<Utc>>,
    /// Member number (when Dynamics renumbered the member and owns the number).
    pub member_number: Option<Option<String>>,
    /// Write only if the mentor's row still has this `updated_at` (the one the engine decided on): an app edit made
    /// since must not be overwritten. `None` writes unconditionally.
    pub if_updated_at: Option<DateTime<Utc>>,
}

/// What [`crate::AppStore::apply_pull`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullOutcome {
    /// The values were written.
    Applied,
    /// The mentor's row changed after the engine read it (see [`PullUpdate::if_updated_at`]): nothing was written,
    /// and the engine decides the mentor again.
    Stale,
}

/// Which way a watermark or failure goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Dynamics to app.
    Pull,
    /// App to Dynamics.
    Push,
}

/// How far one direction of one table has synced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Watermark {
    /// The last change time fully applied (Dynamics `modifiedon` for pull, app `updated_at` for push).
    pub at: Option<DateTime<Utc>>,
    /// The change-tracking delta link, when change tracking is used.
    pub delta_link: Option<String>,
    /// When the watermark was last moved.
    pub updated_at: Option<DateTime<Utc>>,
}

/// A linked record and the values both sides last agreed on.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// The organisation.
    pub organisation_id: String,
    /// The record kind (`mentor`).
    pub record_kind: String,
    /// The app row's id.
    pub app_id: String,
    /// The Dynamics row's id.
    pub dynamics_id: Uuid,
    /// The alternate key value (member number).
    pub alternate_key: String,
    /// The Dynamics row's etag when last read or written.
    pub etag: Option<String>,
    /// The shadow: app field to the last agreed value.
    pub shadow: AppRecord,
    /// Whether Dynamics shows the mentor as active or on the public site, as last pushed.
    pub visible: bool,
    /// The certification expiry last pushed, for the time rule.
    pub expires_on: Option<NaiveDate>,
    /// Dynamics' `modifiedon` when last read.
    pub dynamics_modified_on: Option<DateTime<Utc>>,
    /// When the link was last saved.
    pub synced_at: DateTime<Utc>,
    /// The values of a write to Dynamics that was sent but whose answer was never recorded (the worker was killed,
    /// or Dynamics finished it after the client gave up). Recorded before the write is sent; the next run reads the
    /// row and, if the write landed (its sync stamp is there), counts these values as agreed.
    pub pending: Option<AppRecord>,
    /// Per field, each side's value that differs from the shadow and when it was first seen, so `newest-wins`
    /// compares the times of the edits of that field.
    pub seen: BTreeMap<String, FieldSeen>,
    /// The app record's change time (its `updated_at`, or its certifications') that the last decision saw: the
    /// same time again means the app changed nothing since.
    pub app_changed_at: Option<DateTime<Utc>>,
}

/// What the engine remembers of one field's unsynced changes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FieldSeen {
    /// The app's value and when it was first seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<SeenValue>,
    /// Dynamics' value and when it was first seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamics: Option<SeenValue>,
}

/// A value and the time of the edit that made it, as first seen by the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenValue {
    /// The value.
    pub value: field_mapping::AppValue,
    /// When it was made (the time of the row holding it when the engine first saw it).
    pub at: DateTime<Utc>,
}

/// A Dynamics row the sync showed on the public site that no app mentor claims any more (the mentor left the app,
/// took another member number, or the contact left the sync's scope). Each run hides it from the public site until
/// that write succeeds, unless a mentor claims the contact first.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    /// The organisation.
    pub organisation_id: String,
    /// The record kind (`mentor`).
    pub record_kind: String,
    /// The Dynamics row.
    pub dynamics_id: Uuid,
    /// The app row that held it, for the log and the dashboard.
    pub app_id: String,
    /// The row's etag when last known.
    pub etag: Option<String>,
    /// Why it was released.
    pub reason: String,
    /// When it was released.
    pub since: DateTime<Utc>,
    /// Failed attempts to hide it.
    pub attempts: u32,
    /// The last failure, when there was one.
    pub last_error: Option<String>,
}

/// The kind of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// A sync in both directions.
    Sync,
    /// A reconcile (full compare).
    Reconcile,
    /// An accounting export of approved postings, with its reconciliation.
    Postings,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Still running (or killed before it could say otherwise).
    Running,
    /// Everything synced.
    Succeeded,
    /// The run completed but some records failed and were queued.
    Partial,
    /// The run failed as a whole (authentication, connectivity, schema drift before writing).
    Failed,
}

/// Counts for one direction of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DirectionMetrics {
    /// Records read.
    pub read: u64,
    /// Records written.
    pub written: u64,
    /// Records read that needed no write.
    pub skipped: u64,
    /// Records that failed and were queued.
    pub failed: u64,
    /// Conflicts found.
    pub conflicts: u64,
}

/// What a run did; stored with the run and exposed as metrics.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunMetrics {
    /// Dynamics to app.
    pub pull: DirectionMetrics,
    /// App to Dynamics.
    pub push: DirectionMetrics,
    /// HTTP requests sent to Dynamics.
    pub requests: u64,
    /// Throttled (429) answers.
    pub throttled: u64,
    /// Retried requests.
    pub retried: u64,
    /// Milliseconds spent waiting for rate limits and backoff.
    pub waited_ms: u64,
    /// Wall time of the run in milliseconds.
    pub duration_ms: u64,
    /// Full resyncs forced by an expired delta token.
    pub full_resyncs: u64,
    /// Records and fields that differ between the two sides (reconcile runs).
    pub divergence: Option<Divergence>,
    /// What an accounting export did and what its reconciliation found (posting runs).
    #[serde(default)]
    pub postings: Option<PostingMetrics>,
    /// Anything else worth keeping, by name.
    #[serde(default)]
    pub notes: BTreeMap<String, String>,
    /// Microseconds spent decoding Dynamics' answers (the client's own work on what it received).
    #[serde(default)]
    pub decode_us: u64,
    /// Microseconds spent deciding: reading rows into mapped values and the three-way decisions.
    #[serde(default)]
    pub decide_us: u64,
}

/// What a posting export run did, and what its reconciliation found.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PostingMetrics {
    /// Postings Dynamics confirmed in this run, now marked exported.
    pub exported: u64,
    /// Postings that failed and were queued.
    pub failed: u64,
    /// Postings held back: dead or dismissed in the failed-record queue.
    pub held: u64,
    /// Postings marked exported that the reconciliation looked up in Dynamics.
    pub checked: u64,
    /// Postings marked exported that Dynamics does not hold.
    pub missing: u64,
    /// Postings whose amount in Dynamics differs from the app's.
    pub differing: u64,
    /// The first of the missing and differing postings' ids (at most [`PostingMetrics::SAMPLE`]), for the alert and
    /// the dashboard. Ids only: amounts and member numbers stay in the app.
    pub sample: Vec<String>,
}

impl PostingMetrics {
    /// How many unreconciled posting ids are kept.
    pub const SAMPLE: usize = 20;

    /// Postings exported earlier that Dynamics no longer holds as the app does.
    pub fn unreconciled(&self) -> u64 {
        self.missing + self.differing
    }
}

/// How far the two sides differ, from a reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Divergence {
    /// Linked records compared.
    pub records_compared: u64,
    /// Records with at least one differing field.
    pub records_differing: u64,
    /// Differing fields in all.
    pub fields_differing: u64,
}

/// One run in the run log.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// The run's id.
    pub id: String,
    /// The organisation.
    pub organisation_id: String,
    /// Sync or reconcile.
    pub kind: RunKind,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// How it ended.
    pub status: RunStatus,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// What it did.
    pub metrics: RunMetrics,
}

/// The state of a failed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureState {
    /// Retried on the next run.
    Retrying,
    /// Attempts are spent; waits for an admin to requeue or dismiss it.
    Dead,
    /// An admin dismissed it.
    Dismissed,
}

/// A record that failed to sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRecord {
    /// The organisation.
    pub organisation_id: String,
    /// The record kind.
    pub record_kind: String,
    /// The app id (push) or alternate key (pull).
    pub record_key: String,
    /// Which way it failed.
    pub direction: Direction,
    /// The last error, in words an admin can act on.
    pub error: String,
    /// Runs it has failed in.
    pub attempts: u32,
    /// When it first failed.
    pub first_failed_at: DateTime<Utc>,
    /// When it last failed.
    pub last_failed_at: DateTime<Utc>,
    /// Retrying, dead or dismissed.
    pub state: FailureState,
}

/// Which side a resolved conflict took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The app's value.
    App,
    /// Dynamics' value.
    Dynamics,
}

/// The state of a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConflictState {
    /// Waiting for an admin.
    Open,
    /// An admin picked a side; the next run (or an immediate apply) writes it.
    Resolved(Side),
    /// The resolution has been written.
    Applied,
    /// Both sides came to hold the same value while it was held: it closed by itself, without an admin.
    Settled,
}

/// A shared field changed on both sides, held for an admin.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// The conflict's id.
    pub id: String,
    /// The organisation.
    pub organisation_id: String,
    /// The record kind.
    pub record_kind: String,
    /// The app record.
    pub app_id: String,
    /// The app field.
    pub field: String,
    /// The last agreed value.
    pub shadow_value: Option<field_mapping::AppValue>,
    /// The app's value.
    pub app_value: field_mapping::AppValue,
    /// Dynamics' value.
    pub dynamics_value: field_mapping::AppValue,
    /// When the app changed it.
    pub app_changed_at: Option<DateTime<Utc>>,
    /// When Dynamics changed it.
    pub dynamics_changed_at: Option<DateTime<Utc>>,
    /// When the conflict was found.
    pub detected_at: DateTime<Utc>,
    /// Open, resolved or applied.
    pub state: ConflictState,
    /// Who resolved it.
    pub resolved_by: Option<String>,
}

/// How serious an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Warning,
    /// Someone must act.
    Critical,
}

/// The state of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertState {
    /// Raised and not yet seen.
    Open,
    /// An admin has seen it; it stays until its cause is gone.
    Acknowledged,
    /// Its cause is gone.
    Resolved,
}

/// An alert, one per cause while the cause lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The alert's id.
    pub id: String,
    /// The organisation.
    pub organisation_id: String,
    /// The cause, the deduplication key (e.g. `sync-failing`, `schema-drift:contact`).
    pub cause: String,
    /// The kind, for grouping.
    pub kind: String,
    /// How serious.
    pub severity: Severity,
    /// What happened and what to do.
    pub message: String,
    /// Open, acknowledged or resolved.
    pub state: AlertState,
    /// When first raised.
    pub raised_at: DateTime<Utc>,
    /// When last raised again or changed.
    pub updated_at: DateTime<Utc>,
    /// When resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// How many times the cause was seen while the alert was active.
    pub occurrences: u32,
}

/// A notification waiting in, or sent from, the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The notification's id.
    pub id: String,
    /// The organisation.
    pub organisation_id: String,
    /// Deduplication key: one notification per key, ever.
    pub dedupe_key: String,
    /// `email` or `webhook`.
    pub channel: String,
    /// Who receives it.
    pub recipient: String,
    /// Subject line.
    pub subject: String,
    /// Body text.
    pub body: String,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// When delivery is next due.
    pub next_attempt_at: DateTime<Utc>,
    /// When it was delivered.
    pub sent_at: Option<DateTime<Utc>>,
    /// The last delivery error.
    pub last_error: Option<String>,
}

/// A certification status as last synced, for reads when Dynamics cannot be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// The organisation.
    pub organisation_id: String,
    /// The mentor.
    pub mentor_id: String,
    /// Their member number.
    pub member_number: Option<String>,
    /// The certification status symbol (`active`, `expired`, `revoked`, `none`).
    pub status: String,
    /// The expiry date.
    pub expires_on: Option<NaiveDate>,
    /// Whether the mentor is shown on the public site.
    pub show_on_public_site: bool,
    /// When this was last confirmed in sync with Dynamics.
    pub as_of: DateTime<Utc>,
}

/// How old a cached value is, and whether it is older than the configured limit (`cache.stale_after_hours`). The one
/// definition of staleness: the certification reads, the dashboard and the health monitor all use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staleness {
    /// When the value was last confirmed in sync with Dynamics.
    pub as_of: DateTime<Utc>,
    /// How long ago that was (zero when `as_of` is ahead of the clock).
    pub age: std::time::Duration,
    /// Whether `age` is greater than the limit. A value exactly as old as the limit is still fresh.
    pub stale: bool,
}

impl Staleness {
    /// The staleness at `now` of a value confirmed at `as_of`, against the limit `stale_after`.
    pub fn new(as_of: DateTime<Utc>, now: DateTime<Utc>, stale_after: std::time::Duration) -> Self {
        let age = (now - as_of).to_std().unwrap_or_default();
        Staleness {
            as_of,
            age,
            stale: age > stale_after,
        }
    }
}

impl CacheEntry {
    /// How stale this entry is at `now`, against the limit `stale_after`.
    pub fn staleness(&self, now: DateTime<Utc>, stale_after: std::time::Duration) -> Staleness {
        Staleness::new(self.as_of, now, stale_after)
    }
}

/// An approved honorarium or expense reimbursement recorded in the app, for the accounting export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    /// The app's id: the alternate key of the Dynamics posting, so a re-export updates rather than duplicates.
    pub id: String,
    /// The mentor paid.
    pub mentor_id: String,
    /// The mentor's member number (read with the posting; not stored on it).
    pub member_number: Option<String>,
    /// The amount, an exact decimal (never floating point).
    pub amount: Decimal,
    /// The ledger account.
    pub account: String,
    /// What the posting is for.
    pub description: Option<String>,
    /// When it was approved; only approved postings are exported.
    pub approved_at: Option<DateTime<Utc>>,
    /// When Dynamics confirmed the export.
    pub exported_at: Option<DateTime<Utc>>,
}
