//! Reading parts: a [`Part`] over files or in-memory buffers, searched by TSID and time range
//! through its metaindex and index blocks, and a [`PartCursor`] that walks every block in order.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::writer::write_files;
use super::{
    INDEX_FILE, METADATA_FILE, METAINDEX_FILE, METAINDEX_ROW_SIZE, MetaindexRow, PartBuffers, PartHeader,
    TIMESTAMPS_FILE, VALUES_FILE,
};
use crate::data::block::{self, BLOCK_HEADER_SIZE, BlockHeader, MAX_BLOCK_SIZE};
use crate::encoding;
use crate::error::{Result, StorageError};
use crate::tsid::{TimeRange, Tsid};

/// Decoded index blocks kept per part before the cache is emptied.
const INDEX_CACHE_ENTRIES: usize = 256;

enum Source {
    Mem {
        index: Vec<u8>,
        metaindex: Vec<u8>,
        timestamps: Vec<u8>,
        values: Vec<u8>,
    },
    File {
        index: File,
        timestamps: File,
        values: File,
    },
    /// Only while an in-memory part is being set up.
    Empty,
}

/// A readable part.
pub struct Part {
    path: PathBuf,
    header: PartHeader,
    metaindex: Vec<MetaindexRow>,
    src: Source,
    size_bytes: u64,
    file_sizes: [u64; 3],
    cache: Mutex<HashMap<u64, Arc<Vec<BlockHeader>>>>,
    reads: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Part")
            .field("path", &self.path)
            .field("header", &self.header)
            .finish()
    }
}

impl Part {
    /// Opens an in-memory part; `label` names it in errors.
    pub fn from_buffers(label: PathBuf, b: PartBuffers) -> Result<Part> {
        let size = (b.index.len() + b.metaindex.len() + b.timestamps.len() + b.values.len()) as u64;
        let file_sizes = [b.index.len() as u64, b.timestamps.len() as u64, b.values.len() as u64];
        let metaindex = b.metaindex;
        let mut part = Self::init(label, b.header, &metaindex, Source::Empty, size, file_sizes)?;
        part.src = Source::Mem {
            index: b.index,
            metaindex,
            timestamps: b.timestamps,
            values: b.values,
        };
        Ok(part)
    }

    /// Opens a part directory, decoding metadata.json and the metaindex and checking every
    /// index block. Any damage is `StorageError::Corrupt` naming `dir`.
    pub fn open(dir: &Path) -> Result<Part> {
        let read =
            |name: &str| std::fs::read(dir.join(name)).map_err(|e| StorageError::io("cannot read", dir.join(name), e));
        let meta = read(METADATA_FILE)?;
        let header: PartHeader =
            serde_json::from_slice(&meta).map_err(|e| StorageError::corrupt(dir, format!("metadata.json: {e}")))?;
        let metaindex = read(METAINDEX_FILE)?;
        let open = |name: &str| -> Result<(File, u64)> {
            let p = dir.join(name);
            let f = File::open(&p).map_err(|e| StorageError::io("cannot open", &p, e))?;
            let len = f.metadata().map_err(|e| StorageError::io("cannot stat", &p, e))?.len();
            Ok((f, len))
        };
        let (index, il) = open(INDEX_FILE)?;
        let (timestamps, tl) = open(TIMESTAMPS_FILE)?;
        let (values, vl) = open(VALUES_FILE)?;
        let size = il + tl + vl + metaindex.len() as u64 + meta.len() as u64;
        let part = Self::init(
            dir.to_path_buf(),
            header,
            &metaindex,
            Source::File {
                index,
                timestamps,
                values,
            },
            size,
            [il, tl, vl],
        )?;
        part.verify_index()?;
        Ok(part)
    }

    fn init(
        path: PathBuf,
        header: PartHeader,
        metaindex_z: &[u8],
        src: Source,
        size_bytes: u64,
        file_sizes: [u64; 3],
    ) -> Result<Part> {
        let corrupt = |d: String| StorageError::corrupt(&path, d);
        // Every index block takes at least a zstd frame header (> 8 bytes) in index.bin, which
        // bounds the metaindex by the file size whatever metadata.json claims.
        let max_rows = (header.blocks_count).min(file_sizes[0] / 8 + 1) as usize;
        let limit = max_rows.saturating_mul(METAINDEX_ROW_SIZE) + 1024;
        let raw = encoding::decompress(metaindex_z, limit).map_err(|e| corrupt(format!("metaindex.bin: {e}")))?;
        if raw.len() % METAINDEX_ROW_SIZE != 0 {
            return Err(corrupt(format!(
                "metaindex.bin has {} bytes, not whole rows",
                raw.len()
            )));
        }
        let mut rows: Vec<MetaindexRow> = Vec::with_capacity(raw.len() / METAINDEX_ROW_SIZE);
        let mut blocks = 0u64;
        for chunk in raw.chunks(METAINDEX_ROW_SIZE) {
            let row = MetaindexRow::unmarshal(chunk).ok_or_else(|| corrupt("metaindex row".into()))?;
            if let Some(prev) = rows.last()
                && prev.tsid > row.tsid
            {
                return Err(corrupt("metaindex rows are not sorted by TSID".into()));
            }
            if row.index_block_offset.saturating_add(u64::from(row.index_block_size)) > file_sizes[0] {
                return Err(corrupt("metaindex row points past the end of index.bin".into()));
            }
            blocks += u64::from(row.block_headers_count);
            rows.push(row);
        }
        if blocks != header.blocks_count {
            return Err(corrupt(format!(
                "metaindex lists {blocks} blocks, metadata.json {}",
                header.blocks_count
            )));
        }
        Ok(Part {
            path,
            header,
            metaindex: rows,
            src,
            size_bytes,
            file_sizes,
            cache: Mutex::new(HashMap::new()),
            reads: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn verify_index(&self) -> Result<()> {
        let mut rows = 0u64;
        for i in 0..self.metaindex.len() {
            for h in self.index_block(i)?.iter() {
                rows += u64::from(h.rows_count);
            }
        }
        if rows != self.header.rows_count {
            return Err(StorageError::corrupt(
                &self.path,
                format!("index lists {rows} rows, metadata.json {}", self.header.rows_count),
            ));
        }
        self.cache.lock().clear();
        Ok(())
    }

    /// Whether the part lives in memory.
    pub fn is_in_memory(&self) -> bool {
        matches!(self.src, Source::Mem { .. })
    }

    /// Writes an in-memory part's buffers as the new part directory `dir`. Errors for file parts.
    pub fn write_in_memory_to(&self, dir: &Path) -> Result<()> {
        match &self.src {
            Source::Mem {
                index,
                metaindex,
                timestamps,
                values,
            } => write_files(dir, &self.header, index, metaindex, timestamps, values),
            _ => Err(StorageError::InvalidInput(format!(
                "{} is not an in-memory part",
                self.path.display()
            ))),
        }
    }

    /// The directory (or, in memory, the label) used in errors.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// metadata.json.
    pub fn header(&self) -> &PartHeader {
        &self.header
    }

    /// Bytes of the part's files.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Number of index blocks.
    pub fn index_blocks(&self) -> usize {
        self.metaindex.len()
    }

    /// The metaindex.
    pub fn metaindex(&self) -> &[MetaindexRow] {
        &self.metaindex
    }

    /// How many reads of index.bin, timestamps.bin and values.bin this part has served (for
    /// tests and diagnostics: a search must read only what it needs).
    pub fn reads(&self) -> u64 {
        self.reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn read_at(&self, which: usize, off: u64, size: u32) -> Result<Vec<u8>> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let end = off
            .checked_add(u64::from(size))
            .filter(|&e| e <= self.file_sizes[which]);
        if end.is_none() {
            return Err(StorageError::corrupt(
                &self.path,
                format!("read of {size} bytes at {off} past end of file"),
            ));
        }
        let (o, n) = (off as usize, size as usize);
        match &self.src {
            Source::Mem {
                index,
                timestamps,
                values,
                ..
            } => {
                let b = [index, timestamps, values][which];
                b.get(o..o + n)
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| StorageError::corrupt(&self.path, "read past end of buffer"))
            }
            Source::Empty => Err(StorageError::corrupt(&self.path, "part has no data")),
            Source::File {
                index,
                timestamps,
                values,
            } => {
                let f = [index, timestamps, values][which];
                let mut buf = vec![0u8; n];
                f.read_exact_at(&mut buf, off).map_err(|e| {
                    let name = [INDEX_FILE, TIMESTAMPS_FILE, VALUES_FILE][which];
                    StorageError::io("cannot read", self.path.join(name), e)
                })?;
                Ok(buf)
            }
        }
    }

    /// The decoded headers of index block `i` (cached).
    pub fn index_block(&self, i: usize) -> Result<Arc<Vec<BlockHeader>>> {
        let row = self
            .metaindex
            .get(i)
            .ok_or_else(|| StorageError::corrupt(&self.path, "index block out of range"))?;
        if let Some(hs) = self.cache.lock().get(&row.index_block_offset) {
            return Ok(hs.clone());
        }
        let corrupt =
            |d: String| StorageError::corrupt(&self.path, format!("index.bin at {}: {d}", row.index_block_offset));
        let z = self.read_at(0, row.index_block_offset, row.index_block_size)?;
        let n = row.block_headers_count as usize;
        // Index blocks are flushed at 64 KiB; allow twice that, like the block limits.
        let raw = encoding::decompress(
            &z,
            n.saturating_mul(BLOCK_HEADER_SIZE)
                .min(2 * MAX_BLOCK_SIZE + BLOCK_HEADER_SIZE),
        )
        .map_err(corrupt)?;
        if raw.len() != n * BLOCK_HEADER_SIZE || n == 0 {
            return Err(corrupt(format!("{} bytes for {n} headers", raw.len())));
        }
        let mut hs: Vec<BlockHeader> = Vec::with_capacity(n);
        for chunk in raw.chunks(BLOCK_HEADER_SIZE) {
            let h = BlockHeader::unmarshal(chunk).map_err(corrupt)?;
            if h.timestamps_offset.saturating_add(u64::from(h.timestamps_size)) > self.file_sizes[1]
                || h.values_offset.saturating_add(u64::from(h.values_size)) > self.file_sizes[2]
            {
                return Err(corrupt("block points past the end of its file".into()));
            }
            if let Some(prev) = hs.last()
                && (prev.tsid, prev.min_timestamp) > (h.tsid, h.min_timestamp)
            {
                return Err(corrupt("block headers out of order".into()));
            }
            hs.push(h);
        }
        if hs[0].tsid != row.tsid {
            return Err(corrupt("first header does not match its metaindex row".into()));
        }
        let hs = Arc::new(hs);
        let mut cache = self.cache.lock();
        if cache.len() >= INDEX_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(row.index_block_offset, hs.clone());
        Ok(hs)
    }

    /// Decodes one block's samples, appending to `ts` and `values`.
    pub fn read_block(&self, h: &BlockHeader, ts: &mut Vec<i64>, values: &mut Vec<f64>) -> Result<()> {
        let tb = self.read_at(1, h.timestamps_offset, h.timestamps_size)?;
        let vb = self.read_at(2, h.values_offset, h.values_size)?;
        block::decode_block(h, &tb, &vb, ts, values)
            .map_err(|d| StorageError::corrupt(&self.path, format!("block of {:?}: {d}", h.tsid)))
    }

    /// Appends every sample of `tsid` within `tr` (unsorted across blocks, which may overlap).
    /// Reads only the index blocks and data blocks that can hold such samples.
    pub fn search_series(&self, tsid: &Tsid, tr: TimeRange, ts: &mut Vec<i64>, values: &mut Vec<f64>) -> Result<()> {
        if !tr.overlaps(self.header.min_timestamp, self.header.max_timestamp) || self.header.blocks_count == 0 {
            return Ok(());
        }
        // Blocks of one TSID may start in the index block before the first row naming it.
        let pp = self.metaindex.partition_point(|r| r.tsid < *tsid);
        let mut i = pp.saturating_sub(1);
        while i < self.metaindex.len() {
            let row = &self.metaindex[i];
            if row.tsid > *tsid {
                break;
            }
            i += 1;
            if !tr.overlaps(row.min_timestamp, row.max_timestamp) {
                continue;
            }
            let hs = self.index_block(i - 1)?;
            let start = hs.partition_point(|h| h.tsid < *tsid);
            for h in &hs[start..] {
                if h.tsid != *tsid {
                    break;
                }
                if !tr.overlaps(h.min_timestamp, h.max_timestamp) {
                    continue;
                }
                let (t0, v0) = (ts.len(), values.len());
                self.read_block(h, ts, values)?;
                if h.min_timestamp < tr.min || h.max_timestamp > tr.max {
                    retain_in_range(ts, values, t0, v0, tr);
                }
            }
        }
        Ok(())
    }
}

fn retain_in_range(ts: &mut Vec<i64>, values: &mut Vec<f64>, t0: usize, v0: usize, tr: TimeRange) {
    let mut w = 0;
    for r in 0..ts.len() - t0 {
        let t = ts[t0 + r];
        if tr.contains(t) {
            ts[t0 + w] = t;
            values[v0 + w] = values[v0 + r];
            w += 1;
        }
    }
    ts.truncate(t0 + w);
    values.truncate(v0 + w);
}

/// Visits every block header of a part in order, one index block at a time (merges).
pub struct PartCursor {
    part: Arc<Part>,
    next_row: usize,
    headers: Arc<Vec<BlockHeader>>,
    pos: usize,
}

impl PartCursor {
    /// A cursor at the first block.
    pub fn new(part: Arc<Part>) -> Result<PartCursor> {
        let mut c = PartCursor {
            part,
            next_row: 0,
            headers: Arc::new(Vec::new()),
            pos: 0,
        };
        c.fill()?;
        Ok(c)
    }

    fn fill(&mut self) -> Result<()> {
        while self.pos >= self.headers.len() && self.next_row < self.part.index_blocks() {
            self.headers = self.part.index_block(self.next_row)?;
            self.next_row += 1;
            self.pos = 0;
        }
        Ok(())
    }

    /// The next block's header, if any.
    pub fn peek(&self) -> Option<&BlockHeader> {
        self.headers.get(self.pos)
    }

    /// The part read.
    pub fn part(&self) -> &Arc<Part> {
        &self.part
    }

    /// Moves past the current block.
    pub fn advance(&mut self) -> Result<()> {
        self.pos += 1;
        self.fill()
    }
}
