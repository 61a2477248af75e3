//! The fallbacks for when the Dynamics API path is down (docs/csv-fallback.md).
//!
//! [`CsvExporter`] writes the mentors' app-owned fields (certification status, expiry, public-site flag) of one
//! organisation as CSV files for the Dynamics Import Data wizard: the alternate key column first, so an import
//! updates the existing contacts instead of creating new ones; headers are the columns' display names from the
//! mapping; UTF-8 with a byte-order mark; dates as ISO 8601 `YYYY-MM-DD`; files split to stay under the wizard's
//! 8 MB limit; every cell a spreadsheet would read as a formula neutralised. A mentor that cannot be imported (no
//! member number, a character Dynamics forbids in keys, a value too long for its column) is never dropped
//! silently: it is listed with the reason in an errors file beside the export. The values are those the sync
//! engine would push ([`sync_engine::app_record`]), so the file and the API path agree.
//!
//! A [`ExportKind::Delta`] export holds only the mentors whose exported values differ from what Dynamics last
//! confirmed through the API (the link's shadow, saved by each successful sync), plus the mentors the API path has
//! never linked. "Since the last successful sync" is therefore decided per mentor, not by one timestamp, and it
//! includes certifications that expired by the passing of time, which change no app row. Until the API path works
//! again each delta is cumulative: importing it twice is harmless, since the import updates by alternate key.
//!
//! [`CertificationReader`] serves certification status from the local cache with its [`Staleness`] (as-of time, age
//! and a stale flag against `cache.stale_after_hours`), for the backend while Dynamics cannot be reached.
//!
//! Output is deterministic: the same state and clock give the same bytes. Nothing here talks to Dynamics.

mod cache;
mod csv;
mod error;
mod export;

pub use cache::{CachedCertification, CertificationReader};
pub use csv::{BYTE_ORDER_MARK, neutralise};
pub use error::{Error, Result};
pub use export::{
    CsvExporter, CsvFile, DEFAULT_MAX_FILE_BYTES, Export, ExportKind, ExportOptions, RowProblem, date_cell,
};
pub use sync_store::Staleness;
