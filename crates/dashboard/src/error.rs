//! The dashboard's error type, and how each error becomes an HTTP answer.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the dashboard could not be built or a request could not be answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration has no admin credential, so the dashboard must not start.
    #[error(
        "the dashboard has no admin credential; set the {variable} variable (a long random token, or the password \
         for dashboard.username with auth = \"basic\")"
    )]
    NoCredential {
        /// The variable the credential is read from.
        variable: String,
    },
    /// The admin credential is too short to withstand guessing.
    #[error(
        "the dashboard's admin credential in {variable} has {length} characters; use at least {minimum} (for example \
         `openssl rand -hex 32`, 64 characters)"
    )]
    WeakCredential {
        /// The variable the credential is read from.
        variable: String,
        /// Its length in characters.
        length: usize,
        /// The shortest accepted.
        minimum: usize,
    },
    /// The certificate or key of `dashboard.tls_cert_file` / `dashboard.tls_key_file` cannot be used.
    #[error("cannot use {} for the dashboard's TLS: {problem}", file.display())]
    Tls {
        /// The file at fault.
        file: std::path::PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// An organisation of the configuration has no sync service.
    #[error("organisation {organisation} of the configuration has no sync service")]
    NoService {
        /// The organisation.
        organisation: String,
    },
    /// The operating system gave no randomness for the CSRF key.
    #[error("no randomness for the csrf key")]
    Random,
    /// A request named an organisation, record, conflict or alert that does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A request was malformed.
    #[error("{0}")]
    BadRequest(String),
    /// A POST came without a valid CSRF token or from another site.
    #[error("the request was refused: {0}")]
    Forbidden(&'static str),
    /// The sync store failed.
    #[error("the sync store failed")]
    Store(#[from] sync_store::Error),
    /// The sync engine refused or failed an action.
    #[error("the sync engine could not do it")]
    Engine(#[from] sync_engine::Error),
    /// The health monitor could not judge an organisation or render the metrics.
    #[error("the health check failed")]
    Health(#[from] health_monitor::Error),
    /// A CSV export could not be built.
    #[error("the csv export could not be built")]
    Export(#[from] csv_fallback::Error),
}

impl Error {
    /// The HTTP status for this error.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Engine(sync_engine::Error::NotFound(_)) => StatusCode::NOT_FOUND,
            Error::Store(sync_store::Error::NotFound { .. }) => StatusCode::NOT_FOUND,
            Error::Engine(sync_engine::Error::Store(sync_store::Error::NotFound { .. })) => StatusCode::NOT_FOUND,
            Error::Engine(sync_engine::Error::AlreadyRunning { .. }) => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the admin is told: the message and its causes, which name records and settings but never a secret.
    pub(crate) fn public_message(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(inner) = source {
            text.push_str(": ");
            text.push_str(&inner.to_string());
            source = inner.source();
        }
        text
    }
}

/// The JSON API's error answer: `{"error": "..."}` with the status.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if self.status().is_server_error() {
            tracing::error!(error = %self.public_message(), "dashboard request failed");
        }
        (
            self.status(),
            Json(serde_json::json!({ "error": self.public_message() })),
        )
            .into_response()
    }
}
