//! The `Storage` facade: one data directory with its lock, the index and the data table,
//! snapshots, and the operations the HTTP API and the query engine need.
//!
//! Layout (DESIGN.md §3):
//! ```text
//! <data>/flock.lock        one process per data dir
//! <data>/data/             the samples (data::Table)
//! <data>/indexdb/          the index (index::IndexDb)
//! <data>/snapshots/<name>/ hard-linked copies: data/ and indexdb/
//! ```
//! Writes go index first (a series gets its TSID and index entries), then data, so that every
//! sample on disk belongs to a series the index can find.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use strata_fsutil::DirLock;

use crate::data::{FlushHook, RawRow, Table, TableOptions, TableStats};
use crate::diskguard::DiskGuard;
use crate::durability::{self, Durability, Maintenance};
pub use crate::durability::{BatchSeries, SeriesSink};
use crate::index::{IndexDb, IndexOptions, Label, MetricName, TagFilter, TsdbStatus};
use crate::{Result, StorageError, Tenant, TimeRange};

/// Called once per series found by [`Storage::search`]: its name, timestamps and values.
pub type NamedSeriesVisitor<'a> = dyn FnMut(&MetricName, &[i64], &[f64]) -> Result<()> + 'a;

/// Everything `Storage::open` needs.
#[derive(Clone, Debug)]
pub struct StorageOptions {
    /// The data directory.
    pub data_path: PathBuf,
    /// The data side.
    pub table: TableOptions,
    /// The index side.
    pub index: IndexOptions,
}

/// One data directory, open.
pub struct Storage {
    // Dropped first: the maintenance thread uses the index and the table.
    maintenance: Maintenance,
    durability: Arc<Durability>,
    path: PathBuf,
    index: Arc<IndexDb>,
    table: Arc<Table>,
    snapshot_counter: AtomicU32,
    // Dropped last: the lock outlives every file handle.
    _lock: DirLock,
}

/// Rows resolved per call to the table, to bound the temporary buffer.
const ROWS_PER_CHUNK: usize = 8_000;

impl Storage {
    /// Locks the directory (a second process fails at once with a clear message), opens the
    /// index and the table, replays the write-ahead log if one was left, and starts the
    /// maintenance thread (disk-space checks, WAL checkpoints).
    pub fn open(options: StorageOptions) -> Result<Storage> {
        let path = options.data_path.clone();
        let lock = DirLock::acquire(&path).map_err(|err| StorageError::Locked(err.to_string()))?;
        let index = Arc::new(IndexDb::open(&path.join("indexdb"), options.index)?);
        let guard = Arc::new(DiskGuard::new(&path, options.table.min_free_disk_bytes));
        guard.check();
        let mut table_opts = options.table;
        let use_wal = table_opts.wal;
        let wal_sync_interval = table_opts.wal_sync_interval;
        let checkpoint_interval = table_opts.wal_checkpoint_interval;
        table_opts.disk_guard = Some(guard.clone());
        let weak = Arc::downgrade(&index);
        table_opts.before_disk_flush = Some(FlushHook(Arc::new(move || match weak.upgrade() {
            Some(index) => index.flush(),
            None => Ok(()),
        })));
        let table = Arc::new(Table::open(&path.join("data"), table_opts, index.deleted_metric_ids())?);
        let snapshots = path.join("snapshots");
        strata_fsutil::create_dir_all_durable(&snapshots)
            .map_err(|e| StorageError::io("cannot create", &snapshots, e))?;
        // Segments left by a previous run are replayed even if the WAL is now off.
        let wal_dir = path.join("wal");
        let (next_seq, _) = durability::replay(&wal_dir, &index, &table, &mut |tenant, labels, ts, vals| {
            add_series_to(&index, &table, tenant, labels, ts, vals)
        })?;
        let wal = if use_wal {
            Some(crate::wal::Wal::create_with_sync(
                &wal_dir,
                next_seq,
                wal_sync_interval,
            )?)
        } else {
            None
        };
        let durability = Arc::new(Durability {
            guard,
            wal,
            gate: parking_lot::RwLock::new(()),
            checkpoint_interval,
        });
        let maintenance = Maintenance::start(durability.clone(), index.clone(), table.clone())?;
        Ok(Storage {
            maintenance,
            durability,
            path,
            index,
            table,
            snapshot_counter: AtomicU32::new(0),
            _lock: lock,
        })
    }

    /// Whether writes are refused because the disk is (nearly) full.
    pub fn is_read_only(&self) -> bool {
        self.durability.guard.is_read_only()
    }

    /// The read-only switch (for stats and tests).
    pub fn disk_guard(&self) -> &DiskGuard {
        &self.durability.guard
    }

    /// Whether samples are logged to the write-ahead log.
    pub fn wal_enabled(&self) -> bool {
        self.durability.wal.is_some()
    }

    /// Returns once every sample added so far is durable: with the WAL, one (shared) fsync of
    /// the log; without it, at once (samples then reach disk with the next flush). Call it
    /// before acknowledging a write. Fails with `Unavailable` if the log cannot be written.
    pub fn sync_wal(&self) -> Result<()> {
        self.durability.sync_wal()
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds the samples of one series. `timestamps` and `values` have the same length. The
    /// series is resolved once per day its samples touch, so per-day index entries exist for
    /// every day with data.
    ///
    /// Refused with `Unavailable` in read-only mode (disk nearly full). With the WAL the samples
    /// are logged first; call [`Storage::sync_wal`] before acknowledging them.
    pub fn add_series(&self, tenant: Tenant, labels: &[Label<'_>], timestamps: &[i64], values: &[f64]) -> Result<()> {
        if timestamps.len() != values.len() {
            return Err(StorageError::InvalidInput(format!(
                "{} timestamps but {} values",
                timestamps.len(),
                values.len()
            )));
        }
        self.durability.guard.admit()?;
        let _shared = self.durability.gate.read();
        if self.durability.wal.is_some() {
            return self
                .log_and_add(tenant, &|visit| visit(labels, timestamps, values), false)
                .map(drop);
        }
        add_series_to(&self.index, &self.table, tenant, labels, timestamps, values)
    }

    /// Adds one request's series and returns once they are durable (with the WAL; without it,
    /// once they are in the table): the acknowledgement point, like [`Storage::add_series`] for
    /// each series followed by [`Storage::sync_wal`], but cheaper with the WAL: the whole request
    /// is logged first and its fsync runs while the samples go into the table. Returns the
    /// number of samples. Refused with `Unavailable` in read-only mode.
    pub fn add_batch(&self, tenant: Tenant, series: &BatchSeries<'_>) -> Result<u64> {
        self.durability.guard.admit()?;
        let shared = self.durability.gate.read();
        if self.durability.wal.is_none() {
            // Resolve the whole request, then hand the table its rows in large chunks: a
            // remote-write request has mostly one sample per series, and each `add_rows` call
            // costs a partition lookup and a shard lock.
            let mut rows = Vec::new();
            let mut samples = 0u64;
            series(&mut |labels, timestamps, values| {
                durability::check_lengths(timestamps, values)?;
                resolve_rows(&self.index, tenant, labels, timestamps, values, &mut rows)?;
                samples += timestamps.len() as u64;
                if rows.len() >= ROWS_PER_CHUNK {
                    self.table.add_rows(&rows)?;
                    rows.clear();
                }
                Ok(())
            })?;
            if !rows.is_empty() {
                self.table.add_rows(&rows)?;
            }
            return Ok(samples);
        }
        let (samples, logged) = self.log_and_add(tenant, series, true)?;
        // Waiting does not need the gate: a checkpoint may rotate meanwhile.
        drop(shared);
        if let Some(pos) = logged {
            self.durability.wait_wal(pos)?;
        }
        Ok(samples)
    }

    /// The write path with the WAL (gate held shared by the caller): resolves every series of
    /// the request in the index first (one pass over the labels), logs the request keyed by the
    /// series' metric ids (labels only for series new to the WAL segment), then adds the rows
    /// to the table while the log writer writes. A series the index refuses fails the request
    /// before anything is logged or stored. Returns the samples and the log position to wait
    /// for. `start_write` starts the log write at once (a whole request), else the record waits
    /// for the next write anyone asks for (`add_series`, followed by `sync_wal`).
    fn log_and_add(&self, tenant: Tenant, series: &BatchSeries<'_>, start_write: bool) -> Result<(u64, Option<u64>)> {
        let mut rows = Vec::new();
        let mut batch = crate::wal::Batch::default();
        series(&mut |labels, timestamps, values| {
            durability::check_lengths(timestamps, values)?;
            let start = rows.len();
            resolve_rows(&self.index, tenant, labels, timestamps, values, &mut rows)?;
            if let Some(first) = rows.get(start) {
                batch.push(first.tsid.metric_id, timestamps, values);
            }
            Ok(())
        })?;
        let logged = if batch.is_empty() {
            None
        } else {
            self.durability.log_batch(tenant, &batch, series, start_write)?
        };
        for chunk in rows.chunks(ROWS_PER_CHUNK) {
            self.table.add_rows(chunk)?;
        }
        Ok((batch.samples() as u64, logged))
    }

    /// Visits every series matching `filters` that has samples in `tr`, with its name and
    /// samples. Fails with `TooManySeries` over `max_series`.
    pub fn search(
        &self,
        tenant: Tenant,
        filters: &[TagFilter],
        tr: TimeRange,
        max_series: usize,
        visit: &mut NamedSeriesVisitor<'_>,
    ) -> Result<()> {
        let tsids = self.index.search_tsids(tenant, filters, tr, max_series)?;
        self.table.search(&tsids, tr, &mut |tsid, timestamps, values| {
            // A series whose name is gone was deleted between the two reads: skip it.
            match self.index.metric_name(tsid)? {
                Some(name) => visit(&name, timestamps, values),
                None => Ok(()),
            }
        })
    }

    /// The TSIDs of the series matching `filters` in `tr`, sorted ascending, so that a reader can
    /// split them into shards and read each with [`Storage::search_tsids`] on its own thread.
    /// Fails with `TooManySeries` over `max_series`.
    pub fn search_series_tsids(
        &self,
        tenant: Tenant,
        filters: &[TagFilter],
        tr: TimeRange,
        max_series: usize,
    ) -> Result<Vec<crate::Tsid>> {
        self.index.search_tsids(tenant, filters, tr, max_series)
    }

    /// [`Storage::search`] over TSIDs already found (a sorted slice of what
    /// [`Storage::search_series_tsids`] returned).
    pub fn search_tsids(&self, tsids: &[crate::Tsid], tr: TimeRange, visit: &mut NamedSeriesVisitor<'_>) -> Result<()> {
        self.table.search(
            tsids,
            tr,
            &mut |tsid, timestamps, values| match self.index.metric_name(tsid)? {
                Some(name) => visit(&name, timestamps, values),
                None => Ok(()),
            },
        )
    }

    /// Like [`Storage::search_tsids`] without looking up names: the visitor gets each series'
    /// TSID (for callers that cache names; see [`Storage::metric_name`]).
    pub fn search_tsids_unnamed(
        &self,
        tsids: &[crate::Tsid],
        tr: TimeRange,
        visit: &mut crate::data::SeriesVisitor<'_>,
    ) -> Result<()> {
        self.table.search(tsids, tr, visit)
    }

    /// The name of series `tsid`, or `None` once it is deleted.
    pub fn metric_name(&self, tsid: &crate::Tsid) -> Result<Option<MetricName>> {
        self.index.metric_name(tsid)
    }

    /// The names of the series matching `filters` in `tr`.
    pub fn series(
        &self,
        tenant: Tenant,
        filters: &[TagFilter],
        tr: TimeRange,
        max_series: usize,
    ) -> Result<Vec<MetricName>> {
        self.index.search_metric_names(tenant, filters, tr, max_series)
    }

    /// Label names of the series matching `filters` in `tr`.
    pub fn label_names(
        &self,
        tenant: Tenant,
        filters: &[TagFilter],
        tr: TimeRange,
        limit: usize,
    ) -> Result<Vec<String>> {
        self.index.label_names(tenant, filters, tr, limit)
    }

    /// Values of label `name` over the series matching `filters` in `tr`.
    pub fn label_values(
        &self,
        tenant: Tenant,
        name: &str,
        filters: &[TagFilter],
        tr: TimeRange,
        limit: usize,
    ) -> Result<Vec<String>> {
        self.index.label_values(tenant, name, filters, tr, limit)
    }

    /// How many series have samples in `tr`.
    pub fn series_count(&self, tenant: Tenant, tr: TimeRange) -> Result<u64> {
        self.index.series_count(tenant, tr)
    }

    /// Cardinality statistics for one day.
    pub fn tsdb_status(
        &self,
        tenant: Tenant,
        date_ms: i64,
        focus_label: Option<&str>,
        top_n: usize,
    ) -> Result<TsdbStatus> {
        self.index.tsdb_status(tenant, date_ms, focus_label, top_n)
    }

    /// Deletes the series matching `filters`: invisible at once, removed from disk by merges.
    pub fn delete_series(&self, tenant: Tenant, filters: &[TagFilter]) -> Result<u64> {
        self.index.delete_series(tenant, filters)
    }

    /// Everything buffered goes to disk; durable when this returns. With the WAL this is a
    /// checkpoint: the log's closed segments, now all in parts, are deleted too.
    /// A full disk (`ENOSPC`) is `Unavailable` and switches to read-only mode.
    pub fn force_flush(&self) -> Result<()> {
        if self.durability.wal.is_some() {
            return self
                .durability
                .checkpoint(&self.index, &self.table)
                .map_err(|e| self.disk_error(e));
        }
        self.index
            .flush()
            .and_then(|()| self.table.flush())
            .map_err(|e| self.disk_error(e))
    }

    /// `ENOSPC` becomes read-only mode and an `Unavailable` naming it; other errors pass.
    fn disk_error(&self, e: StorageError) -> StorageError {
        if self.durability.guard.note_error(&e) {
            StorageError::Unavailable(format!("the disk is full: {e}"))
        } else {
            e
        }
    }

    /// Merges the parts of the partitions whose name starts with `partition_prefix`.
    /// Refused (`Unavailable`) in read-only mode: a merge needs free space for its output.
    pub fn force_merge(&self, partition_prefix: &str) -> Result<()> {
        if self.is_read_only() {
            return Err(StorageError::Unavailable(
                "read-only mode (disk nearly full): merges wait until space is freed".into(),
            ));
        }
        self.table.force_merge(partition_prefix).map_err(|e| self.disk_error(e))
    }

    /// Data-side statistics.
    pub fn stats(&self) -> TableStats {
        self.table.stats()
    }

    /// Creates a snapshot: flushes, then hard-links every part under `snapshots/<name>/`.
    /// Instant (no data is copied) and consistent at the flush boundary. Returns the name.
    pub fn create_snapshot(&self) -> Result<String> {
        self.force_flush()?;
        let counter = self.snapshot_counter.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-{:08X}", utc_compact_now(), counter);
        let dir = self.snapshots_dir().join(&name);
        let tmp = self.snapshots_dir().join(format!("{name}.tmp"));
        let result = (|| {
            self.index.snapshot(&tmp.join("indexdb"))?;
            self.table.snapshot(&tmp.join("data"))?;
            std::fs::rename(&tmp, &dir).map_err(|e| StorageError::io("cannot rename", &tmp, e))?;
            strata_fsutil::fsync_dir(&self.snapshots_dir())
                .map_err(|e| StorageError::io("cannot sync", self.snapshots_dir(), e))
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result.map(|()| name)
    }

    /// Names of the existing snapshots, oldest first.
    pub fn list_snapshots(&self) -> Result<Vec<String>> {
        let dir = self.snapshots_dir();
        let entries = std::fs::read_dir(&dir).map_err(|e| StorageError::io("cannot list", &dir, e))?;
        let mut names: Vec<String> = entries
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.path().is_dir())
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| is_snapshot_name(name))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Deletes one snapshot. Unknown or malformed names are `InvalidInput`.
    pub fn delete_snapshot(&self, name: &str) -> Result<()> {
        if !is_snapshot_name(name) {
            return Err(StorageError::InvalidInput(format!("{name:?} is not a snapshot name")));
        }
        let dir = self.snapshots_dir().join(name);
        if !dir.is_dir() {
            return Err(StorageError::InvalidInput(format!("no snapshot named {name:?}")));
        }
        strata_fsutil::remove_dir_all_durable(&dir).map_err(|e| StorageError::io("cannot remove", &dir, e))
    }

    /// Flushes everything and closes. Dropping without `close` loses at most the last
    /// unflushed seconds, never a listed part.
    pub fn close(self) -> Result<()> {
        let Storage {
            mut maintenance,
            durability,
            index,
            table,
            _lock,
            ..
        } = self;
        maintenance.stop();
        let table_result = match Arc::try_unwrap(table) {
            Ok(table) => table.close(),
            Err(table) => table.flush(),
        };
        let index_result = match Arc::try_unwrap(index) {
            Ok(index) => index.close(),
            Err(index) => index.flush(),
        };
        let result = table_result.and(index_result);
        // Everything the log holds is in flushed parts now.
        if result.is_ok()
            && let Some(wal) = &durability.wal
        {
            wal.remove_before(u64::MAX)?;
        }
        result
    }

    fn snapshots_dir(&self) -> PathBuf {
        self.path.join("snapshots")
    }
}

const MS_PER_DAY: i64 = 86_400_000;

/// The write path behind [`Storage::add_series`] without the WAL and the read-only check (the
/// WAL replay uses it too). The series is resolved once per day its samples touch.
fn add_series_to(
    index: &IndexDb,
    table: &Table,
    tenant: Tenant,
    labels: &[Label<'_>],
    timestamps: &[i64],
    values: &[f64],
) -> Result<()> {
    let mut rows = Vec::with_capacity(timestamps.len().min(ROWS_PER_CHUNK));
    for (ts, vals) in timestamps.chunks(ROWS_PER_CHUNK).zip(values.chunks(ROWS_PER_CHUNK)) {
        resolve_rows(index, tenant, labels, ts, vals, &mut rows)?;
        table.add_rows(&rows)?;
        rows.clear();
    }
    Ok(())
}

/// Appends one series' samples to `rows` with their TSIDs, resolved once per day the samples
/// touch (so per-day index entries exist for every day with data).
fn resolve_rows(
    index: &IndexDb,
    tenant: Tenant,
    labels: &[Label<'_>],
    timestamps: &[i64],
    values: &[f64],
    rows: &mut Vec<RawRow>,
) -> Result<()> {
    let mut current: Option<(i64, crate::Tsid)> = None;
    for (&timestamp, &value) in timestamps.iter().zip(values) {
        let day = timestamp.div_euclid(MS_PER_DAY);
        let tsid = match current {
            Some((d, tsid)) if d == day => tsid,
            _ => {
                let tsid = index.get_or_create_tsid(tenant, labels, timestamp)?;
                current = Some((day, tsid));
                tsid
            }
        };
        rows.push(RawRow { tsid, timestamp, value });
    }
    Ok(())
}

/// Snapshot names are `YYYYMMDDhhmmss-XXXXXXXX`; anything else in the directory is not ours
/// (and a name from a request must not escape the directory).
fn is_snapshot_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() == 23
        && bytes[..14].iter().all(u8::is_ascii_digit)
        && bytes[14] == b'-'
        && bytes[15..].iter().all(|b| b.is_ascii_hexdigit())
}

/// The current UTC time as `YYYYMMDDhhmmss`.
fn utc_compact_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar, by the
/// well-known era arithmetic (400-year cycles of 146097 days).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Shared so the HTTP layer can hand the storage to many handlers.
pub type SharedStorage = Arc<Storage>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_819), (2027, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn snapshot_names() {
        assert!(is_snapshot_name("20261122023000-0000000A"));
        assert!(!is_snapshot_name("../../etc"));
        assert!(!is_snapshot_name("20261122023000-0000000A.tmp"));
    }
}
