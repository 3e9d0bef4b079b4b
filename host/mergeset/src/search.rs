//! Parts as seen by searches and merges, and the cursor that walks them in order.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

use crate::error::Result;
use crate::items::Items;
use crate::part::FilePart;

static NEXT_UID: AtomicU64 = AtomicU64::new(1);

/// Where a part's items live.
pub(crate) enum PartData {
    /// A sorted in-memory part: one block holding everything.
    Mem(Arc<Items>),
    /// A part directory.
    File(FilePart),
}

/// A searchable, immutable part.
pub(crate) struct Part {
    /// Unique per opened part; keys the block cache.
    pub uid: u64,
    pub data: PartData,
    pub created: Instant,
    /// Directory name for file parts.
    pub name: String,
}

impl Part {
    pub fn mem(items: Items) -> Part {
        Part {
            uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
            data: PartData::Mem(Arc::new(items)),
            created: Instant::now(),
            name: String::new(),
        }
    }

    pub fn file(fp: FilePart, name: String) -> Part {
        Part {
            uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
            data: PartData::File(fp),
            created: Instant::now(),
            name,
        }
    }

    pub fn is_mem(&self) -> bool {
        matches!(self.data, PartData::Mem(_))
    }

    pub fn num_blocks(&self) -> usize {
        match &self.data {
            PartData::Mem(it) => usize::from(!it.is_empty()),
            PartData::File(fp) => fp.headers.len(),
        }
    }

    fn block_first(&self, i: usize) -> &[u8] {
        match &self.data {
            PartData::Mem(it) => it.get(0),
            PartData::File(fp) => &fp.headers[i].first_item,
        }
    }

    pub fn size_bytes(&self) -> u64 {
        match &self.data {
            PartData::Mem(it) => it.data_len() as u64,
            PartData::File(fp) => fp.size_bytes,
        }
    }

    pub fn items_count(&self) -> u64 {
        match &self.data {
            PartData::Mem(it) => it.len() as u64,
            PartData::File(fp) => fp.meta.items_count,
        }
    }

    fn load(&self, i: usize, cache: Option<&BlockCache>) -> Result<Arc<Items>> {
        match &self.data {
            PartData::Mem(it) => Ok(it.clone()),
            PartData::File(fp) => {
                let key = (self.uid, i as u32);
                if let Some(c) = cache
                    && let Some(b) = c.get(key)
                {
                    return Ok(b);
                }
                let b = Arc::new(fp.read_block(i)?);
                if let Some(c) = cache {
                    c.put(key, b.clone());
                }
                Ok(b)
            }
        }
    }
}

/// Decoded item blocks of file parts, bounded by bytes, evicted first-in first-out (cheap and
/// good enough for index lookups, whose hot blocks are re-inserted as soon as they fall out).
pub(crate) struct BlockCache {
    inner: Mutex<CacheInner>,
    max_bytes: usize,
}

#[derive(Default)]
struct CacheInner {
    map: HashMap<(u64, u32), Arc<Items>>,
    order: VecDeque<(u64, u32)>,
    bytes: usize,
}

impl BlockCache {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            inner: Mutex::new(CacheInner::default()),
            max_bytes,
        }
    }

    fn get(&self, k: (u64, u32)) -> Option<Arc<Items>> {
        self.inner.lock().map.get(&k).cloned()
    }

    fn put(&self, k: (u64, u32), b: Arc<Items>) {
        if self.max_bytes == 0 {
            return;
        }
        let mut c = self.inner.lock();
        let sz = b.heap_bytes();
        if c.map.insert(k, b).is_none() {
            c.order.push_back(k);
            c.bytes += sz;
        }
        while c.bytes > self.max_bytes {
            let Some(old) = c.order.pop_front() else { break };
            if let Some(v) = c.map.remove(&old) {
                c.bytes = c.bytes.saturating_sub(v.heap_bytes());
            }
        }
    }
}

/// A position in one part.
struct Cursor {
    part: Arc<Part>,
    block_idx: usize,
    block: Option<Arc<Items>>,
    pos: usize,
}

impl Cursor {
    fn current(&self) -> Option<&[u8]> {
        self.block.as_ref().map(|b| b.get(self.pos))
    }

    fn seek(&mut self, key: &[u8], cache: Option<&BlockCache>) -> Result<()> {
        let n = self.part.num_blocks();
        self.block = None;
        if n == 0 {
            return Ok(());
        }
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.part.block_first(mid) <= key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut b = lo.saturating_sub(1);
        while b < n {
            let blk = self.part.load(b, cache)?;
            let pos = blk.lower_bound(key);
            if pos < blk.len() {
                self.block_idx = b;
                self.pos = pos;
                self.block = Some(blk);
                return Ok(());
            }
            b += 1;
        }
        Ok(())
    }

    fn advance(&mut self, cache: Option<&BlockCache>) -> Result<()> {
        let Some(blk) = &self.block else { return Ok(()) };
        self.pos += 1;
        if self.pos < blk.len() {
            return Ok(());
        }
        self.block = None;
        self.block_idx += 1;
        self.pos = 0;
        if self.block_idx < self.part.num_blocks() {
            self.block = Some(self.part.load(self.block_idx, cache)?);
        }
        Ok(())
    }
}

/// Walks the items of a snapshot of parts in byte order (duplicates across parts are kept).
/// Start with [`TableSearch::seek`]; the parts stay alive as long as the search does.
pub struct TableSearch {
    cursors: Vec<Cursor>,
    /// Cursors positioned on an item; exhausted ones are left out so that parts without
    /// items in the scanned range (often most small parts) cost nothing per step.
    active: Vec<usize>,
    cur: Option<usize>,
    cache: Option<Arc<BlockCache>>,
}

impl TableSearch {
    pub(crate) fn new(parts: Vec<Arc<Part>>, cache: Option<Arc<BlockCache>>) -> Self {
        let cursors = parts
            .into_iter()
            .map(|part| Cursor {
                part,
                block_idx: 0,
                block: None,
                pos: 0,
            })
            .collect();
        Self {
            cursors,
            active: Vec::new(),
            cur: None,
            cache,
        }
    }

    fn pick(&mut self) {
        let cursors = &self.cursors;
        self.active.retain(|&i| cursors[i].current().is_some());
        let mut best: Option<(usize, &[u8])> = None;
        for &i in &self.active {
            if let Some(it) = cursors[i].current()
                && best.is_none_or(|(_, b)| it < b)
            {
                best = Some((i, it));
            }
        }
        self.cur = best.map(|b| b.0);
    }

    /// Positions at the first item `>= key`.
    pub fn seek(&mut self, key: &[u8]) -> Result<()> {
        let cache = self.cache.clone();
        for c in &mut self.cursors {
            c.seek(key, cache.as_deref())?;
        }
        self.active = (0..self.cursors.len()).collect();
        self.pick();
        Ok(())
    }

    /// The current item, or `None` past the end.
    pub fn item(&self) -> Option<&[u8]> {
        self.cur.and_then(|i| self.cursors[i].current())
    }

    /// Moves to the next item.
    pub fn advance(&mut self) -> Result<()> {
        if let Some(i) = self.cur {
            let cache = self.cache.clone();
            self.cursors[i].advance(cache.as_deref())?;
            self.pick();
        }
        Ok(())
    }

    /// The first item starting with `prefix`, if any.
    pub fn first_item_with_prefix(&mut self, prefix: &[u8]) -> Result<Option<&[u8]>> {
        self.seek(prefix)?;
        Ok(self.item().filter(|it| it.starts_with(prefix)))
    }

    /// True if some item equals `key` exactly.
    pub fn contains(&mut self, key: &[u8]) -> Result<bool> {
        self.seek(key)?;
        Ok(self.item() == Some(key))
    }

    /// Calls `f` on each item starting with `prefix`, in order, until it returns false.
    pub fn for_each_with_prefix(&mut self, prefix: &[u8], mut f: impl FnMut(&[u8]) -> bool) -> Result<()> {
        self.seek(prefix)?;
        while let Some(it) = self.item() {
            if !it.starts_with(prefix) || !f(it) {
                break;
            }
            self.advance()?;
        }
        Ok(())
    }
}
