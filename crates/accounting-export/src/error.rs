//! The crate's error type.

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an export or a reconciliation failed as a whole. A single posting that fails is not an error: it goes to
/// the failed-record queue.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The organisation's field mapping has no usable `[records.posting]`.
    #[error("the field mapping cannot be used for the accounting export: {0}")]
    Mapping(String),
    /// Dynamics could not be reached or refused the request as a whole.
    #[error("dynamics request failed")]
    Dynamics(#[from] dynamics_client::Error),
    /// The postings or the sync state could not be read or written.
    #[error("cannot read or write postings or the sync state; check the database connection")]
    Store(#[from] sync_store::Error),
}
