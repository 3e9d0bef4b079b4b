//! What the [`crate::Storage`] facade adds for crash and disk-full survival: the optional
//! write-ahead log ([`crate::wal`]) with its replay and checkpoints, the read-only switch
//! ([`DiskGuard`]), and the maintenance thread that drives both.
//!
//! Ordering rules that make a crash safe:
//! - a sample goes to the WAL (memory buffer) before the table, under a shared gate; a checkpoint
//!   takes the gate exclusively to rotate segments, so every record of a closed segment is in
//!   the table before the checkpoint flushes;
//! - the index is flushed before any in-memory data part is written to disk (the table's
//!   `before_disk_flush` hook), so a part on disk never names a series the index could lose;
//! - closed segments are deleted only after the index and the table were flushed.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use crate::data::Table;
use crate::diskguard::DiskGuard;
use crate::error::{Result, StorageError};
use crate::index::{IndexDb, Label};
use crate::wal::{self, Wal};

/// How often the free space is checked.
const DISK_CHECK: Duration = Duration::from_secs(1);
/// A WAL segment this large triggers a checkpoint before the interval is up.
const MAX_SEGMENT_BYTES: u64 = 64 << 20;

/// Shared state of the durability machinery.
pub(crate) struct Durability {
    pub(crate) guard: Arc<DiskGuard>,
    pub(crate) wal: Option<Wal>,
    /// Shared by writers (WAL append + table add), exclusive for a segment rotation.
    pub(crate) gate: RwLock<()>,
    pub(crate) checkpoint_interval: Duration,
}

impl Durability {
    /// Waits until everything appended to the WAL so far is on disk (no-op without a WAL).
    pub(crate) fn sync_wal(&self) -> Result<()> {
        let Some(wal) = &self.wal else {
            return Ok(());
        };
        wal.sync_to(wal.appended()).map_err(|e| {
            self.guard.note_error(&e);
            metrics::counter!("strata_wal_errors_total").increment(1);
            tracing::error!(error = %e, "cannot write the WAL");
            StorageError::Unavailable(format!("cannot write the write-ahead log: {e}"))
        })
    }

    /// Rotates the WAL, flushes index and table, and deletes the closed segments.
    pub(crate) fn checkpoint(&self, index: &IndexDb, table: &Table) -> Result<()> {
        let Some(wal) = &self.wal else {
            return Ok(());
        };
        let seq = {
            let _exclusive = self.gate.write();
            wal.rotate()?
        };
        index.flush()?;
        table.flush()?;
        let removed = wal.remove_before(seq)?;
        metrics::counter!("strata_wal_checkpoints_total").increment(1);
        tracing::debug!(removed, "WAL checkpoint");
        Ok(())
    }
}

/// Where replayed records go: tenant, labels, timestamps, values.
pub(crate) type ReplaySink<'a> = dyn FnMut(crate::Tenant, &[Label<'_>], &[i64], &[f64]) -> Result<()> + 'a;

/// Replays every segment under `dir` through `add`, flushes, deletes them. Returns the number
/// the next segment should take and the samples replayed.
pub(crate) fn replay(dir: &Path, index: &IndexDb, table: &Table, add: &mut ReplaySink<'_>) -> Result<(u64, u64)> {
    let segments = wal::list_segments(dir)?;
    let Some(&last) = segments.last() else {
        return Ok((1, 0));
    };
    let started = Instant::now();
    let (mut samples, mut records, mut failed) = (0u64, 0u64, 0u64);
    for &seq in &segments {
        let path = wal::segment_path(dir, seq);
        let bytes = std::fs::read(&path).map_err(|e| StorageError::io("cannot read", &path, e))?;
        let (recs, torn) = wal::read_segment(&bytes);
        if torn {
            // The tail a crash interrupted: those writes were never acknowledged.
            tracing::warn!(path = %path.display(), records = recs.len(), "WAL segment ends in a torn or corrupt record; replaying what precedes it");
            metrics::counter!("strata_wal_torn_segments_total").increment(1);
        }
        for r in recs {
            let labels: Vec<Label<'_>> = r.labels.iter().map(|(n, v)| Label { name: n, value: v }).collect();
            match add(r.tenant, &labels, &r.timestamps, &r.values) {
                Ok(()) => {
                    records += 1;
                    samples += r.timestamps.len() as u64;
                }
                Err(e @ (StorageError::Io { .. } | StorageError::Unavailable(_))) => return Err(e),
                Err(e) => {
                    failed += 1;
                    tracing::warn!(error = %e, "skipping a WAL record the storage refuses");
                }
            }
        }
    }
    index.flush()?;
    table.flush()?;
    wal::remove_segments_before(dir, last + 1)?;
    metrics::counter!("strata_wal_replayed_samples_total").increment(samples);
    tracing::info!(
        segments = segments.len(),
        records,
        samples,
        failed,
        ms = started.elapsed().as_millis() as u64,
        "replayed the write-ahead log"
    );
    Ok((last + 1, samples))
}

/// The maintenance thread: disk checks every second, WAL checkpoints every interval. Stopped
/// and joined when dropped.
pub(crate) struct Maintenance {
    stop: Option<Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl Maintenance {
    pub(crate) fn start(dur: Arc<Durability>, index: Arc<IndexDb>, table: Arc<Table>) -> Result<Maintenance> {
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("strata-storage-maint".into())
            .spawn(move || run(&rx, &dur, &index, &table))
            .map_err(|e| StorageError::Unavailable(format!("cannot start the maintenance thread: {e}")))?;
        Ok(Maintenance {
            stop: Some(tx),
            handle: Some(handle),
        })
    }

    /// Stops the thread and waits for it.
    pub(crate) fn stop(&mut self) {
        self.stop.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Maintenance {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(stop: &Receiver<()>, dur: &Durability, index: &IndexDb, table: &Table) {
    let mut last_checkpoint = Instant::now();
    loop {
        match stop.recv_timeout(DISK_CHECK.min(dur.checkpoint_interval)) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        dur.guard.check();
        let Some(wal) = &dur.wal else {
            continue;
        };
        if last_checkpoint.elapsed() >= dur.checkpoint_interval || wal.active_segment_bytes() >= MAX_SEGMENT_BYTES {
            last_checkpoint = Instant::now();
            if let Err(e) = dur.checkpoint(index, table) {
                dur.guard.note_error(&e);
                metrics::counter!("strata_wal_errors_total").increment(1);
                tracing::error!(error = %e, "WAL checkpoint failed; the segments are kept and replayed at start-up");
            }
        }
    }
}
