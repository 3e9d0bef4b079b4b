//! Durable file primitives shared by every on-disk structure (data parts, mergeset parts,
//! queues, snapshots).
//!
//! The rule they serve: anything that a manifest lists was fully written and fsynced first, and a
//! manifest is replaced atomically (write a temporary file, fsync it, rename it over the old one,
//! fsync the directory). A crash therefore leaves either the old manifest or the new one, never a
//! torn one.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Name of the lock file that keeps a second process off a data directory.
pub const LOCK_FILE_NAME: &str = "flock.lock";

/// Fsyncs a directory so that entries created, renamed or removed in it are durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Fsyncs a file's contents and metadata.
pub fn fsync_file(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Writes `contents` to `path` so that after a crash the file holds either its old contents or
/// the new ones: temp file in the same directory, fsync, rename, fsync the directory.
pub fn atomic_write(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = parent_dir(path);
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no file name", path.display()),
        )
    })?;
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(".tmp");
    let tmp_path = dir.join(tmp_name);
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp_path)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    fs::rename(&tmp_path, path)?;
    fsync_dir(dir)
}

/// Creates `dir` and any missing parents, fsyncing each parent that gained an entry, so the new
/// directory survives a crash.
pub fn create_dir_all_durable(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = parent_dir(dir);
    if !parent.as_os_str().is_empty() && !parent.is_dir() {
        create_dir_all_durable(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(err) => return Err(err),
    }
    fsync_dir(if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    })
}

/// Removes a directory tree and fsyncs its parent so the removal is durable.
pub fn remove_dir_all_durable(dir: &Path) -> io::Result<()> {
    fs::remove_dir_all(dir)?;
    fsync_dir(parent_dir(dir))
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Why a directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "{path} is locked by another process; only one strata process may use a data directory at a time. \
         Stop the other process or choose another directory"
    )]
    Busy {
        /// The lock file.
        path: PathBuf,
    },
    /// The directory or the lock file could not be created or opened.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// An exclusive advisory lock on a directory (`flock(LOCK_EX|LOCK_NB)` on `<dir>/flock.lock`),
/// held until dropped. The kernel releases it if the process dies, so a crash never leaves a
/// stale lock behind.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Creates `dir` if needed and takes its lock, failing at once if another process has it.
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        let path = dir.join(LOCK_FILE_NAME);
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        create_dir_all_durable(dir).map_err(io_err)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file, path }),
            Err(TryLockError::WouldBlock) => Err(LockError::Busy { path }),
            Err(TryLockError::Error(source)) => Err(LockError::Io { path, source }),
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_contents_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("parts.json");
        atomic_write(&path, b"[1]").unwrap();
        atomic_write(&path, b"[1,2]").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"[1,2]");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("parts.json")]);
    }

    #[test]
    fn second_lock_on_same_dir_is_refused_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("nested/data");
        let first = DirLock::acquire(&data).unwrap();
        let err = DirLock::acquire(&data).unwrap_err();
        assert!(matches!(err, LockError::Busy { .. }));
        assert!(err.to_string().contains("only one strata process"), "{err}");
        drop(first);
        DirLock::acquire(&data).unwrap();
    }

    #[test]
    fn create_and_remove_durable() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_dir_all_durable(&deep).unwrap();
        create_dir_all_durable(&deep).unwrap();
        assert!(deep.is_dir());
        remove_dir_all_durable(&dir.path().join("a")).unwrap();
        assert!(!dir.path().join("a").exists());
    }
}
