//! The store's error type. Put and get outcomes that a client sees (flush timeout, offset too
//! small, ...) are status enums, not errors; errors are for opening, I/O and corrupt files.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("store {0} is locked by another process")]
    Locked(PathBuf),
    #[error("{path}: file size {actual} differs from the configured {expected}")]
    FileSize {
        path: PathBuf,
        expected: usize,
        actual: u64,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{path}: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("JSON in {path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the store is shut down")]
    Shutdown,
    #[error("role switch: {0}")]
    RoleSwitch(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attaches what was being done to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| StoreError::Io {
            context: what(),
            source,
        })
    }
}
