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
