//! A secret's source: a value from the environment, or a file named by the `<NAME>_FILE` variable that is read again
//! each time the secret is used, so a mounted Kubernetes Secret or a systemd credential can be rotated under a
//! running `daemon` or `serve` without a restart.

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

/// Where a secret comes from. Its `Debug` shows the file's path, never a value.
#[derive(Clone)]
pub struct SecretSource {
    loaded: SecretString,
    file: Option<PathBuf>,
}

/// A secret file that cannot be read, or is empty, when the secret is used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the secret file {path}: {reason}; check that it is mounted and readable by this process")]
pub struct SecretFileError {
    /// The file, as an absolute path.
    pub path: String,
    /// What went wrong (the I/O error, or "it is empty").
    pub reason: String,
}

impl SecretSource {
    /// A secret given as a value (a variable, or a test's literal); it never changes.
    pub fn value(value: impl Into<String>) -> Self {
        SecretSource {
            loaded: SecretString::from(value.into()),
            file: None,
        }
    }

    /// A secret read from `path` now, and again each time [`SecretSource::current`] is called.
    pub fn file(path: impl Into<PathBuf>) -> Result<Self, SecretFileError> {
        let path = path.into();
        let loaded = read_secret_file(&path)?;
        Ok(SecretSource {
            loaded,
            file: Some(path),
        })
    }

    /// The value as it was when the configuration was loaded.
    pub fn loaded(&self) -> &SecretString {
        &self.loaded
    }

    /// The file the secret is read from, when it comes from one.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The value now: the file read again when the secret comes from one (a rotated secret is picked up), the
    /// loaded value otherwise.
    pub fn current(&self) -> Result<SecretString, SecretFileError> {
        match &self.file {
            Some(path) => read_secret_file(path),
            None => Ok(self.loaded.clone()),
        }
    }
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(path) => write!(f, "SecretSource(file {})", path.display()),
            None => f.write_str("SecretSource([REDACTED])"),
        }
    }
}

/// Reads a secret file. A trailing line break (as `echo` and most editors leave) is not part of the secret; any other
/// white space is kept, so a copy mistake is still reported as such.
fn read_secret_file(path: &Path) -> Result<SecretString, SecretFileError> {
    let shown = || {
        std::path::absolute(path)
            .unwrap_or_else(|_| path.to_owned())
            .display()
            .to_string()
    };
    let text = std::fs::read_to_string(path).map_err(|e| SecretFileError {
        path: shown(),
        reason: e.to_string(),
    })?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(SecretFileError {
            path: shown(),
            reason: "it is empty".to_owned(),
        });
    }
    Ok(SecretString::from(value.to_owned()))
}

impl PartialEq for SecretSource {
    fn eq(&self, other: &Self) -> bool {
        self.file == other.file && self.loaded.expose_secret() == other.loaded.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_again_each_time_and_loses_its_line_break() {
        let dir = std::env::temp_dir().join(format!("secret-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("client-secret");
        std::fs::write(&path, "first\n").unwrap();
        let secret = SecretSource::file(&path).unwrap();
        assert_eq!(secret.loaded().expose_secret(), "first");
        std::fs::write(&path, "second\r\n").unwrap();
        assert_eq!(secret.current().unwrap().expose_secret(), "second");
        assert_eq!(secret.loaded().expose_secret(), "first");
        std::fs::write(&path, " spaced ").unwrap();
        assert_eq!(secret.current().unwrap().expose_secret(), " spaced ");
        std::fs::write(&path, "\n").unwrap();
        let empty = secret.current().unwrap_err();
        assert_eq!(empty.reason, "it is empty");
        std::fs::remove_file(&path).unwrap();
        let gone = secret.current().unwrap_err();
        assert!(gone.path.ends_with("client-secret"), "{gone}");
        assert!(!format!("{secret:?}").contains("first"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_value_never_shows_in_debug() {
        let secret = SecretSource::value("hunter2");
        assert_eq!(secret.current().unwrap().expose_secret(), "hunter2");
        assert!(!format!("{secret:?}").contains("hunter2"));
    }
}
