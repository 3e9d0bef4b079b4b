//! The mergeset error type.

use std::path::PathBuf;

/// Everything a mergeset table can fail with. Messages name the file or part involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Data on disk does not decode; `path` names the damaged part or file.
    #[error("corrupt data in {path}: {detail}")]
    Corrupt {
        /// The part directory or file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

impl Error {
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

/// Maps an io error to [`Error::Io`] with `op` and `p`.
pub(crate) fn io<'a>(op: &'static str, p: &'a std::path::Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| Error::io(op, p, e)
}

/// Short alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
