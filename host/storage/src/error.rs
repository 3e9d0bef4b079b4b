//! The storage engine's error type, shared by the data side and the index side.

use std::path::PathBuf;

/// Everything the storage engine can fail with. Messages name the file or part involved so an
/// operator can act; corruption is always an error, never a panic or silent garbage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("cannot open", "cannot write", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Data on disk does not decode; `path` names the part (or file) that is damaged.
    #[error("corrupt data in {path}: {detail}")]
    Corrupt {
        /// The part directory or file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Input rejected by the engine (unsorted samples, a label too long, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A search matched more series than allowed.
    #[error("the query matches more than {limit} series; narrow the selector or raise the limit")]
    TooManySeries {
        /// The limit in force.
        limit: usize,
    },
    /// The data directory is in use by another process (or cannot be locked).
    #[error("{0}")]
    Locked(String),
    /// The engine cannot accept writes now (disk nearly full, shutting down); retry later.
    #[error("storage is not accepting writes: {0}")]
    Unavailable(String),
}

impl StorageError {
    /// An I/O error with its operation and path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// A corruption error naming `path`.
    pub fn corrupt(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Self::Corrupt {
            path: path.into(),
            detail: detail.into(),
        }
    }
}

/// Short alias used across the crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
