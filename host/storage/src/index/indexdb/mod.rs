//! `IndexDb`: tables rotated per retention period, series creation, caches, searches.
//! The write path (a TSID for a name) is in `create.rs`, the read path (ids for filters, names
//! for ids, deletion) in `select.rs`; this file holds the tables, caches and rotation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex, RwLock};
use strata_mergeset::{Table, TableOptions};
use xxhash_rust::xxh64::xxh64;

use super::cache::TwoGenCache;
use super::keys::{NS_DELETED, NS_NAME_TO_TSID, be_u64, merge_tag_rows};
use super::search::{Searcher, ms_err};
use super::uint64set::Uint64Set;
use super::{IndexOptions, Label, MetricName, TagFilter, TsdbStatus};
use crate::{DeletedMetricIds, Result, StorageError, TSID_SIZE, Tenant, TimeRange, Tsid};

mod create;
mod select;

const MS_PER_DAY: i64 = 86_400_000;
/// Ranges spanning more days than this search the global index (FORMATS.md §4.2).
const MAX_DAYS_FOR_PER_DAY_SEARCH: u64 = 40;
/// Above this many matches, TSIDs are read by one scan instead of a lookup per series. A
/// static so tests can reach the scan path with few series.
static SCAN_TSIDS_ABOVE: AtomicUsize = AtomicUsize::new(100_000);

/// Sets the match count above which TSIDs are read by a scan. For tests; not a tuning knob.
#[doc(hidden)]
pub fn set_scan_tsids_above(n: usize) {
    SCAN_TSIDS_ABOVE.store(n, Ordering::Relaxed);
}
/// Longest canonical name accepted (index items carry it whole; mergeset items are at most
/// 64 KiB).
const MAX_NAME_BYTES: usize = strata_mergeset::MAX_ITEM_SIZE - 128;
/// Where the metric id counter is persisted so it never goes backwards across restarts.
const SEED_FILE: &str = "metric_id_seed";
/// Rotation happens this long after a retention boundary (FORMATS.md §4.6: off-peak, issue 248).
const ROTATION_OFFSET: Duration = Duration::from_secs(4 * 3600);
/// Per-day seen-sets kept (today, yesterday and some backfill).
const SEEN_DAYS: usize = 4;

/// How long a created series stays in [`Recent`]: well beyond the 1 s after which mergeset
/// makes pending items visible.
const RECENT_GENERATION: Duration = Duration::from_secs(3);

/// Values are metric ids only: the rest of the TSID follows from the canonical name.
#[derive(Default)]
struct Recent {
    curr: HashMap<(u64, u64), u64>,
    prev: HashMap<(u64, u64), u64>,
    started: Option<std::time::Instant>,
}

impl Recent {
    fn get(&self, k: (u64, u64)) -> Option<u64> {
        self.curr.get(&k).or_else(|| self.prev.get(&k)).copied()
    }

    fn put(&mut self, k: (u64, u64), id: u64) {
        let now = std::time::Instant::now();
        if self.started.is_none_or(|s| now.duration_since(s) >= RECENT_GENERATION) {
            self.prev = std::mem::take(&mut self.curr);
            self.started = Some(now);
        }
        self.curr.insert(k, id);
    }
}

/// 128 bits of hash as two u64s (a u128 key would be 16-byte aligned and waste 8 bytes per
/// cache entry).
fn hash128(b: &[u8]) -> (u64, u64) {
    (xxh64(b, 0), xxh64(b, 0x9E37_79B9_7F4A_7C15))
}

/// The set of deleted metric ids, shared with the data side.
#[derive(Default)]
pub(super) struct DeletedSet(pub(super) RwLock<Uint64Set>);

impl DeletedMetricIds for DeletedSet {
    fn contains(&self, metric_id: u64) -> bool {
        self.0.read().contains(metric_id)
    }
}

/// One retention period's index table.
pub(super) struct IdxTable {
    /// The table name parsed as a number; cache entries remember it.
    generation: u64,
    pub(super) path: PathBuf,
    table: Option<Table>,
    /// Set when rotated out: the directory is removed once the last search lets go.
    remove_on_drop: std::sync::atomic::AtomicBool,
    /// Which canonical names may be registered here: a brand-new series skips the index lookup.
    names: NameFilter,
}

/// A Bloom filter over canonical-name hashes (3 probes, ~10 bits per name). Sized at open for
/// the names already present plus room for 2M more; past its capacity it answers "maybe"
/// always, which only costs the lookups it was saving.
struct NameFilter {
    bits: Vec<AtomicU64>,
    mask: u64,
    count: AtomicU64,
    capacity: u64,
}

impl NameFilter {
    fn new(existing: u64) -> NameFilter {
        let m = ((existing + 2_000_000) * 10).next_power_of_two().max(1 << 23);
        NameFilter {
            bits: (0..m / 64).map(|_| AtomicU64::new(0)).collect(),
            mask: m - 1,
            count: AtomicU64::new(0),
            capacity: m / 10,
        }
    }

    fn probes(&self, h: (u64, u64)) -> [u64; 3] {
        [0u64, 1, 2].map(|i| h.0.wrapping_add(i.wrapping_mul(h.1 | 1)) & self.mask)
    }

    fn add(&self, h: (u64, u64)) {
        for b in self.probes(h) {
            self.bits[(b / 64) as usize].fetch_or(1 << (b % 64), Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn may_contain(&self, h: (u64, u64)) -> bool {
        self.count.load(Ordering::Relaxed) > self.capacity
            || self
                .probes(h)
                .iter()
                .all(|&b| self.bits[(b / 64) as usize].load(Ordering::Relaxed) & (1 << (b % 64)) != 0)
    }
}

impl IdxTable {
    fn open(dir: &Path, generation: u64, cache_bytes: usize) -> Result<IdxTable> {
        let path = dir.join(format!("{generation:016X}"));
        let opts = TableOptions {
            block_cache_bytes: cache_bytes,
            prepare_block: Some(Arc::new(merge_tag_rows)),
            ..TableOptions::default()
        };
        let table = Table::open(&path, opts).map_err(ms_err)?;
        // Fill the name filter from the name→TSID items (`00 MN 02 TSID`).
        let mut hashes = Vec::new();
        table
            .search()
            .for_each_with_prefix(&[NS_NAME_TO_TSID], |it| {
                if it.len() > 1 + 1 + TSID_SIZE {
                    hashes.push(hash128(&it[1..it.len() - 1 - TSID_SIZE]));
                }
                true
            })
            .map_err(ms_err)?;
        let names = NameFilter::new(hashes.len() as u64);
        for h in hashes {
            names.add(h);
        }
        Ok(IdxTable {
            generation,
            path,
            table: Some(table),
            remove_on_drop: false.into(),
            names,
        })
    }

    fn t(&self) -> &Table {
        // Only `Drop` takes the table out.
        self.table
            .as_ref()
            .unwrap_or_else(|| unreachable!("table used after drop"))
    }

    pub(super) fn searcher(&self, tenant: Tenant, visible_only: bool) -> Searcher {
        let ts = if visible_only {
            self.t().search_visible()
        } else {
            self.t().search()
        };
        Searcher {
            ts,
            tenant,
            path: self.path.clone(),
        }
    }
}

impl Drop for IdxTable {
    fn drop(&mut self) {
        drop(self.table.take());
        if self.remove_on_drop.load(Ordering::Relaxed)
            && let Err(e) = strata_fsutil::remove_dir_all_durable(&self.path)
        {
            tracing::error!(path = %self.path.display(), error = %e, "cannot remove a rotated-out index table");
        }
    }
}

pub(super) struct Tables {
    curr: Arc<IdxTable>,
    prev: Option<Arc<IdxTable>>,
}

impl Tables {
    pub(super) fn all(&self) -> Vec<Arc<IdxTable>> {
        let mut v = vec![self.curr.clone()];
        v.extend(self.prev.clone());
        v
    }
}

pub(super) struct Inner {
    dir: PathBuf,
    opts: IndexOptions,
    pub(super) tables: RwLock<Tables>,
    next_metric_id: AtomicU64,
    /// 128-bit hash of the raw name → (TSID, table generation it is registered in).
    name_cache: TwoGenCache<(u64, u64), (Tsid, u64)>,
    id_cache: TwoGenCache<u64, Tsid>,
    /// date → ids whose per-day entries exist in the current table.
    seen: Mutex<HashMap<u64, Uint64Set>>,
    pub(super) deleted: Arc<DeletedSet>,
    /// Serialises series creation so one name never gets two ids.
    create_lock: Mutex<()>,
    /// Series created in the last few seconds by canonical-name hash: their index items may
    /// still be pending (not yet visible to lookups), and the same series can arrive with its
    /// labels in another order (a different raw form, so a name-cache miss).
    recent: Mutex<Recent>,
    /// Bumped after every index write; cached search results carry the version they saw.
    version: AtomicU64,
    /// (tenant, filters, day span or global) → matching ids, valid while `version` is unchanged.
    results: Mutex<ResultCache>,
    stop: Mutex<bool>,
    wake: Condvar,
}

type ResultKey = (Tenant, Vec<TagFilter>, Option<(u64, u64)>);

/// Search results for repeated queries (dashboards). Invalidated by any index write, so it
/// never serves stale ids; with steady ingestion (known series) it stays warm.
#[derive(Default)]
struct ResultCache {
    map: HashMap<ResultKey, (u64, Arc<Uint64Set>)>,
    bytes: usize,
}

/// Cached results at most.
const MAX_CACHED_RESULTS: usize = 4096;

/// The index of one data directory. `Send + Sync`.
pub struct IndexDb {
    inner: Arc<Inner>,
    rotator: Mutex<Option<JoinHandle<()>>>,
}

/// Spreads dense ids over cache shards (they share their high bits).
fn mix(id: u64) -> u64 {
    id.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn io<'a>(op: &'static str, p: &'a Path) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |e| StorageError::io(op, p, e)
}

fn day_of(ms: i64) -> u64 {
    ms.max(0).div_euclid(MS_PER_DAY) as u64
}

impl IndexDb {
    /// Opens (or creates) the index in `dir` (`<data>/indexdb`).
    pub fn open(dir: &Path, opts: IndexOptions) -> Result<IndexDb> {
        strata_fsutil::create_dir_all_durable(dir).map_err(io("cannot create", dir))?;
        let mut gens = Vec::new();
        for e in std::fs::read_dir(dir).map_err(io("cannot list", dir))? {
            let e = e.map_err(io("cannot list", dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir()
                && name.len() == 16
                && let Ok(g) = u64::from_str_radix(&name, 16)
            {
                gens.push(g);
            }
        }
        gens.sort_unstable();
        while gens.len() > 2 {
            let g = gens.remove(0);
            let p = dir.join(format!("{g:016X}"));
            tracing::info!(path = %p.display(), "removing an index table older than the previous period");
            strata_fsutil::remove_dir_all_durable(&p).map_err(io("cannot remove", &p))?;
        }
        let table_cache = opts.cache_bytes / 32;
        if gens.is_empty() {
            gens.push(now_nanos());
        }
        let curr = Arc::new(IdxTable::open(dir, gens[gens.len() - 1], table_cache)?);
        let prev = if gens.len() == 2 {
            Some(Arc::new(IdxTable::open(dir, gens[0], table_cache)?))
        } else {
            None
        };
        let seed_path = dir.join(SEED_FILE);
        let seed = std::fs::read_to_string(&seed_path)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let tables = Tables { curr, prev };
        let deleted = Arc::new(DeletedSet::default());
        for t in tables.all() {
            let mut ts = t.t().search();
            let mut set = deleted.0.write();
            ts.for_each_with_prefix(&[NS_DELETED], |it| {
                if let Some(id) = be_u64(&it[1..]) {
                    set.add(id);
                }
                true
            })
            .map_err(ms_err)?;
        }
        let name_entries = (opts.cache_bytes / 10 * 6 / 96).max(1024);
        let id_entries = (opts.cache_bytes / 10 * 2 / 64).max(1024);
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            next_metric_id: AtomicU64::new(now_nanos().max(seed)),
            name_cache: TwoGenCache::new(name_entries),
            id_cache: TwoGenCache::new(id_entries),
            opts,
            tables: RwLock::new(tables),
            seen: Mutex::new(HashMap::new()),
            deleted,
            create_lock: Mutex::new(()),
            recent: Mutex::new(Recent::default()),
            version: AtomicU64::new(0),
            results: Mutex::new(ResultCache::default()),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        inner.write_seed()?;
        let w = inner.clone();
        let rotator = std::thread::Builder::new()
            .name("indexdb-rotate".into())
            .spawn(move || w.rotation_loop())
            .map_err(io("cannot start the rotation thread", dir))?;
        Ok(IndexDb {
            inner,
            rotator: Mutex::new(Some(rotator)),
        })
    }

    /// The TSID of a series, creating it (and all its index entries) when new. A known series
    /// is a cache hit; per-day entries are written once per series per day.
    pub fn get_or_create_tsid(&self, tenant: Tenant, labels: &[Label<'_>], timestamp_ms: i64) -> Result<Tsid> {
        self.inner.get_or_create_tsid(tenant, labels, timestamp_ms)
    }

    /// TSIDs of the series matching `filters` with index entries in `tr`, sorted. Fails with
    /// `TooManySeries` above `max_series`.
    pub fn search_tsids(
        &self,
        tenant: Tenant,
        filters: &[TagFilter],
        tr: TimeRange,
        max_series: usize,
    ) -> Result<Vec<Tsid>> {
        let ids = self.inner.search_ids(tenant, filters, tr, max_series)?;
        let tables = self.inner.tables.read().all();
        let mut out = Vec::with_capacity(ids.len());
        let mut searchers: Vec<Searcher> = tables.iter().map(|t| t.searcher(tenant, false)).collect();
        if ids.len() > SCAN_TSIDS_ABOVE.load(Ordering::Relaxed) {
            // One pass over the id→TSID rows beats a seek per id for big results.
            let mut left = ids;
            for s in &mut searchers {
                s.tsids_scan(&mut left, &mut out)?;
                if left.is_empty() {
                    break;
                }
            }
        } else {
            for id in ids.to_vec() {
                if let Some(t) = self.inner.id_cache.get(&id, mix(id)) {
                    out.push(t);
                    continue;
                }
                for s in &mut searchers {
                    if let Some(t) = s.tsid_of(id)? {
                        self.inner.id_cache.put(id, mix(id), t);
                        out.push(t);
                        break;
                    }
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Names of the series matching `filters` in `tr`, sorted.
    pub fn search_metric_names(
        &self,
        tenant: Tenant,
        filters: &[TagFilter],
        tr: TimeRange,
        max_series: usize,
    ) -> Result<Vec<MetricName>> {
        let ids = self.inner.search_ids(tenant, filters, tr, max_series)?;
        let mut out = self
            .inner
            .names_of(tenant, &ids)?
            .into_iter()
            .map(|c| c.to_metric_name())
            .collect::<Vec<_>>();
        out.sort();
        Ok(out)
    }

    /// The name of a series, `None` if the index does not know it (or it was deleted).
    pub fn metric_name(&self, tsid: &Tsid) -> Result<Option<MetricName>> {
        if self.inner.deleted.contains(tsid.metric_id) {
            return Ok(None);
        }
        for t in self.inner.tables.read().all() {
            if let Some(cn) = t.searcher(tsid.tenant, false).name_of(tsid.metric_id)? {
                return Ok(Some(cn.to_metric_name()));
            }
        }
        Ok(None)
    }

    /// Label names of the series matching `filters` in `tr` (all series without filters),
    /// sorted; at most `limit` (0: no limit).
    pub fn label_names(
        &self,
        tenant: Tenant,
        filters: &[TagFilter],
        tr: TimeRange,
        limit: usize,
    ) -> Result<Vec<String>> {
        self.inner.label_names(tenant, filters, tr, limit)
    }

    /// Values of label `name` among the series matching `filters` in `tr`, sorted; at most
    /// `limit` (0: no limit).
    pub fn label_values(
        &self,
        tenant: Tenant,
        name: &str,
        filters: &[TagFilter],
        tr: TimeRange,
        limit: usize,
    ) -> Result<Vec<String>> {
        self.inner.label_values(tenant, name, filters, tr, limit)
    }

    /// Series with index entries in `tr`.
    pub fn series_count(&self, tenant: Tenant, tr: TimeRange) -> Result<u64> {
        Ok(self.inner.search_ids(tenant, &[], tr, usize::MAX)?.len() as u64)
    }

    /// Cardinality statistics of the day holding `date_ms` (VictoriaMetrics' `/api/v1/status/tsdb`).
    pub fn tsdb_status(
        &self,
        tenant: Tenant,
        date_ms: i64,
        focus_label: Option<&str>,
        top_n: usize,
    ) -> Result<TsdbStatus> {
        self.inner.tsdb_status(tenant, day_of(date_ms), focus_label, top_n)
    }

    /// Deletes every series matching `filters` (whole time range); they vanish from searches
    /// at once and re-ingested names get new ids. Returns how many series were deleted.
    pub fn delete_series(&self, tenant: Tenant, filters: &[TagFilter]) -> Result<u64> {
        self.inner.delete_series(tenant, filters)
    }

    /// The deleted-series set for the data side's merges.
    pub fn deleted_metric_ids(&self) -> Arc<dyn DeletedMetricIds> {
        self.inner.deleted.clone()
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<()> {
        self.inner.flush()
    }

    /// Starts a new table now: the current one becomes the previous, the previous is dropped.
    /// Runs on its own every retention period; public for tools and tests.
    pub fn rotate(&self) -> Result<()> {
        self.inner.rotate()
    }

    /// Hard-links the index into `dst` (flushes first).
    pub fn snapshot(&self, dst: &Path) -> Result<()> {
        self.inner.flush()?;
        strata_fsutil::create_dir_all_durable(dst).map_err(io("cannot create", dst))?;
        for t in self.inner.tables.read().all() {
            let name = t.path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
            t.t().snapshot(&dst.join(name)).map_err(ms_err)?;
        }
        let seed = self.inner.next_metric_id.load(Ordering::Relaxed).to_string();
        let p = dst.join(SEED_FILE);
        strata_fsutil::atomic_write(&p, seed.as_bytes()).map_err(io("cannot write", &p))
    }

    /// Stops background work and flushes.
    pub fn close(self) -> Result<()> {
        self.stop_rotator();
        self.inner.flush()
    }

    fn stop_rotator(&self) {
        *self.inner.stop.lock() = true;
        self.inner.wake.notify_all();
        if let Some(h) = self.rotator.lock().take() {
            let _ = h.join();
        }
    }
}

impl Drop for IndexDb {
    fn drop(&mut self) {
        self.stop_rotator();
    }
}

impl Inner {
    fn write_seed(&self) -> Result<()> {
        let p = self.dir.join(SEED_FILE);
        let v = self.next_metric_id.load(Ordering::Relaxed).to_string();
        strata_fsutil::atomic_write(&p, v.as_bytes()).map_err(io("cannot write", &p))
    }

    fn flush(&self) -> Result<()> {
        for t in self.tables.read().all() {
            t.t().flush().map_err(ms_err)?;
        }
        self.write_seed()
    }

    fn rotate(&self) -> Result<()> {
        let _g = self.create_lock.lock();
        let curr_gen = self.tables.read().curr.generation;
        let generation = now_nanos().max(curr_gen + 1);
        let new = Arc::new(IdxTable::open(&self.dir, generation, self.opts.cache_bytes / 32)?);
        let old = {
            let mut t = self.tables.write();
            let old = t.prev.take();
            t.prev = Some(std::mem::replace(&mut t.curr, new));
            old
        };
        self.seen.lock().clear();
        *self.recent.lock() = Recent::default();
        self.version.fetch_add(1, Ordering::Release);
        if let Some(old) = old {
            old.remove_on_drop.store(true, Ordering::Relaxed);
        }
        tracing::info!(table = format!("{generation:016X}"), "index table rotated");
        Ok(())
    }

    fn rotation_loop(self: Arc<Self>) {
        let period = self.opts.retention.max(Duration::from_secs(86400)).as_secs();
        let next_deadline = || {
            let now = now_nanos() / 1_000_000_000;
            let base = now - now % period + ROTATION_OFFSET.as_secs();
            if base > now { base } else { base + period }
        };
        let mut deadline = next_deadline();
        loop {
            let now = now_nanos() / 1_000_000_000;
            let wait = Duration::from_secs(deadline.saturating_sub(now).clamp(1, 3600));
            {
                let mut stop = self.stop.lock();
                if !*stop {
                    self.wake.wait_for(&mut stop, wait);
                }
                if *stop {
                    return;
                }
            }
            if now_nanos() / 1_000_000_000 >= deadline {
                if let Err(e) = self.rotate() {
                    tracing::error!(error = %e, "index rotation failed; retrying in a minute");
                    deadline = now_nanos() / 1_000_000_000 + 60;
                    continue;
                }
                deadline = next_deadline();
            }
        }
    }
}
