//! IntegrationConfigService: turns the environment and a TOML file into validated settings for every other crate.
//!
//! Credentials come only from environment variables (`DYNAMICS_TENANT_ID`, `DYNAMICS_CLIENT_ID`,
//! `DYNAMICS_CLIENT_SECRET`, `DYNAMICS_INSTANCE_URL`, or another prefix per organisation), or from the files their
//! `_FILE` forms name (`DYNAMICS_CLIENT_SECRET_FILE=/run/secrets/client-secret`); everything else comes from the
//! file. A secret from a file is read again each time it is used ([`SecretSource::current`]), so it can be rotated
//! under a running process. Loading reports every problem at once, each naming the variable or key and what to do. Secrets are held
//! in [`secrecy::SecretString`], whose `Debug` prints a placeholder, so no setting can leak one by being printed.
//!
//! This crate does not read the process environment itself: the binaries pass it in through [`Environment`], which
//! keeps loading deterministic and testable.

mod error;
mod raw;
mod reference;
mod schedule;
mod secret;
mod settings;
mod summary;
mod validate;

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::path::Path;

pub use error::ConfigError;
pub use field_mapping::{ConflictStrategy, Problem};
pub use reference::{ENVIRONMENT, SETTINGS, Setting, reference_markdown};
pub use secrecy::{ExposeSecret, SecretString};
pub use secret::{SecretFileError, SecretSource};
pub use settings::*;
pub use summary::Summary;
pub use validate::{BUILTIN_MAPPING, DATABASE_URL_ENV, DEFAULT_AUTHORITY_HOST, DEFAULT_CREDENTIAL_PREFIX, FILE_SUFFIX};

/// The variable naming the configuration file when no `--config` flag is given.
pub const CONFIG_PATH_ENV: &str = "SYNC_CONFIG";

/// Where settings that come from the environment are read. The binaries pass the process environment; tests pass a
/// map.
pub trait Environment {
    /// The variable's value, or `None` when it is unset.
    fn get(&self, name: &str) -> Option<String>;
}

impl<S: BuildHasher> Environment for HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

impl Environment for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        BTreeMap::get(self, name).cloned()
    }
}

impl IntegrationConfig {
    /// Reads the configuration file at `path` (mapping paths in it are relative to its folder) and the credentials
    /// from `env`, and validates both together.
    pub fn load(path: &Path, env: &dyn Environment) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base_dir = path.parent().unwrap_or_else(|| Path::new("."));
        Self::from_toml(&text, &path.display().to_string(), base_dir, env)
    }

    /// Validates configuration text. `name` names the document in messages; `base_dir` resolves relative mapping
    /// paths.
    pub fn from_toml(text: &str, name: &str, base_dir: &Path, env: &dyn Environment) -> Result<Self, ConfigError> {
        let syntax = |e: &dyn std::fmt::Display| ConfigError::Syntax {
            path: name.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        };
        let mut unknown = Vec::new();
        let deserializer = toml::Deserializer::parse(text).map_err(|e| syntax(&e))?;
        let raw: raw::RawConfig = serde_ignored::deserialize(deserializer, |path| {
            unknown.push(Problem::new(
                path.to_string(),
                "unknown key; remove it or check its spelling against the configuration reference in README.md",
            ));
        })
        .map_err(|e| syntax(&e))?;
        let mut validator = validate::Validator::new(env, base_dir);
        for problem in unknown {
            validator.push(problem.path, problem.message);
        }
        validator.finish(raw).map_err(ConfigError::Invalid)
    }

    /// The organisation with the given app id.
    pub fn organisation(&self, id: &str) -> Option<&OrganisationConfig> {
        self.organisations.iter().find(|o| o.id == id)
    }
}
