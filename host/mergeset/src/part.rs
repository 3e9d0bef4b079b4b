//! File parts: writing a part directory from sorted blocks, opening one, reading its blocks.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::encoding::{BlockHeader, MAX_INDEX_BLOCK_SIZE, MetaindexRow, decode_block, encode_block, zstd_decompress};
use crate::error::{Error, Result};
use crate::items::Items;

/// Files of a part directory.
pub const ITEMS_FILE: &str = "items.bin";
/// Lengths of the items.
pub const LENS_FILE: &str = "lens.bin";
/// Compressed block headers.
pub const INDEX_FILE: &str = "index.bin";
/// Compressed metaindex rows.
pub const METAINDEX_FILE: &str = "metaindex.bin";
/// Part metadata.
pub const METADATA_FILE: &str = "metadata.json";
const PART_FILES: [&str; 5] = [ITEMS_FILE, LENS_FILE, INDEX_FILE, METAINDEX_FILE, METADATA_FILE];

/// Uncompressed size at which an index block is closed.
const MAX_INDEX_BLOCK_RAW: usize = 64 * 1024;

/// `metadata.json` (FORMATS.md §3.3).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Metadata {
    /// Items in the part.
    pub items_count: u64,
    /// Blocks in the part.
    pub blocks_count: u64,
    /// First item, hex.
    pub first_item: String,
    /// Last item, hex.
    pub last_item: String,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

use crate::error::io;

/// Writes a part into a directory block by block; `finish` fsyncs everything.
pub struct PartWriter {
    dir: PathBuf,
    items: BufWriter<File>,
    lens: BufWriter<File>,
    index: BufWriter<File>,
    items_off: u64,
    lens_off: u64,
    index_off: u64,
    index_buf: Vec<u8>,
    index_first: Vec<u8>,
    index_count: u32,
    metaindex: Vec<u8>,
    meta: Metadata,
    last: Vec<u8>,
}

impl PartWriter {
    /// Creates `dir` (which must not exist) and the part files in it.
    pub fn create(dir: &Path) -> Result<PartWriter> {
        fs::create_dir(dir).map_err(io("cannot create part dir", dir))?;
        let open = |name: &str| {
            let p = dir.join(name);
            File::create(&p)
                .map(BufWriter::new)
                .map_err(|e| Error::io("cannot create", p, e))
        };
        Ok(PartWriter {
            dir: dir.to_path_buf(),
            items: open(ITEMS_FILE)?,
            lens: open(LENS_FILE)?,
            index: open(INDEX_FILE)?,
            items_off: 0,
            lens_off: 0,
            index_off: 0,
            index_buf: Vec::new(),
            index_first: Vec::new(),
            index_count: 0,
            metaindex: Vec::new(),
            meta: Metadata::default(),
            last: Vec::new(),
        })
    }

    /// Appends a sorted block whose items are all >= the previous block's.
    pub fn write_block(&mut self, block: &Items) -> Result<()> {
        if block.is_empty() {
            return Ok(());
        }
        let enc = encode_block(block);
        let mut h = enc.header;
        h.items_block_offset = self.items_off;
        h.lens_block_offset = self.lens_off;
        h.items_block_size = enc.items.len() as u32;
        h.lens_block_size = enc.lens.len() as u32;
        self.items
            .write_all(&enc.items)
            .map_err(io("cannot write", &self.dir))?;
        self.lens.write_all(&enc.lens).map_err(io("cannot write", &self.dir))?;
        self.items_off += enc.items.len() as u64;
        self.lens_off += enc.lens.len() as u64;
        if self.meta.blocks_count == 0 {
            self.meta.first_item = hex(block.get(0));
        }
        self.meta.blocks_count += 1;
        self.meta.items_count += block.len() as u64;
        self.last.clear();
        self.last.extend_from_slice(block.get(block.len() - 1));
        if self.index_count == 0 {
            self.index_first = h.first_item.clone();
        }
        h.marshal(&mut self.index_buf);
        self.index_count += 1;
        if self.index_buf.len() >= MAX_INDEX_BLOCK_RAW {
            self.flush_index_block()?;
        }
        Ok(())
    }

    fn flush_index_block(&mut self) -> Result<()> {
        if self.index_count == 0 {
            return Ok(());
        }
        let z = zstd::bulk::compress(&self.index_buf, 1).map_err(io("cannot compress index block", &self.dir))?;
        self.index.write_all(&z).map_err(io("cannot write", &self.dir))?;
        let row = MetaindexRow {
            first_item: std::mem::take(&mut self.index_first),
            block_headers_count: self.index_count,
            index_block_offset: self.index_off,
            index_block_size: z.len() as u32,
        };
        row.marshal(&mut self.metaindex);
        self.index_off += z.len() as u64;
        self.index_buf.clear();
        self.index_count = 0;
        Ok(())
    }

    /// Writes the remaining files and fsyncs every file and the directory.
    pub fn finish(mut self) -> Result<()> {
        self.flush_index_block()?;
        self.meta.last_item = hex(&self.last);
        for w in [&mut self.items, &mut self.lens, &mut self.index] {
            w.flush().map_err(io("cannot write", &self.dir))?;
            w.get_ref().sync_all().map_err(io("cannot fsync", &self.dir))?;
        }
        let z = zstd::bulk::compress(&self.metaindex, 1).map_err(io("cannot compress metaindex", &self.dir))?;
        let write_synced = |name: &str, data: &[u8]| -> Result<()> {
            let p = self.dir.join(name);
            let mut f = File::create(&p).map_err(io("cannot create", &p))?;
            f.write_all(data).map_err(io("cannot write", &p))?;
            f.sync_all().map_err(io("cannot fsync", &p))
        };
        write_synced(METAINDEX_FILE, &z)?;
        let meta = serde_json::to_vec(&self.meta).unwrap_or_default();
        write_synced(METADATA_FILE, &meta)?;
        strata_fsutil::fsync_dir(&self.dir).map_err(io("cannot fsync", &self.dir))
    }
}

/// An opened file part: block headers in memory, item blocks read on demand.
pub struct FilePart {
    /// The part directory.
    pub path: PathBuf,
    /// metadata.json.
    pub meta: Metadata,
    /// Every block header, in order.
    pub headers: Vec<BlockHeader>,
    items: File,
    lens: File,
    /// Bytes on disk.
    pub size_bytes: u64,
}

impl FilePart {
    /// Opens and validates a part directory; every inconsistency is an error naming it.
    pub fn open(path: &Path) -> Result<FilePart> {
        let corrupt = |d: String| Error::corrupt(path, d);
        let meta_path = path.join(METADATA_FILE);
        let meta_raw = fs::read(&meta_path).map_err(io("cannot read", &meta_path))?;
        let meta: Metadata = serde_json::from_slice(&meta_raw).map_err(|e| corrupt(format!("{METADATA_FILE}: {e}")))?;
        let mi_path = path.join(METAINDEX_FILE);
        let mi_z = fs::read(&mi_path).map_err(io("cannot read", &mi_path))?;
        let mi = zstd::stream::decode_all(&mi_z[..]).map_err(|e| corrupt(format!("{METAINDEX_FILE}: {e}")))?;
        let idx_path = path.join(INDEX_FILE);
        let idx = File::open(&idx_path).map_err(io("cannot open", &idx_path))?;
        let mut headers = Vec::with_capacity(meta.blocks_count.min(1 << 20) as usize);
        let mut src = &mi[..];
        while !src.is_empty() {
            let (row, rest) =
                MetaindexRow::unmarshal(src).ok_or_else(|| corrupt(format!("bad row in {METAINDEX_FILE}")))?;
            src = rest;
            let mut z = vec![0u8; row.index_block_size as usize];
            idx.read_exact_at(&mut z, row.index_block_offset).map_err(|e| {
                corrupt(format!(
                    "{INDEX_FILE}: cannot read block at {}: {e}",
                    row.index_block_offset
                ))
            })?;
            let raw = zstd_decompress(&z, 4 * MAX_INDEX_BLOCK_SIZE as usize).ok_or_else(|| {
                corrupt(format!(
                    "{INDEX_FILE}: cannot decompress block at {}",
                    row.index_block_offset
                ))
            })?;
            let mut hs = &raw[..];
            for _ in 0..row.block_headers_count {
                let (h, rest) =
                    BlockHeader::unmarshal(hs).ok_or_else(|| corrupt(format!("bad block header in {INDEX_FILE}")))?;
                headers.push(h);
                hs = rest;
            }
            if !hs.is_empty() {
                return Err(corrupt(format!("trailing bytes in an {INDEX_FILE} block")));
            }
        }
        if headers.len() as u64 != meta.blocks_count {
            return Err(corrupt(format!(
                "{} block headers, metadata says {}",
                headers.len(),
                meta.blocks_count
            )));
        }
        if headers.windows(2).any(|w| w[0].first_item > w[1].first_item) {
            return Err(corrupt("block headers out of order".into()));
        }
        let items_count: u64 = headers.iter().map(|h| u64::from(h.items_count)).sum();
        if items_count != meta.items_count {
            return Err(corrupt(format!(
                "{items_count} items in headers, metadata says {}",
                meta.items_count
            )));
        }
        let open = |name: &str| {
            let p = path.join(name);
            File::open(&p).map_err(|e| Error::io("cannot open", p, e))
        };
        let (items, lens) = (open(ITEMS_FILE)?, open(LENS_FILE)?);
        let mut size_bytes = 0;
        for name in PART_FILES {
            let p = path.join(name);
            size_bytes += fs::metadata(&p).map_err(io("cannot stat", &p))?.len();
        }
        Ok(FilePart {
            path: path.to_path_buf(),
            meta,
            headers,
            items,
            lens,
            size_bytes,
        })
    }

    /// Reads and decodes block `i`.
    pub fn read_block(&self, i: usize) -> Result<Items> {
        let h = &self.headers[i];
        let mut ib = vec![0u8; h.items_block_size as usize];
        let mut lb = vec![0u8; h.lens_block_size as usize];
        let corrupt = |d: String| Error::corrupt(&self.path, d);
        self.items
            .read_exact_at(&mut ib, h.items_block_offset)
            .map_err(|e| corrupt(format!("{ITEMS_FILE}: block {i}: {e}")))?;
        self.lens
            .read_exact_at(&mut lb, h.lens_block_offset)
            .map_err(|e| corrupt(format!("{LENS_FILE}: block {i}: {e}")))?;
        decode_block(h, &ib, &lb).map_err(|d| corrupt(format!("block {i}: {d}")))
    }

    /// Hard-links every file of the part into `dst` (created).
    pub fn link_into(&self, dst: &Path) -> Result<()> {
        fs::create_dir_all(dst).map_err(io("cannot create", dst))?;
        for name in PART_FILES {
            let to = dst.join(name);
            fs::hard_link(self.path.join(name), &to).map_err(io("cannot hard-link", &to))?;
        }
        strata_fsutil::fsync_dir(dst).map_err(io("cannot fsync", dst))
    }
}
