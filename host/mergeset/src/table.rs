//! The table: pending items, in-memory parts, file parts, `parts.json`, background merges.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex, RwLock};

use crate::error::{Error, Result};
use crate::items::Items;
use crate::part::{FilePart, PartWriter};
use crate::search::{BlockCache, Part, PartData, TableSearch};
use crate::select::select_parts_to_merge;

/// Items longer than this are dropped (and logged) at ingestion: a block must hold one.
pub const MAX_ITEM_SIZE: usize = 64 * 1024;
/// Bytes of item data per block.
const MAX_BLOCK_BYTES: usize = 64 * 1024;
/// Pending bytes at which pending items become an in-memory part without waiting for the tick.
const MAX_PENDING_BYTES: usize = 8 << 20;
/// Bytes of in-memory parts at which they go to disk without waiting for `flush_interval`:
/// bounds the memory a burst of new items (a new-series storm) holds.
const MAX_INMEM_BYTES: u64 = 32 << 20;
/// In-memory parts beyond which they are merged together (FORMATS.md §3.1 `maxInmemoryParts`).
const MAX_INMEM_PARTS: usize = 30;
/// Largest merge output (FORMATS.md §3.1 `maxPartSize`).
const MAX_PART_SIZE: u64 = 400_000_000_000;
/// The table manifest.
pub const PARTS_FILE: &str = "parts.json";
const TMP_DIR: &str = "tmp";

/// Rewrites one output block during merges and flushes; `None` keeps it. The result must be
/// sorted, non-empty, its first item `>=` the original first and its last `<=` the original
/// last (FORMATS.md §3.4); a result breaking this is discarded and the original kept.
pub type PrepareBlock = Arc<dyn Fn(&Items) -> Option<Items> + Send + Sync>;

/// Table settings.
#[derive(Clone)]
pub struct TableOptions {
    /// Age after which in-memory parts are written to disk.
    pub flush_interval: Duration,
    /// How often pending items become searchable in the background.
    pub pending_interval: Duration,
    /// Bytes of decoded blocks kept in memory.
    pub block_cache_bytes: usize,
    /// The merge hook.
    pub prepare_block: Option<PrepareBlock>,
    /// Run the background worker (flushes and merges); without it only explicit calls do.
    pub background: bool,
}

impl Default for TableOptions {
    fn default() -> Self {
        Self {
            flush_interval: Duration::from_secs(5),
            pending_interval: Duration::from_secs(1),
            block_cache_bytes: 64 << 20,
            prepare_block: None,
            background: true,
        }
    }
}

/// Part counts and sizes, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// In-memory parts.
    pub mem_parts: usize,
    /// File parts.
    pub file_parts: usize,
    /// Items in all parts (pending items excluded).
    pub items: u64,
    /// Bytes of file parts.
    pub file_bytes: u64,
}

struct Inner {
    path: PathBuf,
    opts: TableOptions,
    pending: Mutex<Items>,
    parts: RwLock<Vec<Arc<Part>>>,
    /// Serialises every change of the file-part set and of parts.json.
    merge_lock: Mutex<()>,
    next_name: AtomicU64,
    cache: Arc<BlockCache>,
    stop: Mutex<bool>,
    wake: Condvar,
}

/// A mergeset table in one directory. `Send + Sync`; every method takes `&self`.
pub struct Table {
    inner: Arc<Inner>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

use crate::error::io;

impl Table {
    /// Opens (or creates) the table in `path`: removes `tmp/` and part directories that
    /// `parts.json` does not list (left by a crash), opens the listed ones.
    pub fn open(path: &Path, opts: TableOptions) -> Result<Table> {
        strata_fsutil::create_dir_all_durable(path).map_err(io("cannot create", path))?;
        let tmp = path.join(TMP_DIR);
        if tmp.exists() {
            strata_fsutil::remove_dir_all_durable(&tmp).map_err(io("cannot remove", &tmp))?;
        }
        let pj = path.join(PARTS_FILE);
        let listed: Vec<String> = match fs::read(&pj) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::corrupt(&pj, e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io("cannot read", &pj, e)),
        };
        for entry in fs::read_dir(path).map_err(io("cannot list", path))? {
            let entry = entry.map_err(io("cannot list", path))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() && !listed.contains(&name) {
                tracing::info!(dir = %entry.path().display(), "removing a part not listed in parts.json");
                strata_fsutil::remove_dir_all_durable(&entry.path()).map_err(io("cannot remove", &entry.path()))?;
            }
        }
        let mut parts = Vec::new();
        let mut max_name = 0u64;
        for name in &listed {
            let dir = path.join(name);
            if !dir.is_dir() {
                return Err(Error::corrupt(&dir, "listed in parts.json but missing"));
            }
            max_name = max_name.max(u64::from_str_radix(name, 16).unwrap_or(0));
            parts.push(Arc::new(Part::file(FilePart::open(&dir)?, name.clone())));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let inner = Arc::new(Inner {
            path: path.to_path_buf(),
            cache: Arc::new(BlockCache::new(opts.block_cache_bytes)),
            opts,
            pending: Mutex::new(Items::new()),
            parts: RwLock::new(parts),
            merge_lock: Mutex::new(()),
            next_name: AtomicU64::new(now.max(max_name + 1)),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let worker = if inner.opts.background {
            let w = inner.clone();
            let h = std::thread::Builder::new()
                .name("mergeset".into())
                .spawn(move || w.background())
                .map_err(io("cannot start the merge thread", path))?;
            Some(h)
        } else {
            None
        };
        Ok(Table {
            inner,
            worker: Mutex::new(worker),
        })
    }

    /// The table directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Adds items (any order). They become searchable with the next [`Table::search`], the
    /// background tick, or a flush. Items over [`MAX_ITEM_SIZE`] are dropped and logged.
    pub fn add_items<'a>(&self, items: impl IntoIterator<Item = &'a [u8]>) {
        let full = {
            let mut p = self.inner.pending.lock();
            for it in items {
                if it.len() > MAX_ITEM_SIZE {
                    tracing::warn!(len = it.len(), "dropping a too long mergeset item");
                    continue;
                }
                p.push(it);
            }
            p.data_len() >= MAX_PENDING_BYTES
        };
        if full {
            self.inner.pending_to_mem();
        }
    }

    /// A search over everything added so far.
    pub fn search(&self) -> TableSearch {
        self.inner.pending_to_mem();
        self.search_visible()
    }

    /// A search over what is already searchable: skips pending items (up to
    /// `pending_interval` old) and so never creates a tiny in-memory part. For hot lookups
    /// that tolerate missing the newest items.
    pub fn search_visible(&self) -> TableSearch {
        let parts = self.inner.parts.read().clone();
        TableSearch::new(parts, Some(self.inner.cache.clone()))
    }

    /// Writes everything added so far to disk; durable on return.
    pub fn flush(&self) -> Result<()> {
        self.inner.pending_to_mem();
        self.inner.flush_mem_parts(true)
    }

    /// Merges all file parts into one (tests, tools, snapshots of compact tables).
    pub fn force_merge(&self) -> Result<()> {
        self.flush()?;
        let _g = self.inner.merge_lock.lock();
        let files: Vec<Arc<Part>> = self
            .inner
            .parts
            .read()
            .iter()
            .filter(|p| !p.is_mem())
            .cloned()
            .collect();
        if files.len() > 1 {
            self.inner.merge_to_file(&files)?;
        }
        Ok(())
    }

    /// Runs one round of background work now: pending to memory, old in-memory parts to disk,
    /// file merges the selection rule allows.
    pub fn maintain(&self) -> Result<()> {
        self.inner.tick()
    }

    /// Flushes, then hard-links every part into `dst` with its own parts.json.
    pub fn snapshot(&self, dst: &Path) -> Result<()> {
        self.flush()?;
        let _g = self.inner.merge_lock.lock();
        strata_fsutil::create_dir_all_durable(dst).map_err(io("cannot create", dst))?;
        let mut names = Vec::new();
        for p in self.inner.parts.read().iter() {
            if let PartData::File(fp) = &p.data {
                fp.link_into(&dst.join(&p.name))?;
                names.push(p.name.clone());
            }
        }
        names.sort();
        let pj = dst.join(PARTS_FILE);
        strata_fsutil::atomic_write(&pj, &serde_json::to_vec(&names).unwrap_or_default())
            .map_err(io("cannot write", &pj))
    }

    /// Part counts and sizes.
    pub fn stats(&self) -> TableStats {
        let mut s = TableStats::default();
        for p in self.inner.parts.read().iter() {
            s.items += p.items_count();
            if p.is_mem() {
                s.mem_parts += 1;
            } else {
                s.file_parts += 1;
                s.file_bytes += p.size_bytes();
            }
        }
        s
    }

    /// Stops the background worker and flushes.
    pub fn close(self) -> Result<()> {
        self.stop_worker();
        self.flush()
    }

    fn stop_worker(&self) {
        *self.inner.stop.lock() = true;
        self.inner.wake.notify_all();
        if let Some(h) = self.worker.lock().take() {
            let _ = h.join();
        }
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        self.stop_worker();
        if let Err(e) = self.flush() {
            tracing::error!(error = %e, "mergeset: flush at drop failed");
        }
    }
}

impl Inner {
    fn background(self: Arc<Self>) {
        loop {
            {
                let mut stop = self.stop.lock();
                if !*stop {
                    self.wake.wait_for(&mut stop, self.opts.pending_interval);
                }
                if *stop {
                    return;
                }
            }
            if let Err(e) = self.tick() {
                tracing::error!(table = %self.path.display(), error = %e, "mergeset background work failed; retrying");
            }
        }
    }

    fn tick(&self) -> Result<()> {
        self.pending_to_mem();
        let (oldest, mem_bytes) = {
            let parts = self.parts.read();
            let mems = parts.iter().filter(|p| p.is_mem());
            (
                mems.clone().map(|p| p.created).min(),
                mems.map(|p| p.size_bytes()).sum::<u64>(),
            )
        };
        if oldest.is_some_and(|t| t.elapsed() >= self.opts.flush_interval) || mem_bytes >= MAX_INMEM_BYTES {
            self.flush_mem_parts(false)?;
        }
        loop {
            let _g = self.merge_lock.lock();
            let files: Vec<Arc<Part>> = self.parts.read().iter().filter(|p| !p.is_mem()).cloned().collect();
            let sizes: Vec<u64> = files.iter().map(|p| p.size_bytes()).collect();
            let pick = select_parts_to_merge(&sizes, MAX_PART_SIZE);
            if pick.is_empty() || *self.stop.lock() {
                return Ok(());
            }
            let chosen: Vec<Arc<Part>> = pick.iter().map(|&i| files[i].clone()).collect();
            self.merge_to_file(&chosen)?;
        }
    }

    /// Turns pending items into a sorted in-memory part.
    fn pending_to_mem(&self) {
        // The pending lock is held until the part is listed: otherwise a search could find
        // pending empty while the items are not in any part yet, and miss them.
        let too_many = {
            let mut p = self.pending.lock();
            if p.is_empty() {
                return;
            }
            let part = Arc::new(Part::mem(p.sorted()));
            p.clear();
            let mut parts = self.parts.write();
            parts.push(part);
            parts.iter().filter(|p| p.is_mem()).count() > MAX_INMEM_PARTS
        };
        if too_many && let Some(_g) = self.merge_lock.try_lock() {
            let mems: Vec<Arc<Part>> = self.parts.read().iter().filter(|p| p.is_mem()).cloned().collect();
            let mut out = Items::new();
            let res = merge_parts(&mems, self.opts.prepare_block.as_ref(), &mut |b| {
                for it in b.iter() {
                    out.push(it);
                }
                Ok(())
            });
            // In-memory parts cannot fail to read; an error here would be a bug, keep the inputs.
            if res.is_ok() {
                self.replace(&mems, Some(Arc::new(Part::mem(out))));
            }
        }
    }

    /// Writes in-memory parts to one new file part. `all` is false only for the periodic
    /// flush, where it makes no difference either: all in-memory parts go together.
    fn flush_mem_parts(&self, _all: bool) -> Result<()> {
        let _g = self.merge_lock.lock();
        let mems: Vec<Arc<Part>> = self.parts.read().iter().filter(|p| p.is_mem()).cloned().collect();
        if mems.is_empty() {
            return Ok(());
        }
        self.merge_to_file(&mems)
    }

    /// Merges `srcs` into a new file part and swaps it in. Caller holds `merge_lock`.
    fn merge_to_file(&self, srcs: &[Arc<Part>]) -> Result<()> {
        let started = Instant::now();
        let tmp = self.path.join(TMP_DIR);
        strata_fsutil::create_dir_all_durable(&tmp).map_err(io("cannot create", &tmp))?;
        let name = format!("{:016X}", self.next_name.fetch_add(1, Ordering::Relaxed));
        let tmp_dir = tmp.join(&name);
        let mut n = 0u64;
        let written = (|| {
            let mut w = PartWriter::create(&tmp_dir)?;
            merge_parts(srcs, self.opts.prepare_block.as_ref(), &mut |b| {
                n += b.len() as u64;
                w.write_block(b)
            })?;
            w.finish()
        })();
        if let Err(e) = written {
            // A failed write (a full disk) must not leave its half-written part behind: it
            // would hold on to space until the next start.
            let _ = fs::remove_dir_all(&tmp_dir);
            return Err(e);
        }
        let dst = self.path.join(&name);
        fs::rename(&tmp_dir, &dst).map_err(|e| {
            let _ = fs::remove_dir_all(&tmp_dir);
            Error::io("cannot rename", &tmp_dir, e)
        })?;
        let part = match strata_fsutil::fsync_dir(&self.path)
            .map_err(io("cannot fsync", &self.path))
            .and_then(|()| FilePart::open(&dst))
        {
            Ok(fp) => Arc::new(Part::file(fp, name)),
            Err(e) => {
                let _ = fs::remove_dir_all(&dst);
                return Err(e);
            }
        };
        // parts.json first: a crash before it leaves `dst` unlisted (removed at start), a crash
        // after it leaves the sources unlisted (removed at start). Either way no item is lost.
        let mut names: Vec<String> = self
            .parts
            .read()
            .iter()
            .filter(|p| !p.is_mem() && !srcs.iter().any(|s| Arc::ptr_eq(s, p)))
            .map(|p| p.name.clone())
            .collect();
        names.push(part.name.clone());
        names.sort();
        let pj = self.path.join(PARTS_FILE);
        if let Err(e) = strata_fsutil::atomic_write(&pj, &serde_json::to_vec(&names).unwrap_or_default()) {
            // The sources stay in use. The new part goes unless parts.json made it to disk
            // after all (a failure after the rename): then it is listed and must stay.
            let listed = fs::read(&pj)
                .ok()
                .and_then(|b| serde_json::from_slice::<Vec<String>>(&b).ok())
                .is_none_or(|l| l.contains(&part.name));
            if !listed {
                let _ = fs::remove_dir_all(&dst);
            }
            return Err(Error::io("cannot write", &pj, e));
        }
        self.replace(srcs, Some(part));
        for s in srcs {
            if let PartData::File(fp) = &s.data {
                // Open searches keep their file handles; unlinking under them is fine on Unix.
                strata_fsutil::remove_dir_all_durable(&fp.path).map_err(io("cannot remove", &fp.path))?;
            }
        }
        metrics::counter!("strata_mergeset_merges_total").increment(1);
        tracing::debug!(items = n, parts = srcs.len(), took = ?started.elapsed(), "mergeset merge done");
        Ok(())
    }

    fn replace(&self, srcs: &[Arc<Part>], with: Option<Arc<Part>>) {
        let mut parts = self.parts.write();
        parts.retain(|p| !srcs.iter().any(|s| Arc::ptr_eq(s, p)));
        if let Some(p) = with {
            parts.push(p);
        }
    }
}

/// Merges parts in item order into blocks of at most 64 KiB, passing each through the hook.
fn merge_parts(
    srcs: &[Arc<Part>],
    prepare: Option<&PrepareBlock>,
    sink: &mut dyn FnMut(&Items) -> Result<()>,
) -> Result<()> {
    // Merges read each block once: no cache, so they do not evict the blocks searches use.
    let mut ts = TableSearch::new(srcs.to_vec(), None);
    ts.seek(b"")?;
    let mut block = Items::with_capacity(MAX_BLOCK_BYTES);
    let mut emit = |block: &mut Items| -> Result<()> {
        if block.is_empty() {
            return Ok(());
        }
        let out = prepare.and_then(|f| f(block)).filter(|o| {
            let ok = !o.is_empty() && o.is_sorted() && o.first() >= block.first() && o.last() <= block.last();
            if !ok {
                tracing::warn!("mergeset: prepare-block hook broke the block contract; keeping the block as is");
            }
            ok
        });
        sink(out.as_ref().unwrap_or(block))?;
        block.clear();
        Ok(())
    };
    while let Some(it) = ts.item() {
        if !block.is_empty() && block.data_len() + it.len() > MAX_BLOCK_BYTES {
            emit(&mut block)?;
        }
        block.push(it);
        ts.advance()?;
    }
    emit(&mut block)
}
