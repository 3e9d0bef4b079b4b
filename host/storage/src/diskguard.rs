//! Read-only mode on a nearly full disk.
//!
//! When the data directory's filesystem has less free space than `min_free_disk_bytes`, or a
//! write failed with `ENOSPC`, the storage refuses new samples with
//! [`StorageError::Unavailable`] (the HTTP layer answers 503) instead of failing half-way
//! through a flush. Merges wait too (they need free space for their output). A periodic check
//! ([`DiskGuard::check`], run by the storage's maintenance thread) leaves the mode by itself
//! once space is back.
//!
//! Metrics: gauge `strata_storage_read_only` (1 while read-only), counters
//! `strata_storage_read_only_rejections_total` (writes refused) and
//! `strata_storage_read_only_transitions_total{to=read_only|read_write}`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::error::StorageError;

/// The read-only switch of one data directory. `Send + Sync`; shared through an `Arc`.
#[derive(Debug)]
pub struct DiskGuard {
    path: PathBuf,
    min_free_bytes: AtomicU64,
    read_only: AtomicBool,
    /// Set by an `ENOSPC`: stays read-only until a check sees enough space again.
    enospc_seen: AtomicBool,
    reason: Mutex<String>,
    rejections: AtomicU64,
}

/// The raw OS error number of "no space left on device" on Linux and the BSDs.
const ENOSPC: i32 = 28;
/// "Disk quota exceeded" on Linux: for the data directory the same as a full disk.
const EDQUOT: i32 = 122;

/// Whether `err` (or an I/O error it wraps, e.g. through `io::Error::other` or a writer's
/// flush) says the filesystem is out of space or quota.
fn is_out_of_space(err: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    if matches!(err.raw_os_error(), Some(ENOSPC | EDQUOT))
        || matches!(err.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
    {
        return true;
    }
    // A wrapped cause: bounded depth, so a cycle in a foreign error type cannot loop.
    let mut inner = err.get_ref().map(|e| e as &(dyn std::error::Error + 'static));
    for _ in 0..8 {
        let Some(e) = inner else { return false };
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return is_out_of_space(io);
        }
        inner = e.source();
    }
    false
}

impl DiskGuard {
    /// A guard for the filesystem holding `path`; read-write until the first check says otherwise.
    pub fn new(path: &Path, min_free_bytes: u64) -> DiskGuard {
        DiskGuard {
            path: path.to_path_buf(),
            min_free_bytes: AtomicU64::new(min_free_bytes),
            read_only: AtomicBool::new(false),
            enospc_seen: AtomicBool::new(false),
            reason: Mutex::new(String::new()),
            rejections: AtomicU64::new(0),
        }
    }

    /// Free bytes for unprivileged users on the filesystem of `path` (`u64::MAX` if unknown).
    pub fn free_bytes(&self) -> u64 {
        free_disk_bytes(&self.path)
    }

    /// Re-reads the free space and enters or leaves read-only mode. Returns true when read-only.
    pub fn check(&self) -> bool {
        let free = self.free_bytes();
        let min_free = self.min_free_bytes();
        if free < min_free {
            self.enter(format!(
                "the disk is nearly full: {free} bytes free at {}, below storage.min_free_disk_space={}",
                self.path.display(),
                min_free
            ));
        } else if self.read_only.load(Ordering::Acquire) {
            // After an ENOSPC, insist on the threshold (at least 1 MiB) before writing again, so
            // the node does not flap between full and not-quite-full.
            let needed = min_free.max(1 << 20);
            if !self.enospc_seen.load(Ordering::Acquire) || free >= needed {
                self.leave(free);
            }
        }
        self.is_read_only()
    }

    /// The threshold below which writes are refused.
    pub fn min_free_bytes(&self) -> u64 {
        self.min_free_bytes.load(Ordering::Relaxed)
    }

    /// Changes the threshold (a configuration reload); the next check applies it.
    pub fn set_min_free_bytes(&self, bytes: u64) {
        self.min_free_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Whether writes are refused now.
    pub fn is_read_only(&self) -> bool {
        self.read_only.load(Ordering::Acquire)
    }

    /// `Ok` when writes are allowed; otherwise the error to return to the writer (counted).
    pub fn admit(&self) -> Result<(), StorageError> {
        if !self.is_read_only() {
            return Ok(());
        }
        self.rejections.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("strata_storage_read_only_rejections_total").increment(1);
        Err(StorageError::Unavailable(format!(
            "read-only mode: {}; writes resume by themselves when space is freed",
            self.reason.lock()
        )))
    }

    /// Writes refused since start.
    pub fn rejections(&self) -> u64 {
        self.rejections.load(Ordering::Relaxed)
    }

    /// Looks at a failed write: `ENOSPC` (or an exceeded quota) switches to read-only mode.
    /// Returns true if it did.
    pub fn note_io_error(&self, err: &std::io::Error) -> bool {
        if !is_out_of_space(err) {
            return false;
        }
        self.enospc_seen.store(true, Ordering::Release);
        self.enter(format!(
            "a write failed with \"no space left on device\" under {}",
            self.path.display()
        ));
        true
    }

    /// [`DiskGuard::note_io_error`] for a storage error.
    pub fn note_error(&self, err: &StorageError) -> bool {
        match err {
            StorageError::Io { source, .. } => self.note_io_error(source),
            _ => false,
        }
    }

    fn enter(&self, reason: String) {
        let was = self.read_only.swap(true, Ordering::AcqRel);
        if !was {
            tracing::error!(reason = %reason, "storage enters read-only mode: ingestion answers 503, merges wait");
            metrics::counter!("strata_storage_read_only_transitions_total", "to" => "read_only").increment(1);
            metrics::gauge!("strata_storage_read_only").set(1.0);
        }
        *self.reason.lock() = reason;
    }

    fn leave(&self, free: u64) {
        if self.read_only.swap(false, Ordering::AcqRel) {
            self.enospc_seen.store(false, Ordering::Release);
            tracing::warn!(
                free_bytes = free,
                "storage leaves read-only mode: free disk space is back"
            );
            metrics::counter!("strata_storage_read_only_transitions_total", "to" => "read_write").increment(1);
            metrics::gauge!("strata_storage_read_only").set(0.0);
        }
    }
}

/// Free bytes for unprivileged users on the filesystem of `path` (`u64::MAX` if unknown, so an
/// unreadable statvfs never blocks writes on its own).
pub fn free_disk_bytes(path: &Path) -> u64 {
    match rustix::fs::statvfs(path) {
        Ok(s) => s.f_bavail.saturating_mul(s.f_frsize),
        Err(_) => u64::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_enters_and_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let g = DiskGuard::new(dir.path(), u64::MAX);
        assert!(g.check());
        let err = g.admit().unwrap_err().to_string();
        assert!(err.contains("min_free_disk_space"), "{err}");
        assert_eq!(g.rejections(), 1);
        g.set_min_free_bytes(0);
        assert!(!g.check());
        assert!(g.admit().is_ok());
    }

    #[test]
    fn enospc_enters_and_a_check_with_space_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let g = DiskGuard::new(dir.path(), 0);
        assert!(!g.note_io_error(&std::io::Error::other("x")));
        assert!(!g.is_read_only());
        assert!(g.note_io_error(&std::io::Error::from_raw_os_error(ENOSPC)));
        assert!(g.is_read_only());
        assert!(g.admit().unwrap_err().to_string().contains("no space left"));
        // A tmpdir has more than 1 MiB free on any machine that runs the tests.
        assert!(!g.check());
        assert!(g.admit().is_ok());
    }

    #[test]
    fn out_of_space_is_recognised_when_wrapped_or_by_kind() {
        let full = || std::io::Error::from_raw_os_error(ENOSPC);
        assert!(is_out_of_space(&full()));
        assert!(is_out_of_space(&std::io::Error::from_raw_os_error(EDQUOT)));
        assert!(is_out_of_space(&std::io::Error::from(std::io::ErrorKind::StorageFull)));
        assert!(is_out_of_space(&std::io::Error::other(full())));
        // Through a foreign error's `source()` chain.
        assert!(is_out_of_space(&std::io::Error::other(StorageError::io(
            "cannot write",
            "/x",
            full()
        ))));
        assert!(!is_out_of_space(&std::io::Error::other("no space left, says a liar")));
        assert!(!is_out_of_space(&std::io::Error::from_raw_os_error(5)));
        let dir = tempfile::tempdir().unwrap();
        let g = DiskGuard::new(dir.path(), 0);
        let wrapped = StorageError::io("cannot write", dir.path(), std::io::Error::other(full()));
        assert!(g.note_error(&wrapped));
        assert!(g.is_read_only());
    }
}
