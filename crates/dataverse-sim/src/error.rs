//! The crate's one error type.

use std::path::PathBuf;

/// What can go wrong when starting or configuring the simulator. Request-level problems never surface here: they
/// are answered to the client with a Dataverse- or Azure AD-shaped error body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A fixture file could not be read.
    #[error("cannot read fixture {path}")]
    ReadFixture {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A fixture file is not valid JSON or TOML of the expected shape.
    #[error("fixture {path} is malformed: {reason}")]
    BadFixture {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting is invalid (for example a fault file names an unknown status).
    #[error("invalid simulator setting: {0}")]
    InvalidSetting(String),
    /// The listening socket could not be bound.
    #[error("cannot bind {addr}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate could not be generated or the TLS configuration built.
    #[error("cannot set up TLS: {0}")]
    Tls(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
