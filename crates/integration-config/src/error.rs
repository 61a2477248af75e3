//! The one error type of configuration loading.

use std::path::PathBuf;

use field_mapping::{Problem, ProblemList};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read the configuration file {path}; check the --config flag or SYNC_CONFIG")]
    Read {
        /// The path tried.
        path: PathBuf,
        /// The IO failure.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a value has the wrong TOML type.
    #[error("the configuration file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's description, with line and column.
        message: String,
    },
    /// Settings or environment variables are missing or invalid; every problem found is listed.
    #[error("the configuration has {} problem(s):\n{}", .0.len(), ProblemList(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The individual problems: the list for [`ConfigError::Invalid`], one entry otherwise.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            ConfigError::Invalid(problems) => problems.clone(),
            other => vec![Problem::new("", other.to_string())],
        }
    }
}
