//! AccountingExporterService: approved postings (honoraria and expense reimbursements recorded in the app) exported
//! to HLF's Dynamics postings table, exactly once.
//!
//! [`AccountingExporter::export`] reads the organisation's approved postings not yet marked exported, converts them
//! through the mapping's `[records.posting]` (amounts as exact decimals at the column's precision, never floating
//! point) and upserts them in `$batch`es keyed by the posting id, the table's alternate key. A posting is marked
//! exported only after Dynamics confirmed its write. A crash between the write and the mark leaves the posting
//! unmarked; the next export writes it again to the same row (upsert by alternate key), so Dynamics never holds it
//! twice. A posting that fails (refused by Dynamics, or invalid: a key Dynamics forbids, an amount with more
//! decimals than the column keeps) goes to the failed-record queue with the reason and is retried on the next
//! export until its attempts are spent; then it stays visible as dead until an admin requeues or dismisses it.
//!
//! [`AccountingExporter::reconcile`] lists postings marked exported that Dynamics does not hold (deleted there, or
//! lost), and those whose amount differs.

mod error;
mod exporter;

pub use error::{Error, Result};
pub use exporter::{
    AccountingExporter, AmountMismatch, ExportSummary, POSTING, PostingPlan, PostingRun, Reconciliation,
};
