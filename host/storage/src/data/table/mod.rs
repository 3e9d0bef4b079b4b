//! The table: partitions, ingestion shards, background workers, search, snapshots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex, RwLock};

mod maintenance;
mod merges;
mod startup;

use super::merge::{self, MergeRules, MergeStats};
use super::part::{Part, PartWriter};
use super::partition::{self, PartEntry, PartKind, Partition};
use super::{RawRow, SeriesVisitor, TableOptions, TableStats};
use crate::deleted::DeletedMetricIds;
use crate::encoding::decimal::is_stale_nan;
use crate::error::{Result, StorageError};
use crate::tsid::{TimeRange, Tsid};

const FUTURE_MS: i64 = 2 * 86_400_000;
/// 1970-01-02: earlier timestamps are treated as garbage.
const MIN_VALID_TS: i64 = 86_400_000;
const MAX_SHARD_ROWS: usize = (8 << 20) / std::mem::size_of::<RawRow>();
/// In-memory parts per partition above which they are flushed before their deadline.
const MAX_INMEMORY_PARTS: usize = 15;
const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const RETENTION_CHECK: Duration = Duration::from_secs(60);
const MAX_PART_BYTES: u64 = 1_000_000_000_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Monthly partitions of samples with their background workers. `Send + Sync`; share it
/// through an `Arc`.
pub struct Table {
    inner: Arc<Inner>,
    workers: Vec<JoinHandle<()>>,
}

#[derive(Default)]
struct Counters {
    rows_added: AtomicU64,
    rows_dropped: AtomicU64,
    merges_running: AtomicU64,
    merges_done: AtomicU64,
    dedup_removed: AtomicU64,
    retention_removed: AtomicU64,
    quarantined: AtomicU64,
}

struct Inner {
    root: PathBuf,
    opts: TableOptions,
    deleted: Arc<dyn DeletedMetricIds>,
    shards: Vec<Mutex<Vec<RawRow>>>,
    next_shard: AtomicUsize,
    partitions: RwLock<BTreeMap<String, Arc<Partition>>>,
    part_seq: AtomicU64,
    stop: AtomicBool,
    /// Bumped on every new file part and at shutdown; sleeping workers wake on it.
    wake: Mutex<u64>,
    wake_cv: Condvar,
    /// Serialises raw-row and in-memory flushes, so `flush()` waits for one in progress.
    flush_lock: Mutex<()>,
    counters: Counters,
    /// `strata_rows_added_total`, resolved once: `add_rows` runs once per series, and a
    /// registry lookup there cost ~4% of ingestion CPU. (The binaries install the metrics
    /// recorder before opening the storage, so the handle is a live one.)
    rows_added_metric: metrics::Counter,
}

impl Table {
    /// Opens (or creates) the table under `dir` (`<data>/data`): creates `small/` and `big/`,
    /// opens every listed part, removes unlisted part directories, and starts the workers.
    pub fn open(dir: &Path, opts: TableOptions, deleted: Arc<dyn DeletedMetricIds>) -> Result<Table> {
        for sub in ["small", "big"] {
            let d = dir.join(sub);
            strata_fsutil::create_dir_all_durable(&d).map_err(|e| StorageError::io("cannot create", &d, e))?;
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let start_seq = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let inner = Arc::new(Inner {
            root: dir.to_path_buf(),
            opts,
            deleted,
            shards: (0..cpus).map(|_| Mutex::new(Vec::new())).collect(),
            next_shard: AtomicUsize::new(0),
            partitions: RwLock::new(BTreeMap::new()),
            part_seq: AtomicU64::new(start_seq),
            stop: AtomicBool::new(false),
            wake: Mutex::new(0),
            wake_cv: Condvar::new(),
            flush_lock: Mutex::new(()),
            counters: Counters::default(),
            rows_added_metric: metrics::counter!("strata_rows_added_total"),
        });
        inner.load_partitions()?;
        inner.enforce_retention();
        inner.update_gauges();
        let mut table = Table {
            inner: inner.clone(),
            workers: Vec::new(),
        };
        let w = inner.clone();
        table
            .workers
            .push(spawn("strata-data-flush", move || w.flush_worker())?);
        for i in 0..cpus {
            let w = inner.clone();
            // On failure `table` drops here, which stops the workers already started.
            table
                .workers
                .push(spawn(&format!("strata-data-merge-{i}"), move || w.merge_worker())?);
        }
        Ok(table)
    }

    /// Buffers rows. Rows outside the retention window, more than 2 days in the future, or with
    /// a NaN value other than the stale marker are dropped and counted, not an error.
    pub fn add_rows(&self, rows: &[RawRow]) -> Result<()> {
        if self.inner.stop.load(Ordering::Relaxed) {
            return Err(StorageError::Unavailable("the table is closing".into()));
        }
        self.inner.add_rows(rows)
    }

    /// Visits every series of `tsids` (sorted ascending) that has samples in `tr`, once, with
    /// its samples merged across parts, sorted, exact duplicates removed, deduplicated if
    /// configured, and samples older than the retention deadline hidden.
    pub fn search(&self, tsids: &[Tsid], tr: TimeRange, visit: &mut SeriesVisitor<'_>) -> Result<()> {
        self.inner.search(tsids, tr, visit)
    }

    /// Writes buffered rows and in-memory parts to disk; durable when it returns.
    pub fn flush(&self) -> Result<()> {
        self.inner.flush_all()
    }

    /// Merges all on-disk parts of the partitions whose name starts with `partition_prefix`
    /// ("" = all) into one part each, applying dedup, retention and deletions.
    pub fn force_merge(&self, partition_prefix: &str) -> Result<()> {
        self.inner.flush_all()?;
        let parts: Vec<_> = self
            .inner
            .partitions
            .read()
            .values()
            .filter(|p| p.name.starts_with(partition_prefix))
            .cloned()
            .collect();
        for p in parts {
            self.inner.force_merge_partition(&p)?;
        }
        Ok(())
    }

    /// Flushes, then hard-links every on-disk part into `dst` (`dst/{small,big}/YYYY_MM/<part>/`
    /// plus each partition's parts.json listing exactly the linked parts).
    pub fn snapshot(&self, dst: &Path) -> Result<()> {
        self.inner.flush_all()?;
        self.inner.snapshot(dst)
    }

    /// Current counts.
    pub fn stats(&self) -> TableStats {
        self.inner.stats()
    }

    /// Stops the workers and flushes everything.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    pub(super) fn shutdown(&mut self) -> Result<()> {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.inner.notify();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        self.inner.flush_all()
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        if !self.workers.is_empty()
            && let Err(e) = self.shutdown()
        {
            tracing::error!(error = %e, "cannot flush the data table while dropping it");
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map_err(|e| StorageError::Unavailable(format!("cannot start thread {name}: {e}")))
}

fn free_disk_bytes(path: &Path) -> u64 {
    match rustix::fs::statvfs(path) {
        Ok(s) => s.f_bavail.saturating_mul(s.f_frsize),
        Err(_) => u64::MAX,
    }
}

impl Inner {
    pub(super) fn retention_deadline(&self) -> i64 {
        now_ms().saturating_sub(self.opts.retention.as_millis() as i64)
    }

    pub(super) fn notify(&self) {
        *self.wake.lock() += 1;
        self.wake_cv.notify_all();
    }

    /// Sleeps up to `d`; returns early (true) when notified or stopping.
    pub(super) fn sleep(&self, d: Duration) -> bool {
        let mut g = self.wake.lock();
        let gen0 = *g;
        if self.stop.load(Ordering::SeqCst) {
            return true;
        }
        let _ = self.wake_cv.wait_for(&mut g, d);
        *g != gen0
    }

    pub(super) fn next_part_name(&self) -> String {
        format!("{:016X}", self.part_seq.fetch_add(1, Ordering::Relaxed))
    }

    // ---- ingestion ----

    pub(super) fn add_rows(&self, rows: &[RawRow]) -> Result<()> {
        let now = now_ms();
        let min_ts = self.retention_deadline().max(MIN_VALID_TS);
        let max_ts = now.saturating_add(FUTURE_MS);
        let shard = self.next_shard.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        let (mut added, mut old, mut future, mut nan) = (0u64, 0u64, 0u64, 0u64);
        let full = {
            let mut buf = self.shards[shard].lock();
            buf.reserve(rows.len());
            for r in rows {
                if r.timestamp < min_ts {
                    old += 1;
                } else if r.timestamp > max_ts {
                    future += 1;
                } else if r.value.is_nan() && !is_stale_nan(r.value) {
                    nan += 1;
                } else {
                    buf.push(*r);
                    added += 1;
                }
            }
            (buf.len() >= MAX_SHARD_ROWS).then(|| std::mem::take(&mut *buf))
        };
        self.counters.rows_added.fetch_add(added, Ordering::Relaxed);
        self.counters
            .rows_dropped
            .fetch_add(old + future + nan, Ordering::Relaxed);
        self.rows_added_metric.increment(added);
        for (reason, n) in [("retention", old), ("future", future), ("nan", nan)] {
            if n > 0 {
                metrics::counter!("strata_rows_dropped_total", "reason" => reason).increment(n);
            }
        }
        if let Some(rows) = full {
            // A full shard becomes a part right here: the writer pays, memory stays bounded.
            self.rows_to_inmemory(rows)?;
        }
        Ok(())
    }

    pub(super) fn partition_for(&self, name: &str) -> Result<Arc<Partition>> {
        if let Some(p) = self.partitions.read().get(name) {
            return Ok(p.clone());
        }
        let mut map = self.partitions.write();
        if let Some(p) = map.get(name) {
            return Ok(p.clone());
        }
        let p = Partition::new(&self.root, name)
            .ok_or_else(|| StorageError::InvalidInput(format!("bad partition name {name}")))?;
        p.create_dirs()?;
        let p = Arc::new(p);
        map.insert(name.to_string(), p.clone());
        Ok(p)
    }

    pub(super) fn rules(&self, stop: bool) -> MergeRules<'_> {
        MergeRules {
            dedup_interval: self.opts.dedup_interval_ms,
            min_timestamp: self.retention_deadline(),
            deleted: &*self.deleted,
            stop: stop.then_some(&self.stop),
        }
    }

    pub(super) fn rows_to_inmemory(&self, mut rows: Vec<RawRow>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        // Rows nearly always fall in one month; sort by time only when they do not, so the
        // common case pays for one sort (by series) in `write_rows`.
        let (lo, hi) = rows.iter().fold((i64::MAX, i64::MIN), |(lo, hi), r| {
            (lo.min(r.timestamp), hi.max(r.timestamp))
        });
        if partition::partition_name(lo) != partition::partition_name(hi) {
            rows.sort_unstable_by_key(|r| r.timestamp);
        }
        let mut start = 0;
        while start < rows.len() {
            let name = partition::partition_name(rows[start].timestamp);
            let (_, month_end) = partition::month_range(&name).unwrap_or((0, i64::MAX));
            let end = if rows[start..].iter().all(|r| r.timestamp <= month_end) {
                rows.len()
            } else {
                start + rows[start..].partition_point(|r| r.timestamp <= month_end)
            };
            let p = self.partition_for(&name)?;
            let mut w = PartWriter::in_memory(-5);
            let st = merge::write_rows(&mut rows[start..end], &mut w, &self.rules(false))?;
            self.account(&st);
            let label = p.small_dir.join(format!("inmemory-{}", self.next_part_name()));
            let part = Part::from_buffers(label, w.finish(self.opts.dedup_interval_ms)?)?;
            if part.header().rows_count > 0 {
                p.parts
                    .lock()
                    .inmemory
                    .push(PartEntry::new(part, PartKind::InMemory, String::new()));
            }
            start = end;
        }
        Ok(())
    }

    pub(super) fn account(&self, st: &MergeStats) {
        self.counters
            .dedup_removed
            .fetch_add(st.dedup_removed, Ordering::Relaxed);
        self.counters
            .retention_removed
            .fetch_add(st.retention_removed, Ordering::Relaxed);
        metrics::counter!("strata_dedup_samples_removed_total").increment(st.dedup_removed);
        metrics::counter!("strata_retention_samples_removed_total").increment(st.retention_removed);
        metrics::counter!("strata_deleted_samples_removed_total").increment(st.deleted_removed);
    }

    pub(super) fn flush_pending(&self) -> Result<()> {
        let mut rows = Vec::new();
        for s in &self.shards {
            let mut g = s.lock();
            if rows.is_empty() {
                rows = std::mem::take(&mut *g);
            } else {
                rows.append(&mut g);
            }
        }
        self.rows_to_inmemory(rows)
    }

    /// Moves in-memory parts to disk: all of them, or those older than the flush interval.
    pub(super) fn flush_inmemory(&self, all: bool) -> Result<()> {
        let parts: Vec<_> = self.partitions.read().values().cloned().collect();
        let mut batches = Vec::new();
        for p in parts {
            let picked: Vec<_> = {
                let lists = p.parts.lock();
                // Many in-memory parts slow every search down: write them out early then.
                let all = all || lists.inmemory.len() > MAX_INMEMORY_PARTS;
                lists
                    .inmemory
                    .iter()
                    .filter(|e| all || e.created.elapsed() >= self.opts.inmemory_flush_interval)
                    .filter(|e| !e.in_merge.swap(true, Ordering::AcqRel))
                    .cloned()
                    .collect()
            };
            if !picked.is_empty() {
                batches.push((p, picked));
            }
        }
        if batches.is_empty() {
            return Ok(());
        }
        // The index goes to disk first: a part on disk must never name series whose index
        // entries a crash could still lose.
        if let Some(hook) = &self.opts.before_disk_flush
            && let Err(e) = (hook.0)()
        {
            for (_, picked) in &batches {
                for e in picked {
                    e.in_merge.store(false, Ordering::Release);
                }
            }
            self.note_error(&e);
            return Err(e);
        }
        let mut first_err = None;
        for (p, picked) in batches {
            if let Err(e) = self.merge_into(&p, picked, PartKind::Small, false) {
                self.note_error(&e);
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Lets the disk guard see a failed write (`ENOSPC` switches to read-only mode).
    pub(super) fn note_error(&self, e: &StorageError) {
        if let Some(g) = &self.opts.disk_guard {
            g.note_error(e);
        }
    }

    /// True while the disk guard keeps the storage read-only: merges wait.
    pub(super) fn disk_read_only(&self) -> bool {
        self.opts.disk_guard.as_ref().is_some_and(|g| g.is_read_only())
    }

    pub(super) fn flush_all(&self) -> Result<()> {
        let _g = self.flush_lock.lock();
        self.flush_pending()?;
        self.flush_inmemory(true)
    }

    // ---- search ----

    pub(super) fn search(&self, tsids: &[Tsid], tr: TimeRange, visit: &mut SeriesVisitor<'_>) -> Result<()> {
        let tr = TimeRange {
            min: tr.min.max(self.retention_deadline()),
            max: tr.max,
        };
        if tr.min > tr.max || tsids.is_empty() {
            return Ok(());
        }
        let entries: Vec<Arc<PartEntry>> = {
            let map = self.partitions.read();
            let mut v = Vec::new();
            for p in map.values().filter(|p| tr.overlaps(p.min_ts, p.max_ts)) {
                let lists = p.parts.lock();
                v.extend(
                    lists
                        .all()
                        .filter(|e| tr.overlaps(e.part.header().min_timestamp, e.part.header().max_timestamp))
                        .cloned(),
                );
            }
            v
        };
        let (mut ts, mut vals) = (Vec::new(), Vec::new());
        let mut prev: Option<&Tsid> = None;
        for tsid in tsids {
            if prev == Some(tsid) {
                continue;
            }
            prev = Some(tsid);
            ts.clear();
            vals.clear();
            for e in &entries {
                e.part.search_series(tsid, tr, &mut ts, &mut vals)?;
            }
            if ts.is_empty() {
                continue;
            }
            merge::normalize_series(&mut ts, &mut vals, self.opts.dedup_interval_ms);
            visit(tsid, &ts, &vals)?;
        }
        Ok(())
    }
}
