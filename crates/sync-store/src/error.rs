//! The store's error type.

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database could not be reached or refused the statement.
    #[error("database error while {doing}")]
    Database {
        /// What the store was doing.
        doing: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The schema could not be brought up to date.
    #[error("cannot apply the database migrations; check that the database user may create tables")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A read-only connection found a database the sync has not set up (or an older schema).
    #[error(
        "the sync database has no up-to-date schema; run `sync-worker run` (or any command that writes) once first"
    )]
    NotMigrated,
    /// The database URL is not one this store supports.
    #[error("unsupported database URL; use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl,
    /// A stored value could not be read back (a JSON column, a date).
    #[error("a stored value in {table}.{column} is malformed")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
    },
    /// An [`crate::AppStore`] implemented by the backend failed.
    #[error("the app store failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The row to change does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// The app refused a change to one record (a constraint or a validation). An [`crate::AppStore`] returns this
    /// so the engine queues that record with the reason and goes on with the run.
    #[error("the app refused the change: {reason}")]
    Refused {
        /// Why, in words an admin can act on (no personal values).
        reason: String,
    },
    /// The run lock was lost while a run held it (the lease lapsed and another worker took it, or the database
    /// session holding it ended): the run must stop rather than overlap another.
    #[error("the run lock of organisation {organisation} was lost ({why}); this run stopped so two runs never overlap")]
    LockLost {
        /// The organisation.
        organisation: String,
        /// How it was lost.
        why: &'static str,
    },
}

impl Error {
    /// Whether the error concerns one record (a refused or missing row, a constraint, a malformed stored value),
    /// not the store as a whole: the engine queues that record and goes on.
    pub fn is_record_level(&self) -> bool {
        match self {
            Error::Refused { .. } | Error::NotFound { .. } | Error::Corrupt { .. } => true,
            Error::Database {
                source: sqlx::Error::Database(db),
                ..
            } => !matches!(db.kind(), sqlx::error::ErrorKind::Other),
            _ => false,
        }
    }
}

/// Attaches what the store was doing to a driver error.
pub(crate) trait Context<T> {
    fn doing(self, doing: &str) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, sqlx::Error> {
    fn doing(self, doing: &str) -> Result<T> {
        self.map_err(|source| Error::Database {
            doing: doing.to_owned(),
            source,
        })
    }
}
