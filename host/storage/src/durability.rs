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
/// A WAL segment this large triggers a checkpoint before the interval is up. Large enough that
/// a busy node keeps a segment for a while (series labels are logged once per segment), small
/// enough to replay in seconds.
const MAX_SEGMENT_BYTES: u64 = 256 << 20;

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
        wal.sync_to(wal.appended()).map_err(|e| self.wal_error(e))
    }

    /// Waits until the WAL holds everything up to `pos` (from [`Durability::log_batch`]).
    pub(crate) fn wait_wal(&self, pos: u64) -> Result<()> {
        let Some(wal) = &self.wal else {
            return Ok(());
        };
        wal.wait(pos).map_err(|e| self.wal_error(e))
    }

    /// Logs one request as one WAL record and starts writing it; returns the position to wait
    /// for, or `None` without a WAL. `batch` holds the request's samples keyed by each series'
    /// metric id (resolved by the index already); `series` is the request itself, visited a
    /// second time only when the active segment has not defined some of its series yet, to
    /// take the labels of just those. Call with the gate held shared, before the samples go
    /// into the table. `start` begins writing at once (see [`Wal::append_batch`]).
    pub(crate) fn log_batch(
        &self,
        tenant: crate::Tenant,
        batch: &wal::Batch,
        series: &BatchSeries<'_>,
        start: bool,
    ) -> Result<Option<u64>> {
        let Some(wal) = &self.wal else {
            return Ok(None);
        };
        let mut defs = wal::Definitions::default();
        loop {
            let missing = match wal.append_batch(tenant, batch, &defs, start) {
                wal::Append::Logged(pos) => return Ok(Some(pos)),
                wal::Append::Undefined(missing) => missing,
            };
            // `missing` is ascending; the visitor yields the series in the same order as for
            // `batch` (the `BatchSeries` contract).
            let mut next = missing.iter().copied().peekable();
            let mut i = 0usize;
            series(&mut |labels, timestamps, _| {
                // Series without samples are not in the batch.
                if timestamps.is_empty() {
                    return Ok(());
                }
                if next.peek() == Some(&i) {
                    defs.add(batch.key(i), labels);
                    next.next();
                }
                i += 1;
                Ok(())
            })?;
            if next.peek().is_some() || i != batch.len() {
                // Without this a visitor that changed between passes would loop forever.
                return Err(StorageError::InvalidInput(
                    "the request yielded different series on its second pass".into(),
                ));
            }
        }
    }

    fn wal_error(&self, e: StorageError) -> StorageError {
        self.guard.note_error(&e);
        metrics::counter!("strata_wal_errors_total").increment(1);
        tracing::error!(error = %e, "cannot write the WAL");
        StorageError::Unavailable(format!("cannot write the write-ahead log: {e}"))
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

/// One request's series for [`crate::Storage::add_batch`]: calls the visitor with each
/// series' labels, timestamps and values, in order. It is called twice with the WAL on (once to
/// log, once to store), so it must yield the same series each time.
pub type BatchSeries<'a> = dyn Fn(&mut SeriesSink<'_>) -> Result<()> + 'a;

/// The visitor [`BatchSeries`] feeds: labels, timestamps, values of one series.
pub type SeriesSink<'a> = dyn FnMut(&[Label<'_>], &[i64], &[f64]) -> Result<()> + 'a;

/// Timestamps and values pair up.
pub(crate) fn check_lengths(timestamps: &[i64], values: &[f64]) -> Result<()> {
    if timestamps.len() == values.len() {
        return Ok(());
    }
    Err(StorageError::InvalidInput(format!(
        "{} timestamps but {} values",
        timestamps.len(),
        values.len()
    )))
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
    // Definitions carry from one segment to the next (see wal::format).
    let mut state = wal::ReplayState::default();
    for &seq in &segments {
        let path = wal::segment_path(dir, seq);
        let bytes = std::fs::read(&path).map_err(|e| StorageError::io("cannot read", &path, e))?;
        let torn = wal::visit_segment(
            &path,
            &bytes,
            &mut state,
            &mut |tenant, labels, timestamps, values| match add(tenant, labels, timestamps, values) {
                Ok(()) => {
                    records += 1;
                    samples += timestamps.len() as u64;
                    Ok(())
                }
                Err(e @ (StorageError::Io { .. } | StorageError::Unavailable(_))) => Err(e),
                Err(e) => {
                    failed += 1;
                    tracing::warn!(error = %e, "skipping a WAL record the storage refuses");
                    Ok(())
                }
            },
        )?;
        if torn {
            // The tail a crash interrupted: those writes were never acknowledged.
            tracing::warn!(path = %path.display(), "WAL segment ends in a torn or corrupt record; replayed what precedes it");
            metrics::counter!("strata_wal_torn_segments_total").increment(1);
        }
    }
    if state.undefined_samples > 0 {
        tracing::warn!(
            samples = state.undefined_samples,
            "WAL samples of series without a definition were skipped (a damaged log)"
        );
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

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::data::TableOptions;
    use crate::index::{IndexOptions, Label, MatchOp, TagFilter};
    use crate::{Storage, StorageError, StorageOptions, Tenant, TimeRange};

    fn open(dir: &Path, wal: bool) -> Storage {
        Storage::open(StorageOptions {
            data_path: dir.to_path_buf(),
            table: TableOptions {
                wal,
                // Nothing reaches parts during the test except through the WAL replay.
                inmemory_flush_interval: Duration::from_secs(3600),
                wal_checkpoint_interval: Duration::from_secs(3600),
                min_free_disk_bytes: 0,
                ..TableOptions::default()
            },
            index: IndexOptions::default(),
        })
        .unwrap()
    }

    /// The directory as a `kill -9` would leave it: what is in the files right now.
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap().flatten() {
            let dst = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &dst);
            } else if e.file_name() != "flock.lock" {
                let _ = std::fs::copy(e.path(), &dst);
            }
        }
    }

    fn count(s: &Storage) -> usize {
        let mut n = 0;
        let filters = [TagFilter::new("__name__", MatchOp::Equal, "m")];
        let tr = TimeRange {
            min: 0,
            max: i64::MAX / 2,
        };
        s.search(Tenant::default(), &filters, tr, 1_000_000, &mut |_, ts, _| {
            n += ts.len();
            Ok(())
        })
        .unwrap();
        n
    }

    #[test]
    fn add_batch_acknowledges_logged_samples_and_refuses_bad_lengths() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let s = open(&data, true);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let base = now.as_millis() as i64 - 60_000;
        for round in 0..5i64 {
            let added = s
                .add_batch(Tenant::default(), &|visit| {
                    for i in 0..30 {
                        let v = format!("s{i}");
                        let labels = [
                            Label {
                                name: "__name__",
                                value: "m",
                            },
                            Label {
                                name: "series",
                                value: &v,
                            },
                        ];
                        visit(&labels, &[base + round * 10, base + round * 10 + 1], &[1.0, 2.0])?;
                    }
                    Ok(())
                })
                .unwrap();
            assert_eq!(added, 60);
        }
        let bad = s.add_batch(Tenant::default(), &|visit| {
            visit(
                &[Label {
                    name: "__name__",
                    value: "m",
                }],
                &[base + 100],
                &[],
            )
        });
        assert!(matches!(bad, Err(StorageError::InvalidInput(_))), "{bad:?}");
        let crashed = dir.path().join("crashed");
        copy_dir(&data, &crashed);
        drop(s);
        let s = open(&crashed, true);
        // Every acknowledged sample, once; nothing of the refused batch.
        assert_eq!(count(&s), 300);
    }

    /// An upgrade with a non-empty WAL: segments the v1 encoder wrote are replayed by this
    /// build (then the log goes on in the v2 format, which replays too).
    #[test]
    fn version_1_segments_left_by_an_older_build_are_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let wal_dir = data.join("wal");
        std::fs::create_dir_all(&wal_dir).unwrap();
        let base = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            - 60_000;
        let mut old = Vec::new();
        for i in 0..20 {
            let v = format!("s{i}");
            let labels = [
                Label {
                    name: "__name__",
                    value: "m",
                },
                Label {
                    name: "series",
                    value: &v,
                },
            ];
            crate::wal::v1::encode(
                &mut old,
                Tenant::default(),
                &labels,
                &[base, base + 1, base + 2],
                &[1.0, 2.0, 3.0],
            );
        }
        std::fs::write(crate::wal::segment_path(&wal_dir, 1), &old).unwrap();
        let s = open(&data, true);
        assert_eq!(count(&s), 60);
        // New writes, per series and batched, in the new format; replayed after a crash.
        for i in 0..5 {
            let v = format!("s{i}");
            let labels = [
                Label {
                    name: "__name__",
                    value: "m",
                },
                Label {
                    name: "series",
                    value: &v,
                },
            ];
            s.add_series(Tenant::default(), &labels, &[base + 10], &[4.0]).unwrap();
        }
        s.sync_wal().unwrap();
        let crashed = dir.path().join("crashed");
        copy_dir(&data, &crashed);
        drop(s);
        let segments = crate::wal::list_segments(&crashed.join("wal")).unwrap();
        assert_eq!(segments, vec![2], "the v1 segment is gone after its replay");
        let s = open(&crashed, true);
        assert_eq!(count(&s), 65);
    }
}
