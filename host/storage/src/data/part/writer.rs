//! Writing parts: blocks in (TSID, first timestamp) order go to the five part files or to
//! in-memory buffers of the same bytes; identical timestamp blocks are stored once.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{INDEX_FILE, METADATA_FILE, METAINDEX_FILE, MetaindexRow, PartHeader, TIMESTAMPS_FILE, VALUES_FILE};
use crate::data::block::{self, BLOCK_HEADER_SIZE, MAX_BLOCK_SIZE, MAX_ROWS_PER_BLOCK};
use crate::encoding;
use crate::error::{Result, StorageError};
use crate::tsid::Tsid;

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
pub(super) fn write_files(
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
