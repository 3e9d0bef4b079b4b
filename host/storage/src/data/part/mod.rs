//! Parts: immutable sets of blocks sorted by (TSID, first timestamp), on disk or in memory
//! (FORMATS.md §1.6). Files: `metadata.json`, `index.bin` (zstd index blocks of block headers,
//! ≤ 64 KiB each before compression), `metaindex.bin` (one zstd frame of metaindex rows),
//! `timestamps.bin`, `values.bin`.
//!
//! An in-memory part holds exactly the bytes its files would hold, so one reader serves both and
//! flushing a single in-memory part is a plain write of its buffers.

use serde::{Deserialize, Serialize};

use crate::encoding::varint::BeReader;
use crate::tsid::{TSID_SIZE, Tsid};

mod reader;
mod writer;

pub use reader::{Part, PartCursor};
pub use writer::{PartBuffers, PartWriter};

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
    pub(super) fn marshal(&self, dst: &mut Vec<u8>) {
        self.tsid.marshal(dst);
        dst.extend_from_slice(&self.block_headers_count.to_be_bytes());
        dst.extend_from_slice(&self.min_timestamp.to_be_bytes());
        dst.extend_from_slice(&self.max_timestamp.to_be_bytes());
        dst.extend_from_slice(&self.index_block_offset.to_be_bytes());
        dst.extend_from_slice(&self.index_block_size.to_be_bytes());
    }

    pub(super) fn unmarshal(src: &[u8]) -> Option<MetaindexRow> {
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

#[cfg(test)]
mod tests;
