//! The engine's error type.

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a run, plan or reconcile could not be done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another run for the organisation holds the lock.
    #[error("another run for organisation {organisation} is in progress{}; this one was skipped", holder.as_ref().map(|h| format!(" (held by {h})")).unwrap_or_default())]
    AlreadyRunning {
        /// The organisation.
        organisation: String,
        /// Who holds the lock, when known.
        holder: Option<String>,
    },
    /// Dynamics could not be used for the whole run: authentication, connectivity, throttling beyond the budget.
    #[error("the sync for organisation {organisation} could not use Dynamics")]
    Dynamics {
        /// The organisation.
        organisation: String,
        /// What went wrong.
        #[source]
        source: dynamics_client::Error,
    },
    /// The sync state or app store failed.
    #[error("the sync store failed")]
    Store(#[from] sync_store::Error),
    /// The mapping cannot drive the sync.
    #[error("the field mapping cannot be used: {0}")]
    Mapping(String),
    /// A shutdown was requested; the run stopped after its current page, with everything before it saved.
    #[error("the run was stopped by a shutdown request after its current page; the next run continues from there")]
    Stopped,
    /// A conflict or record the caller named does not exist.
    #[error("{0} not found")]
    NotFound(String),
}

impl Error {
    /// The AADSTS code when Azure AD refused the token request (e.g. 7000222: the client secret has expired).
    pub fn aadsts_code(&self) -> Option<u32> {
        match self {
            Error::Dynamics {
                source: dynamics_client::Error::Auth(auth),
                ..
            } => auth.aadsts_code(),
            _ => None,
        }
    }
}
