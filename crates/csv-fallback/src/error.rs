//! The crate's error type.

use std::path::PathBuf;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an export or a cache read failed. Problems with single mentors are not errors: they go to the errors file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The organisation's field mapping lacks what the export needs.
    #[error("the field mapping cannot be used for the CSV export: {0}")]
    Mapping(String),
    /// The app's data or the sync state could not be read.
    #[error("cannot read the app's data or the sync state; check the database connection")]
    Store(#[from] sync_store::Error),
    /// An export file could not be written.
    #[error("cannot write {}; check that the directory exists and is writable", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
}
