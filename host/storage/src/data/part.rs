//! Parts: immutable sets of blocks sorted by (TSID, first timestamp), on disk or in memory
//! (FORMATS.md §1.6). Files: `metadata.json`, `index.bin` (zstd index blocks of block headers,
//! ≤ 64 KiB each before compression), `metaindex.bin` (one zstd frame of metaindex rows),
//! `timestamps.bin`, `values.bin`.
//!
//! An in-memory part holds exactly the bytes its files would hold, so one reader serves both and
//! flushing a single in-memory part is a plain write of its buffers.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::block::{self, BLOCK_HEADER_SIZE, BlockHeader, MAX_BLOCK_SIZE, MAX_ROWS_PER_BLOCK};
use crate::encoding::{self, varint::BeReader};
use crate::error::{Result, StorageError};
use crate::tsid::{TSID_SIZE, TimeRange, Tsid};

/// File names inside a part directory.
pub const METADATA_FILE: &str = "metadata.json";
/// Index blocks.
pub const INDEX_FILE: &str = "index.bin";
/// The metaindex.
pub const METAINDEX_FILE: &str = "metaindex.bin";
/// Encoded timestamps.
pub const TIMESTAMPS_FILE: &str = "timestamps.bin";
/// Encoded values.
pub const VALUES_FILE: &str = "values.bin";
/// Every file of a part.
pub const PART_FILES: [&str; 5] = [METADATA_FILE, INDEX_FILE, METAINDEX_FILE, TIMESTAMPS_FILE, VALUES_FILE];

const METAINDEX_ROW_SIZE: usize = TSID_SIZE + 4 + 8 + 8 + 8 + 4;
/// Distinct timestamp blocks remembered by a writer (about 5 MiB) before it starts over.
const MAX_SEEN_TS: usize = 100_000;

#[derive(Hash, PartialEq, Eq)]
struct TsKey {
    h1: u64,
    h2: u64,
    len: u32,
    mt: u8,
    min: i64,
    max: i64,
    rows: u32,
}

/// The keys hashed into `seen_ts` already are hashes: mixing them is enough.
#[derive(Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }

    fn write_u8(&mut self, v: u8) {
        self.write_u64(u64::from(v));
    }

    fn write_i64(&mut self, v: i64) {
        self.write_u64(v as u64);
    }
}

/// Decoded index blocks kept per part before the cache is emptied.
const INDEX_CACHE_ENTRIES: usize = 256;

/// `metadata.json` (Go-style field names, as the format this follows).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PartHeader {
    /// Samples in the part.
    pub rows_count: u64,
    /// Blocks in the part.
    pub blocks_count: u64,
    /// Smallest timestamp.
    pub min_timestamp: i64,
    /// Largest timestamp.
    pub max_timestamp: i64,
    /// The dedup interval (ms) in force when the part was written.
    pub min_dedup_interval: i64,
}

/// One row per index block: where it is and what it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaindexRow {
    /// TSID of the first block header in the index block.
    pub tsid: Tsid,
    /// Headers in the index block.
    pub block_headers_count: u32,
    /// Smallest timestamp of its blocks.
    pub min_timestamp: i64,
    /// Largest timestamp of its blocks.
    pub max_timestamp: i64,
    /// Offset in index.bin.
    pub index_block_offset: u64,
    /// Compressed size in index.bin.
    pub index_block_size: u32,
}

impl MetaindexRow {
    fn marshal(&self, dst: &mut Vec<u8>) {
        self.tsid.marshal(dst);
        dst.extend_from_slice(&self.block_headers_count.to_be_bytes());
        dst.extend_from_slice(&self.min_timestamp.to_be_bytes());
        dst.extend_from_slice(&self.max_timestamp.to_be_bytes());
        dst.extend_from_slice(&self.index_block_offset.to_be_bytes());
        dst.extend_from_slice(&self.index_block_size.to_be_bytes());
    }

    fn unmarshal(src: &[u8]) -> Option<MetaindexRow> {
        let (tsid, rest) = Tsid::unmarshal(src)?;
        let mut r = BeReader::new(rest);
        Some(MetaindexRow {
            tsid,
            block_headers_count: r.u32()?,
            min_timestamp: r.u64()? as i64,
            max_timestamp: r.u64()? as i64,
            index_block_offset: r.u64()?,
            index_block_size: r.u32()?,
        })
    }
}

/// The zstd level of a part's index and metaindex, from its rows per block (FORMATS.md §1.9).
pub fn compress_level(rows: u64, blocks: u64) -> i32 {
    let per_block = rows / blocks.max(1);
    match per_block {
        0..=10 => -5,
        11..=50 => -2,
        51..=200 => -1,
        201..=500 => 1,
        501..=1000 => 2,
        1001..=2000 => 3,
        2001..=4000 => 4,
        _ => 5,
    }
}

enum Sink {
    Mem(Vec<u8>),
    File { w: BufWriter<File>, path: PathBuf },
}

impl Sink {
    fn create(dir: &Path, name: &str) -> Result<Sink> {
        let path = dir.join(name);
        let f = File::create(&path).map_err(|e| StorageError::io("cannot create", &path, e))?;
        Ok(Sink::File {
            w: BufWriter::with_capacity(256 * 1024, f),
            path,
        })
    }

    fn write(&mut self, b: &[u8]) -> Result<()> {
        match self {
            Sink::Mem(v) => {
                v.extend_from_slice(b);
                Ok(())
            }
            Sink::File { w, path } => w.write_all(b).map_err(|e| StorageError::io("cannot write", &*path, e)),
        }
    }

    fn finish(self) -> Result<Vec<u8>> {
        match self {
            Sink::Mem(v) => Ok(v),
            Sink::File { w, path } => {
                let f = w
                    .into_inner()
                    .map_err(|e| StorageError::io("cannot write", &path, e.into_error()))?;
                f.sync_all().map_err(|e| StorageError::io("cannot fsync", &path, e))?;
                Ok(Vec::new())
            }
        }
    }
}

/// The five files of an in-memory part.
#[derive(Debug, Default)]
pub struct PartBuffers {
    /// metadata.json's contents.
    pub header: PartHeader,
    /// index.bin.
    pub index: Vec<u8>,
    /// metaindex.bin.
    pub metaindex: Vec<u8>,
    /// timestamps.bin.
    pub timestamps: Vec<u8>,
    /// values.bin.
    pub values: Vec<u8>,
}

/// Writes blocks, in (TSID, first timestamp) order, into a new part.
pub struct PartWriter {
    dir: Option<PathBuf>,
    ts: Sink,
    values: Sink,
    index: Sink,
    ts_off: u64,
    values_off: u64,
    index_off: u64,
    level: i32,
    header: PartHeader,
    index_block: Vec<u8>,
    cur_row: Option<MetaindexRow>,
    metaindex: Vec<u8>,
    last_tsid: Option<(Tsid, i64)>,
    /// Timestamp blocks already written, by content: series scraped from one target share
    /// timestamps, and their blocks need not be adjacent.
    seen_ts: HashMap<TsKey, (u64, u32), std::hash::BuildHasherDefault<KeyHasher>>,
    tb: Vec<u8>,
    vb: Vec<u8>,
}

impl PartWriter {
    /// A writer building an in-memory part. `level` is the index compression level.
    pub fn in_memory(level: i32) -> PartWriter {
        Self::with_sinks(
            None,
            Sink::Mem(Vec::new()),
            Sink::Mem(Vec::new()),
            Sink::Mem(Vec::new()),
            level,
        )
    }

    /// A writer creating the part directory `dir` (which must not exist yet).
    pub fn create(dir: &Path, level: i32) -> Result<PartWriter> {
        std::fs::create_dir(dir).map_err(|e| StorageError::io("cannot create part dir", dir, e))?;
        let ts = Sink::create(dir, TIMESTAMPS_FILE)?;
        let values = Sink::create(dir, VALUES_FILE)?;
        let index = Sink::create(dir, INDEX_FILE)?;
        Ok(Self::with_sinks(Some(dir.to_path_buf()), ts, values, index, level))
    }

    fn with_sinks(dir: Option<PathBuf>, ts: Sink, values: Sink, index: Sink, level: i32) -> PartWriter {
        PartWriter {
            dir,
            ts,
            values,
            index,
            ts_off: 0,
            values_off: 0,
            index_off: 0,
            level,
            header: PartHeader {
                min_timestamp: i64::MAX,
                max_timestamp: i64::MIN,
                ..Default::default()
            },
            index_block: Vec::new(),
            cur_row: None,
            metaindex: Vec::new(),
            last_tsid: None,
            seen_ts: HashMap::default(),
            tb: Vec::new(),
            vb: Vec::new(),
        }
    }

    /// Appends the samples of one series (sorted by timestamp), split into blocks of at most
    /// [`MAX_ROWS_PER_BLOCK`] rows.
    pub fn write_series(&mut self, tsid: &Tsid, ts: &[i64], values: &[f64]) -> Result<()> {
        for (t, v) in ts.chunks(MAX_ROWS_PER_BLOCK).zip(values.chunks(MAX_ROWS_PER_BLOCK)) {
            self.write_block(tsid, t, v)?;
        }
        Ok(())
    }

    /// Appends one block. Blocks must come in (TSID, first timestamp) order.
    pub fn write_block(&mut self, tsid: &Tsid, ts: &[i64], values: &[f64]) -> Result<()> {
        if let Some(last) = self.last_tsid
            && last > (*tsid, ts.first().copied().unwrap_or(i64::MIN))
        {
            return Err(StorageError::InvalidInput(format!(
                "blocks out of order: {tsid:?} after {:?}",
                last.0
            )));
        }
        self.tb.clear();
        self.vb.clear();
        let mut h = block::encode_block(tsid, ts, values, &mut self.tb, &mut self.vb)?;
        self.last_tsid = Some((*tsid, h.min_timestamp));
        // Series scraped together share timestamps: point at the earlier copy. The key is two
        // independent 64-bit hashes plus the header fields, so a false match is not a concern.
        let key = TsKey {
            h1: xxhash_rust::xxh64::xxh64(&self.tb, 0),
            h2: xxhash_rust::xxh64::xxh64(&self.tb, 0x9e37_79b9_7f4a_7c15),
            len: self.tb.len() as u32,
            mt: h.timestamps_marshal_type as u8,
            min: h.min_timestamp,
            max: h.max_timestamp,
            rows: h.rows_count,
        };
        if let Some(&(off, size)) = self.seen_ts.get(&key) {
            h.timestamps_offset = off;
            h.timestamps_size = size;
        } else {
            h.timestamps_offset = self.ts_off;
            self.ts.write(&self.tb)?;
            self.ts_off += self.tb.len() as u64;
            if self.seen_ts.len() >= MAX_SEEN_TS {
                self.seen_ts.clear();
            }
            self.seen_ts.insert(key, (h.timestamps_offset, h.timestamps_size));
        }
        h.values_offset = self.values_off;
        self.values.write(&self.vb)?;
        self.values_off += self.vb.len() as u64;

        let hdr = &mut self.header;
        hdr.rows_count += u64::from(h.rows_count);
        hdr.blocks_count += 1;
        hdr.min_timestamp = hdr.min_timestamp.min(h.min_timestamp);
        hdr.max_timestamp = hdr.max_timestamp.max(h.max_timestamp);

        if self.index_block.len() + BLOCK_HEADER_SIZE > MAX_BLOCK_SIZE {
            self.flush_index_block()?;
        }
        h.marshal(&mut self.index_block);
        let row = self.cur_row.get_or_insert(MetaindexRow {
            tsid: *tsid,
            block_headers_count: 0,
            min_timestamp: i64::MAX,
            max_timestamp: i64::MIN,
            index_block_offset: 0,
            index_block_size: 0,
        });
        row.block_headers_count += 1;
        row.min_timestamp = row.min_timestamp.min(h.min_timestamp);
        row.max_timestamp = row.max_timestamp.max(h.max_timestamp);
        Ok(())
    }

    fn flush_index_block(&mut self) -> Result<()> {
        let Some(mut row) = self.cur_row.take() else {
            return Ok(());
        };
        let z = encoding::compress(&self.index_block, self.level);
        self.index_block.clear();
        row.index_block_offset = self.index_off;
        row.index_block_size = z.len() as u32;
        self.index.write(&z)?;
        self.index_off += z.len() as u64;
        row.marshal(&mut self.metaindex);
        Ok(())
    }

    /// Blocks written so far.
    pub fn blocks(&self) -> u64 {
        self.header.blocks_count
    }

    /// Finishes the part. On disk: files fsynced, metadata.json written last, the directory
    /// fsynced; returns empty buffers. In memory: returns the part's buffers.
    pub fn finish(mut self, min_dedup_interval: i64) -> Result<PartBuffers> {
        self.flush_index_block()?;
        self.header.min_dedup_interval = min_dedup_interval;
        if self.header.blocks_count == 0 {
            self.header.min_timestamp = 0;
            self.header.max_timestamp = 0;
        }
        let metaindex = encoding::compress(&self.metaindex, self.level);
        let header = self.header;
        let timestamps = self.ts.finish()?;
        let values = self.values.finish()?;
        let index = self.index.finish()?;
        match &self.dir {
            None => Ok(PartBuffers {
                header,
                index,
                metaindex,
                timestamps,
                values,
            }),
            Some(dir) => {
                let write = |name: &str, b: &[u8]| -> Result<()> {
                    let p = dir.join(name);
                    let mut f = File::create(&p).map_err(|e| StorageError::io("cannot create", &p, e))?;
                    f.write_all(b).map_err(|e| StorageError::io("cannot write", &p, e))?;
                    f.sync_all().map_err(|e| StorageError::io("cannot fsync", &p, e))
                };
                write(METAINDEX_FILE, &metaindex)?;
                let json = serde_json::to_vec_pretty(&header).unwrap_or_default();
                write(METADATA_FILE, &json)?;
                strata_fsutil::fsync_dir(dir).map_err(|e| StorageError::io("cannot fsync", dir, e))?;
                Ok(PartBuffers {
                    header,
                    ..Default::default()
                })
            }
        }
    }
}

/// Writes a part's files into the new directory `dir` (fsynced, metadata.json last).
fn write_files(
    dir: &Path,
    header: &PartHeader,
    index: &[u8],
    metaindex: &[u8],
    timestamps: &[u8],
    values: &[u8],
) -> Result<()> {
    std::fs::create_dir(dir).map_err(|e| StorageError::io("cannot create part dir", dir, e))?;
    let json = serde_json::to_vec_pretty(header).unwrap_or_default();
    for (name, data) in [
        (TIMESTAMPS_FILE, timestamps),
        (VALUES_FILE, values),
        (INDEX_FILE, index),
        (METAINDEX_FILE, metaindex),
        (METADATA_FILE, &json[..]),
    ] {
        let p = dir.join(name);
        let mut f = File::create(&p).map_err(|e| StorageError::io("cannot create", &p, e))?;
        f.write_all(data).map_err(|e| StorageError::io("cannot write", &p, e))?;
        f.sync_all().map_err(|e| StorageError::io("cannot fsync", &p, e))?;
    }
    strata_fsutil::fsync_dir(dir).map_err(|e| StorageError::io("cannot fsync", dir, e))
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsid::Tenant;

    fn tsid(i: u64) -> Tsid {
        Tsid {
            tenant: Tenant::default(),
            metric_group_id: i / 10,
            job_id: 1,
            instance_id: 2,
            metric_id: i,
        }
    }

    fn build(w: &mut PartWriter, series: u64, rows: i64) {
        for s in 0..series {
            let ts: Vec<i64> = (0..rows).map(|i| 1_000_000 + i * 15_000).collect();
            let vals: Vec<f64> = (0..rows).map(|i| (s as f64) * 0.5 + i as f64).collect();
            w.write_series(&tsid(s), &ts, &vals).unwrap();
        }
    }

    #[test]
    fn mem_and_file_parts_agree() {
        let dir = tempfile::tempdir().unwrap();
        let mut mw = PartWriter::in_memory(1);
        build(&mut mw, 2000, 20);
        let mem = Part::from_buffers("mem".into(), mw.finish(0).unwrap()).unwrap();
        assert!(mem.index_blocks() > 1, "several index blocks expected");
        let pdir = dir.path().join("0000000000000001");
        let mut fw = PartWriter::create(&pdir, 1).unwrap();
        build(&mut fw, 2000, 20);
        fw.finish(0).unwrap();
        let file = Part::open(&pdir).unwrap();
        assert_eq!(mem.header(), file.header());
        assert_eq!(file.header().rows_count, 40_000);
        let tr = TimeRange {
            min: 1_000_000 + 15_000 * 5,
            max: 1_000_000 + 15_000 * 9,
        };
        for s in [0, 1, 999, 1999] {
            let (mut t1, mut v1, mut t2, mut v2) = (vec![], vec![], vec![], vec![]);
            mem.search_series(&tsid(s), tr, &mut t1, &mut v1).unwrap();
            file.search_series(&tsid(s), tr, &mut t2, &mut v2).unwrap();
            assert_eq!(t1.len(), 5);
            assert_eq!((&t1, &v1), (&t2, &v2));
            assert_eq!(v1[0], s as f64 * 0.5 + 5.0);
        }
        let (mut t, mut v) = (vec![], vec![]);
        file.search_series(&tsid(5000), tr, &mut t, &mut v).unwrap();
        assert!(t.is_empty());
        // A search reads one index block and one timestamps and one values block; a second
        // search of the same series hits the index cache.
        let fresh = Part::open(&pdir).unwrap();
        let before = fresh.reads();
        fresh.search_series(&tsid(1234), tr, &mut vec![], &mut vec![]).unwrap();
        assert_eq!(fresh.reads() - before, 3);
        fresh.search_series(&tsid(1234), tr, &mut vec![], &mut vec![]).unwrap();
        assert_eq!(fresh.reads() - before, 5);
        // Outside the part's time range, nothing is read.
        let far = TimeRange { min: 0, max: 10 };
        fresh.search_series(&tsid(1235), far, &mut vec![], &mut vec![]).unwrap();
        assert_eq!(fresh.reads() - before, 5);
        // Identical timestamps are stored once.
        let ts_len = std::fs::metadata(pdir.join(TIMESTAMPS_FILE)).unwrap().len();
        assert!(ts_len < 100, "timestamps.bin is {ts_len} bytes");
    }

    #[test]
    fn corrupt_files_are_errors_naming_the_part() {
        let dir = tempfile::tempdir().unwrap();
        let pdir = dir.path().join("0000000000000002");
        let mut fw = PartWriter::create(&pdir, 1).unwrap();
        build(&mut fw, 500, 50);
        fw.finish(0).unwrap();
        for name in PART_FILES {
            let orig = std::fs::read(pdir.join(name)).unwrap();
            let cuts = [0, orig.len() / 2, orig.len().saturating_sub(1)];
            for (k, cut) in cuts.into_iter().enumerate() {
                let mut bad = orig[..cut].to_vec();
                if k == 1 && !bad.is_empty() {
                    // Garble instead of truncating.
                    bad = orig.clone();
                    let mid = bad.len() / 2;
                    for b in &mut bad[mid..(mid + 16).min(orig.len())] {
                        *b ^= 0x5a;
                    }
                }
                std::fs::write(pdir.join(name), &bad).unwrap();
                let res = Part::open(&pdir).and_then(|p| {
                    let tr = TimeRange { min: 0, max: i64::MAX };
                    for s in 0..500 {
                        p.search_series(&tsid(s), tr, &mut vec![], &mut vec![])?;
                    }
                    Ok(())
                });
                match res {
                    Err(e) => assert!(e.to_string().contains("0000000000000002"), "{e}"),
                    // Without checksums a flipped value byte may decode to other values; a
                    // truncated file never goes unnoticed.
                    Ok(()) => assert_eq!(k, 1, "truncated {name} to {cut} bytes was not detected"),
                }
            }
            std::fs::write(pdir.join(name), &orig).unwrap();
        }
        Part::open(&pdir).unwrap();
    }

    #[test]
    fn random_byte_flips_never_panic() {
        let dir = tempfile::tempdir().unwrap();
        let pdir = dir.path().join("0000000000000003");
        let mut fw = PartWriter::create(&pdir, 1).unwrap();
        for s in 0..300u64 {
            let ts: Vec<i64> = (0..40).map(|i| 1_000_000 + i * 15_000 + (i * s as i64) % 7).collect();
            let vals: Vec<f64> = (0..40).map(|i| (s * 1000 + i * i) as f64 / 100.0).collect();
            fw.write_series(&tsid(s), &ts, &vals).unwrap();
        }
        fw.finish(0).unwrap();
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for name in PART_FILES {
            let orig = std::fs::read(pdir.join(name)).unwrap();
            for _ in 0..40 {
                let mut bad = orig.clone();
                for _ in 0..1 + rnd() % 4 {
                    let i = (rnd() % bad.len() as u64) as usize;
                    bad[i] ^= 1 << (rnd() % 8);
                }
                std::fs::write(pdir.join(name), &bad).unwrap();
                if let Ok(p) = Part::open(&pdir) {
                    let tr = TimeRange { min: 0, max: i64::MAX };
                    for s in 0..300 {
                        if let Err(e) = p.search_series(&tsid(s), tr, &mut vec![], &mut vec![]) {
                            assert!(e.to_string().contains("0000000000000003"), "{e}");
                        }
                    }
                }
            }
            std::fs::write(pdir.join(name), &orig).unwrap();
        }
    }
}
