//! The table: partitions, ingestion shards, background workers, search, snapshots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex, RwLock};

use super::merge::{self, MergeRules, MergeStats};
use super::part::{self, Part, PartWriter};
use super::partition::{self, PartEntry, PartKind, PartLists, PartNames, Partition};
use super::{CorruptPartPolicy, RawRow, SeriesVisitor, TableOptions, TableStats, TierStats};
use crate::deleted::DeletedMetricIds;
use crate::encoding::decimal::is_stale_nan;
use crate::error::{Result, StorageError};
use crate::tsid::{TimeRange, Tsid};

const FUTURE_MS: i64 = 2 * 86_400_000;
/// 1970-01-02: earlier timestamps are treated as garbage.
const MIN_VALID_TS: i64 = 86_400_000;
const MAX_SHARD_ROWS: usize = (8 << 20) / std::mem::size_of::<RawRow>();
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
        });
        inner.load_partitions()?;
        inner.enforce_retention();
        inner.update_gauges();
        let mut workers = Vec::new();
        let w = inner.clone();
        workers.push(spawn("strata-data-flush", move || w.flush_worker()));
        for i in 0..cpus {
            let w = inner.clone();
            workers.push(spawn(&format!("strata-data-merge-{i}"), move || w.merge_worker()));
        }
        Ok(Table { inner, workers })
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

    fn shutdown(&mut self) -> Result<()> {
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

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    match std::thread::Builder::new().name(name.to_string()).spawn(f) {
        Ok(h) => h,
        // Without its threads the engine cannot work at all; this only happens when the OS
        // refuses new threads, so failing loudly beats running without flushes.
        Err(e) => panic!("cannot start thread {name}: {e}"),
    }
}

fn free_disk_bytes(path: &Path) -> u64 {
    match rustix::fs::statvfs(path) {
        Ok(s) => s.f_bavail.saturating_mul(s.f_frsize),
        Err(_) => u64::MAX,
    }
}

impl Inner {
    fn retention_deadline(&self) -> i64 {
        now_ms().saturating_sub(self.opts.retention.as_millis() as i64)
    }

    fn notify(&self) {
        *self.wake.lock() += 1;
        self.wake_cv.notify_all();
    }

    /// Sleeps up to `d`; returns early (true) when notified or stopping.
    fn sleep(&self, d: Duration) -> bool {
        let mut g = self.wake.lock();
        let gen0 = *g;
        if self.stop.load(Ordering::SeqCst) {
            return true;
        }
        let _ = self.wake_cv.wait_for(&mut g, d);
        *g != gen0
    }

    fn next_part_name(&self) -> String {
        format!("{:016X}", self.part_seq.fetch_add(1, Ordering::Relaxed))
    }

    // ---- start-up ----

    fn load_partitions(&self) -> Result<()> {
        let mut names = std::collections::BTreeSet::new();
        for sub in ["small", "big"] {
            let d = self.root.join(sub);
            let rd = std::fs::read_dir(&d).map_err(|e| StorageError::io("cannot list", &d, e))?;
            for ent in rd.flatten() {
                let name = ent.file_name().to_string_lossy().into_owned();
                if partition::month_range(&name).is_some() && ent.path().is_dir() {
                    names.insert(name);
                }
            }
        }
        let mut max_seq = 0u64;
        for name in names {
            let Some(p) = Partition::new(&self.root, &name) else {
                continue;
            };
            self.load_partition(&p, &mut max_seq)?;
            self.partitions.write().insert(name, Arc::new(p));
        }
        self.part_seq.fetch_max(max_seq + 1, Ordering::Relaxed);
        Ok(())
    }

    fn load_partition(&self, p: &Partition, max_seq: &mut u64) -> Result<()> {
        let pj = p.small_dir.join(partition::PARTS_JSON);
        let listed = partition::read_parts_json(&pj)?;
        let mut rewrite = false;
        let names = match listed {
            Some(n) => n,
            None => {
                // No manifest: take the complete part dirs (metadata.json is written last).
                rewrite = true;
                PartNames {
                    small: complete_parts(&p.small_dir),
                    big: complete_parts(&p.big_dir),
                }
            }
        };
        p.create_dirs()?;
        let mut lists = PartLists::default();
        for (kind, list) in [(PartKind::Small, &names.small), (PartKind::Big, &names.big)] {
            for name in list {
                let dir = p.dir_of(kind).join(name);
                if let Ok(seq) = u64::from_str_radix(name, 16) {
                    *max_seq = (*max_seq).max(seq);
                }
                let opened = if dir.is_dir() {
                    Part::open(&dir)
                } else {
                    Err(StorageError::corrupt(&dir, "listed in parts.json but missing"))
                };
                match opened {
                    Ok(part) => lists.tier(kind).push(PartEntry::new(part, kind, name.clone())),
                    Err(e) if self.opts.on_corrupt_part == CorruptPartPolicy::Quarantine => {
                        self.quarantine(&dir, kind, &p.name, name, &e);
                        rewrite = true;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        // Anything not listed is a leftover of a crash (a part written but never listed, or
        // a merge output that never got swapped in).
        for (kind, list) in [(PartKind::Small, &names.small), (PartKind::Big, &names.big)] {
            let d = p.dir_of(kind);
            let rd = std::fs::read_dir(d).map_err(|e| StorageError::io("cannot list", d, e))?;
            for ent in rd.flatten() {
                let n = ent.file_name().to_string_lossy().into_owned();
                if n == partition::PARTS_JSON || list.contains(&n) {
                    continue;
                }
                let path = ent.path();
                tracing::info!(path = %path.display(), "removing unlisted part left by an unclean shutdown");
                let r = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                r.map_err(|e| StorageError::io("cannot remove", &path, e))?;
            }
            strata_fsutil::fsync_dir(d).map_err(|e| StorageError::io("cannot fsync", d, e))?;
        }
        if rewrite {
            p.write_manifest(&lists)?;
        }
        *p.parts.lock() = lists;
        Ok(())
    }

    fn quarantine(&self, dir: &Path, kind: PartKind, partition: &str, name: &str, err: &StorageError) {
        let qdir = self.root.parent().unwrap_or(&self.root).join("quarantine");
        let dst = qdir.join(format!("{}_{partition}_{name}", kind.label()));
        let moved = strata_fsutil::create_dir_all_durable(&qdir).and_then(|()| {
            if dir.exists() {
                std::fs::rename(dir, &dst)
            } else {
                Ok(())
            }
        });
        tracing::error!(part = %dir.display(), quarantine = %dst.display(), error = %err, moved = moved.is_ok(),
            "quarantined a part that cannot be opened");
        self.counters.quarantined.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("strata_parts_quarantined_total").increment(1);
    }

    // ---- ingestion ----

    fn add_rows(&self, rows: &[RawRow]) -> Result<()> {
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
        metrics::counter!("strata_rows_added_total").increment(added);
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

    fn partition_for(&self, name: &str) -> Result<Arc<Partition>> {
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

    fn rules(&self, stop: bool) -> MergeRules<'_> {
        MergeRules {
            dedup_interval: self.opts.dedup_interval_ms,
            min_timestamp: self.retention_deadline(),
            deleted: &*self.deleted,
            stop: stop.then_some(&self.stop),
        }
    }

    fn rows_to_inmemory(&self, mut rows: Vec<RawRow>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        rows.sort_unstable_by_key(|r| r.timestamp);
        let mut start = 0;
        while start < rows.len() {
            let name = partition::partition_name(rows[start].timestamp);
            let (_, month_end) = partition::month_range(&name).unwrap_or((0, i64::MAX));
            let end = start + rows[start..].partition_point(|r| r.timestamp <= month_end);
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

    fn account(&self, st: &MergeStats) {
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

    fn flush_pending(&self) -> Result<()> {
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
    fn flush_inmemory(&self, all: bool) -> Result<()> {
        let parts: Vec<_> = self.partitions.read().values().cloned().collect();
        let mut first_err = None;
        for p in parts {
            let picked: Vec<_> = {
                let lists = p.parts.lock();
                lists
                    .inmemory
                    .iter()
                    .filter(|e| all || e.created.elapsed() >= self.opts.inmemory_flush_interval)
                    .filter(|e| !e.in_merge.swap(true, Ordering::AcqRel))
                    .cloned()
                    .collect()
            };
            if picked.is_empty() {
                continue;
            }
            if let Err(e) = self.merge_into(&p, picked, PartKind::Small, false) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn flush_all(&self) -> Result<()> {
        let _g = self.flush_lock.lock();
        self.flush_pending()?;
        self.flush_inmemory(true)
    }

    // ---- merges ----

    /// Merges `srcs` (already marked `in_merge`) into one new part of `dst` and swaps it in.
    fn merge_into(&self, p: &Arc<Partition>, srcs: Vec<Arc<PartEntry>>, dst: PartKind, abortable: bool) -> Result<()> {
        let started = Instant::now();
        self.counters.merges_running.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("strata_merges_running").increment(1.0);
        let res = self.merge_into_inner(p, &srcs, dst, abortable);
        self.counters.merges_running.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("strata_merges_running").decrement(1.0);
        match res {
            Ok(()) => {
                self.counters.merges_done.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("strata_merges_total", "type" => dst.label()).increment(1);
                metrics::histogram!("strata_merge_duration_seconds", "type" => dst.label())
                    .record(started.elapsed().as_secs_f64());
                if started.elapsed() > Duration::from_secs(30) {
                    tracing::info!(partition = %p.name, parts = srcs.len(), secs = started.elapsed().as_secs(), "long merge");
                }
                self.notify();
                Ok(())
            }
            Err(e) => {
                for s in &srcs {
                    s.in_merge.store(false, Ordering::Release);
                }
                Err(e)
            }
        }
    }

    fn merge_into_inner(
        &self,
        p: &Arc<Partition>,
        srcs: &[Arc<PartEntry>],
        dst: PartKind,
        abortable: bool,
    ) -> Result<()> {
        let name = self.next_part_name();
        let dir = p.dir_of(dst).join(&name);
        let written = (|| -> Result<Part> {
            if srcs.len() == 1 && srcs[0].part.is_in_memory() && self.opts.dedup_interval_ms == 0 {
                srcs[0].part.write_in_memory_to(&dir)?;
            } else {
                let rows: u64 = srcs.iter().map(|s| s.part.header().rows_count).sum();
                let blocks: u64 = srcs.iter().map(|s| s.part.header().blocks_count).sum();
                let mut level = part::compress_level(rows, blocks);
                if dst == PartKind::Big {
                    level = level.max(3);
                }
                let mut w = PartWriter::create(&dir, level)?;
                let parts: Vec<_> = srcs.iter().map(|s| s.part.clone()).collect();
                let st = merge::merge_parts(&parts, &mut w, &self.rules(abortable))?;
                self.account(&st);
                w.finish(self.opts.dedup_interval_ms)?;
            }
            Part::open(&dir)
        })();
        let part = match written {
            Ok(part) => part,
            Err(e) => {
                if dir.exists() {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                return Err(e);
            }
        };
        let entry = PartEntry::new(part, dst, name);
        let mut lists = p.parts.lock();
        for s in srcs {
            let tier = lists.tier(s.kind);
            tier.retain(|e| !Arc::ptr_eq(e, s));
            s.must_drop.store(true, Ordering::Release);
        }
        if entry.part.header().rows_count > 0 {
            lists.tier(dst).push(entry);
        } else {
            entry.must_drop.store(true, Ordering::Release);
        }
        p.write_manifest(&lists)
    }

    fn merge_worker(&self) {
        let mut backoff = MIN_BACKOFF;
        while !self.stop.load(Ordering::SeqCst) {
            match self.merge_once() {
                Ok(true) => {
                    backoff = MIN_BACKOFF;
                    continue;
                }
                Ok(false) => {}
                Err(StorageError::Unavailable(_)) if self.stop.load(Ordering::SeqCst) => return,
                Err(e) => {
                    tracing::error!(error = %e, "background merge failed");
                    metrics::counter!("strata_storage_errors_total", "kind" => "merge").increment(1);
                }
            }
            if self.sleep(backoff) {
                backoff = MIN_BACKOFF;
            } else {
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// Runs at most one merge; true if it did.
    fn merge_once(&self) -> Result<bool> {
        let avail = free_disk_bytes(&self.root).saturating_sub(self.opts.min_free_disk_bytes);
        let parts: Vec<_> = self.partitions.read().values().rev().cloned().collect();
        for p in parts {
            for kind in [PartKind::Small, PartKind::Big] {
                let max_out = avail.min(MAX_PART_BYTES);
                let picked: Vec<_> = {
                    let mut lists = p.parts.lock();
                    let cands: Vec<_> = lists
                        .tier(kind)
                        .iter()
                        .filter(|e| !e.in_merge.load(Ordering::Acquire))
                        .cloned()
                        .collect();
                    let sizes: Vec<u64> = cands.iter().map(|e| e.part.size_bytes()).collect();
                    let sel = partition::select_parts_to_merge(&sizes, max_out, false);
                    sel.into_iter()
                        .map(|i| cands[i].clone())
                        .filter(|e| !e.in_merge.swap(true, Ordering::AcqRel))
                        .collect()
                };
                if picked.len() < 2 {
                    for e in &picked {
                        e.in_merge.store(false, Ordering::Release);
                    }
                    continue;
                }
                let total: u64 = picked.iter().map(|e| e.part.size_bytes()).sum();
                let dst = if kind == PartKind::Big || total > self.opts.max_small_part_bytes {
                    PartKind::Big
                } else {
                    PartKind::Small
                };
                self.merge_into(&p, picked, dst, true)?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn force_merge_partition(&self, p: &Arc<Partition>) -> Result<()> {
        loop {
            let (picked, busy) = {
                let lists = p.parts.lock();
                let file_parts: Vec<_> = lists.small.iter().chain(&lists.big).cloned().collect();
                let busy = file_parts.iter().any(|e| e.in_merge.load(Ordering::Acquire));
                let free: Vec<_> = file_parts
                    .into_iter()
                    .filter(|e| !e.in_merge.swap(true, Ordering::AcqRel))
                    .collect();
                (free, busy)
            };
            // A lone part is rewritten only if that changes something: dedup with a larger
            // interval than it was written with, or samples past the retention deadline.
            let lone_needs_merge = picked.len() == 1 && {
                let h = picked[0].part.header();
                (self.opts.dedup_interval_ms > 0 && h.min_dedup_interval < self.opts.dedup_interval_ms)
                    || h.min_timestamp < self.retention_deadline()
            };
            if picked.len() < 2 && !lone_needs_merge {
                for e in &picked {
                    e.in_merge.store(false, Ordering::Release);
                }
                if busy && !self.stop.load(Ordering::SeqCst) {
                    // A background merge owns some parts: wait for it, then merge its output.
                    std::thread::sleep(MIN_BACKOFF);
                    continue;
                }
                return Ok(());
            }
            let total: u64 = picked.iter().map(|e| e.part.size_bytes()).sum();
            let avail = free_disk_bytes(&self.root).saturating_sub(self.opts.min_free_disk_bytes);
            if total > avail {
                for e in &picked {
                    e.in_merge.store(false, Ordering::Release);
                }
                return Err(StorageError::Unavailable(format!(
                    "not enough free disk to merge partition {} ({total} bytes needed)",
                    p.name
                )));
            }
            let dst = if total > self.opts.max_small_part_bytes {
                PartKind::Big
            } else {
                PartKind::Small
            };
            self.merge_into(p, picked, dst, true)?;
            if !busy {
                return Ok(());
            }
        }
    }

    // ---- periodic work ----

    fn flush_worker(&self) {
        let mut last_retention = Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            self.sleep(self.opts.pending_rows_flush_interval);
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let res = {
                let _g = self.flush_lock.lock();
                self.flush_pending().and_then(|()| self.flush_inmemory(false))
            };
            if let Err(e) = res {
                tracing::error!(error = %e, "cannot flush data");
                metrics::counter!("strata_storage_errors_total", "kind" => "flush").increment(1);
            }
            if last_retention.elapsed() >= RETENTION_CHECK {
                last_retention = Instant::now();
                self.enforce_retention();
            }
            self.update_gauges();
        }
    }

    /// Drops partitions and parts wholly older than the retention deadline.
    fn enforce_retention(&self) {
        let deadline = self.retention_deadline();
        let mut removed = 0u64;
        {
            let mut map = self.partitions.write();
            let old: Vec<String> = map
                .values()
                .filter(|p| p.max_ts < deadline)
                .map(|p| p.name.clone())
                .collect();
            for name in old {
                if let Some(p) = map.remove(&name) {
                    let lists = p.parts.lock();
                    for e in lists.all() {
                        removed += e.part.header().rows_count;
                        e.must_drop.store(true, Ordering::Release);
                    }
                    p.dropped.store(true, Ordering::Release);
                    tracing::info!(partition = %name, "dropping partition outside retention");
                }
            }
        }
        let parts: Vec<_> = self.partitions.read().values().cloned().collect();
        for p in parts {
            let mut lists = p.parts.lock();
            let mut changed = false;
            for kind in [PartKind::InMemory, PartKind::Small, PartKind::Big] {
                lists.tier(kind).retain(|e| {
                    let expired = e.part.header().max_timestamp < deadline && !e.in_merge.load(Ordering::Acquire);
                    if expired {
                        removed += e.part.header().rows_count;
                        e.must_drop.store(true, Ordering::Release);
                        changed |= kind != PartKind::InMemory;
                    }
                    !expired
                });
            }
            if changed && let Err(e) = p.write_manifest(&lists) {
                tracing::error!(partition = %p.name, error = %e, "cannot rewrite parts.json after retention");
            }
        }
        self.counters.retention_removed.fetch_add(removed, Ordering::Relaxed);
        metrics::counter!("strata_retention_samples_removed_total").increment(removed);
    }

    fn stats(&self) -> TableStats {
        let mut st = TableStats::default();
        let parts: Vec<_> = self.partitions.read().values().cloned().collect();
        st.partitions = parts.len() as u64;
        for p in parts {
            let lists = p.parts.lock();
            for e in lists.all() {
                let t: &mut TierStats = match e.kind {
                    PartKind::InMemory => &mut st.inmemory,
                    PartKind::Small => &mut st.small,
                    PartKind::Big => &mut st.big,
                };
                t.parts += 1;
                t.rows += e.part.header().rows_count;
                t.blocks += e.part.header().blocks_count;
                t.bytes += e.part.size_bytes();
            }
        }
        st.pending_rows = self.shards.iter().map(|s| s.lock().len() as u64).sum();
        let c = &self.counters;
        st.rows_added = c.rows_added.load(Ordering::Relaxed);
        st.rows_dropped = c.rows_dropped.load(Ordering::Relaxed);
        st.merges_running = c.merges_running.load(Ordering::Relaxed);
        st.merges_done = c.merges_done.load(Ordering::Relaxed);
        st.dedup_removed = c.dedup_removed.load(Ordering::Relaxed);
        st.retention_removed = c.retention_removed.load(Ordering::Relaxed);
        st.quarantined_parts = c.quarantined.load(Ordering::Relaxed);
        st
    }

    fn update_gauges(&self) {
        let st = self.stats();
        for (label, t) in [("inmemory", st.inmemory), ("small", st.small), ("big", st.big)] {
            metrics::gauge!("strata_parts", "type" => label).set(t.parts as f64);
            metrics::gauge!("strata_rows", "type" => label).set(t.rows as f64);
            metrics::gauge!("strata_blocks", "type" => label).set(t.blocks as f64);
            metrics::gauge!("strata_data_size_bytes", "type" => label).set(t.bytes as f64);
        }
        metrics::gauge!("strata_pending_rows").set(st.pending_rows as f64);
        metrics::gauge!("strata_partitions").set(st.partitions as f64);
    }

    // ---- search ----

    fn search(&self, tsids: &[Tsid], tr: TimeRange, visit: &mut SeriesVisitor<'_>) -> Result<()> {
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

    // ---- snapshots ----

    fn snapshot(&self, dst: &Path) -> Result<()> {
        let parts: Vec<_> = self.partitions.read().values().cloned().collect();
        for p in parts {
            // Holding the entries keeps their directories alive even if a merge replaces them.
            let (small, big) = {
                let lists = p.parts.lock();
                (lists.small.clone(), lists.big.clone())
            };
            let sdir = dst.join("small").join(&p.name);
            let bdir = dst.join("big").join(&p.name);
            for d in [&sdir, &bdir] {
                strata_fsutil::create_dir_all_durable(d).map_err(|e| StorageError::io("cannot create", d, e))?;
            }
            for (list, base) in [(&small, &sdir), (&big, &bdir)] {
                for e in list {
                    let to = base.join(&e.name);
                    std::fs::create_dir(&to).map_err(|err| StorageError::io("cannot create", &to, err))?;
                    for f in part::PART_FILES {
                        let from = e.part.path().join(f);
                        std::fs::hard_link(&from, to.join(f))
                            .map_err(|err| StorageError::io("cannot link", &from, err))?;
                    }
                    strata_fsutil::fsync_dir(&to).map_err(|err| StorageError::io("cannot fsync", &to, err))?;
                }
                strata_fsutil::fsync_dir(base).map_err(|err| StorageError::io("cannot fsync", base, err))?;
            }
            let names = PartNames {
                small: small.iter().map(|e| e.name.clone()).collect(),
                big: big.iter().map(|e| e.name.clone()).collect(),
            };
            partition::write_parts_json(&sdir.join(partition::PARTS_JSON), &names)?;
        }
        Ok(())
    }
}

fn complete_parts(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .flatten()
        .filter(|e| e.path().join(part::METADATA_FILE).is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
