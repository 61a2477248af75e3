//! HLFDynamicsSyncService: the delta sync between the peer-mentor app and HLF's Dynamics 365, in both directions.
//!
//! A run checks connectivity and the schema (the mapping against live metadata; any drift stops writes to
//! Dynamics), pulls what changed in Dynamics (change tracking, or a `modifiedon` watermark with an overlap window),
//! pushes what changed in the app plus the time rule (mentors whose certification expired by the passing of time
//! while Dynamics still shows them), and decides every record three-way against its shadow: ownership says which way
//! a field flows; a shared field changed on both sides is a conflict resolved by the configured strategy or held for
//! an admin. Writes go in adaptive `$batch`es guarded by etags (a 412 re-reads and decides again); failures go to the
//! failed-record queue, and a certification failure notifies the mentor's coordinator through the outbox.
//!
//! Crash safety: app writes, shadows and watermarks are committed only after the data they cover, and every write
//! is idempotent (upsert by alternate key, etag-guarded updates), so a run killed anywhere and started again
//! converges. One run per organisation holds the store's run lock.

mod clock;
mod decide;
mod error;
mod notify;
mod plan;
mod reconcile;
mod record;
mod run;
mod service;

pub use clock::{Clock, FixedClock, SystemClock};
pub use error::{Error, Result};
pub use notify::Message;
pub use plan::{Plan, PlanItem};
pub use reconcile::{Difference, ReconcileReport};
pub use record::{
    CertificationView, KNOWN_FIELDS, NO_CONTACT_REASON, SYNC_STAMP, app_record, certification_view, changed_at,
    local_today,
};
pub use service::{
    CertificationStatus, NOTE_AADSTS, NOTE_BATCH_SIZE, NOTE_PULL_COMPLETED, Progress, ProgressObserver, RunReport,
    SyncService,
};
