//! The health monitor's error type.

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a health check, an evaluation or a delivery round could not be done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The sync store could not be read or written.
    #[error("the sync store failed")]
    Store(#[from] sync_store::Error),
    /// A notification channel is configured in a way that cannot work.
    #[error("the {channel} notification channel cannot be used: {reason}")]
    Channel {
        /// `email` or `webhook`.
        channel: &'static str,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The metrics could not be encoded.
    #[error("cannot encode the metrics: {0}")]
    Metrics(String),
}
